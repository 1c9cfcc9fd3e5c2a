"""Diffusion-GMM (docs/method.md section 9): a VAE plus a DDPM denoiser on its latent codes; after
training, codes are denoised by one-step x0 prediction and clustered by a GaussianMixture."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.mixture import GaussianMixture
from torch import nn

from ..prior import MixturePrior
from ..vae import VAE, kl_standard_normal

BETA_RANGE = (1e-4, 0.02)  # linear DDPM noise schedule (Ho et al. 2020)
TIME_FEATURES = 32
DENOISE_CHUNK = 4096  # codes denoised at once


def linear_betas(timesteps: int, beta_start: float = BETA_RANGE[0], beta_end: float = BETA_RANGE[1]) -> torch.Tensor:
    """beta_t for t = 1..T, linear from beta_start to beta_end (float64, shape (T,))."""
    return torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)


def time_embedding(t: torch.Tensor, features: int = TIME_FEATURES) -> torch.Tensor:
    """Sinusoidal embedding [sin(t w_i), cos(t w_i)], w_i = 1000^(-i / (features / 2)), (n, features)."""
    half = features // 2
    w = torch.exp(-math.log(1000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angle = t.float()[:, None] * w
    return torch.cat([angle.sin(), angle.cos()], dim=1)


class LatentDenoiser(nn.Module):
    """eps_theta(z_t, t): an MLP on [z_t, time_embedding(t)] with two hidden SiLU layers."""

    def __init__(self, latent_dim: int, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent_dim + TIME_FEATURES, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, latent_dim))

    def forward(self, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z_t, time_embedding(t)], dim=1))


class DiffusionGMM(VAE):
    """L = recon + beta * KL(q(z|x) || N(0, I)) + ||eps_theta(z_t, t) - eps||^2 / d.

    The DDPM term trains the denoiser on the detached encoder means m(x) (so it does not shape
    the VAE): t ~ U{1..T}, eps ~ N(0, I), z_t = sqrt(abar_t) m(x) + sqrt(1 - abar_t) eps,
    abar_t = prod_{s<=t} (1 - beta_s), betas linear 1e-4..0.02, T = ``timesteps``. It is trained
    jointly, inside the one trainer, so it is checkpointed and resumed with the VAE and its loss
    is in the history; it sees the codes of the last epochs, which move little by then.

    After the last epoch (``refit``) each training code is denoised by ``denoise``: one-step x0
    prediction at t = ``denoise_step``, averaged over ``n_draws`` noise draws; a full-covariance
    GaussianMixture(K) (best of ``n_init``, seeded) is fitted on the denoised codes.
    posterior(z) = the GMM posterior of denoise(z); prototypes are the GMM means (not real
    samples). The noise draws are a fixed seeded buffer (n_draws, d) shared by every code, so
    denoise, and hence the posterior, is a deterministic function of z, independent of batching.
    """

    refits_at_end = True

    def __init__(self, image_shape, latent_dim: int = 16, n_components: int = 5, *, width: int = 32,
                 beta: float = 1.0, recon: str = "mse", timesteps: int = 100, denoise_step: int = 10,
                 n_draws: int = 16, denoiser_width: int = 128, n_init: int = 30, seed: int = 0,
                 pose: str = "none"):
        super().__init__(image_shape, latent_dim=latent_dim, width=width, beta=beta, recon=recon, pose=pose)
        if n_components < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}")
        if timesteps < 1:
            raise ValueError(f"timesteps must be >= 1, got {timesteps}")
        if not 1 <= denoise_step <= timesteps:
            raise ValueError(f"denoise_step must be in [1, timesteps={timesteps}], got {denoise_step}")
        if n_draws < 1 or n_init < 1:
            raise ValueError(f"n_draws and n_init must be >= 1, got {n_draws}, {n_init}")
        self.n_components, self.timesteps, self.denoise_step = n_components, timesteps, denoise_step
        self.n_init, self.seed = n_init, seed
        self.denoiser = LatentDenoiser(latent_dim, denoiser_width)
        self.register_buffer("alpha_bars", torch.cumprod(1.0 - linear_betas(timesteps), 0).float())
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("noise_draws", torch.randn(n_draws, latent_dim, generator=generator))
        self.prior = MixturePrior(n_components, latent_dim)

    def diffuse(self, z0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """q(z_t | z_0) sample: z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps, t in 1..T, shape (n,)."""
        abar = self.alpha_bars[t - 1][:, None]
        return abar.sqrt() * z0 + (1 - abar).sqrt() * eps

    def noise_prediction_loss(self, z0: torch.Tensor) -> torch.Tensor:
        """DDPM simple loss: mean over batch and dimensions of (eps_theta(z_t, t) - eps)^2."""
        t = torch.randint(1, self.timesteps + 1, (len(z0),), device=z0.device)
        eps = torch.randn_like(z0)
        return F.mse_loss(self.denoiser(self.diffuse(z0, t, eps), t), eps)

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mean, logvar, terms = self.reconstruct(x)
        kl = kl_standard_normal(mean, logvar)
        diffusion = self.noise_prediction_loss(mean.detach())
        loss = terms["recon"] + self.beta * kl + self.pose_loss(terms) + diffusion
        return {"loss": loss, "kl": kl, "diffusion": diffusion, **terms}

    @torch.no_grad()
    def denoise(self, z: torch.Tensor) -> torch.Tensor:
        """x0_hat(z) = 1/S sum_s [z_t^s - sqrt(1 - abar_t) eps_theta(z_t^s, t)] / sqrt(abar_t),
        z_t^s = diffuse(z, t, eps_s) at t = denoise_step with the S fixed noise draws eps_s."""
        out = []
        t_value, abar = self.denoise_step, self.alpha_bars[self.denoise_step - 1]
        draws = self.noise_draws.to(z.dtype)
        for chunk in z.split(DENOISE_CHUNK):
            n, s = len(chunk), len(draws)
            z_t = abar.sqrt() * chunk[None] + (1 - abar).sqrt() * draws[:, None]  # (S, n, d)
            t = torch.full((s * n,), t_value, device=z.device)
            eps_hat = self.denoiser(z_t.reshape(s * n, -1), t).view(s, n, -1)
            out.append(((z_t - (1 - abar).sqrt() * eps_hat) / abar.sqrt()).mean(0))
        return torch.cat(out)

    def refit(self, encodings: torch.Tensor, logvars: torch.Tensor | None = None) -> None:
        denoised = self.denoise(encodings.detach())
        gmm = GaussianMixture(self.n_components, n_init=self.n_init, random_state=self.seed)
        gmm.fit(denoised.double().cpu().numpy())
        self.prior.set(gmm.means_, gmm.covariances_, gmm.weights_)

    def posterior(self, z: torch.Tensor) -> torch.Tensor:
        """GMM posterior of the denoised code, gamma_k(denoise(z))."""
        if not bool(self.prior.fitted):
            raise RuntimeError("the GaussianMixture is fitted after training; train the model first")
        return self.prior.posterior(self.denoise(z))

    def prototypes(self) -> tuple[torch.Tensor, np.ndarray | None]:
        if not bool(self.prior.fitted):
            raise RuntimeError("the GaussianMixture is fitted after training; train the model first")
        return self.prior.means.clone(), None
