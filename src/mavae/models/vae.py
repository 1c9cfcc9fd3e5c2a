"""Plain VAE (Kingma & Welling): the warm-up model of MA-VAE and the baseline of VAE+k-means."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..nets import build_decoder, build_encoder
from .base import Model

RECON_KINDS = ("mse", "bce")
LOGVAR_RANGE = (-10.0, 10.0)


def reconstruction_loss(x_hat: torch.Tensor, x: torch.Tensor, kind: str) -> torch.Tensor:
    """-log p(x|z) up to a constant, summed over pixels and averaged over the batch.

    mse: 1/n sum_i ||x_hat_i - x_i||^2 (Gaussian likelihood);
    bce: -1/n sum_i sum_j [x_ij ln x_hat_ij + (1 - x_ij) ln(1 - x_hat_ij)] (Bernoulli likelihood).
    """
    if kind == "mse":
        per_pixel = (x_hat - x).square()
    elif kind == "bce":
        per_pixel = F.binary_cross_entropy(x_hat, x, reduction="none")
    else:
        raise ValueError(f"unknown reconstruction loss {kind!r}; expected one of {RECON_KINDS}")
    return per_pixel.flatten(1).sum(1).mean()


def kl_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(m, diag s^2) || N(0, I)) = 1/2 sum_j (s_j^2 + m_j^2 - 1 - ln s_j^2), averaged over the batch."""
    return 0.5 * (logvar.exp() + mean.square() - 1.0 - logvar).sum(1).mean()


class VAE(Model):
    """L = recon(g(z), x) + beta * KL(q(z|x) || N(0, I)), z = m(x) + s(x) * eps."""

    def __init__(self, image_shape: tuple[int, ...], latent_dim: int = 16, width: int = 32,
                 beta: float = 1.0, recon: str = "mse"):
        super().__init__()
        if recon not in RECON_KINDS:
            raise ValueError(f"unknown reconstruction loss {recon!r}; expected one of {RECON_KINDS}")
        self.image_shape = tuple(image_shape)
        self.latent_dim, self.beta, self.recon = latent_dim, beta, recon
        self.encoder = build_encoder(self.image_shape, 2 * latent_dim, width)
        self.decoder = build_decoder(self.image_shape, latent_dim, width)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, logvar) of q(z|x); logvar clamped to [-10, 10]."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mean, logvar = self.encode(x)
        x_hat = self.decode(self.reparameterize(mean, logvar))
        recon = reconstruction_loss(x_hat, x, self.recon)
        kl = kl_standard_normal(mean, logvar)
        return {"loss": recon + self.beta * kl, "recon": recon, "kl": kl}

    def posterior(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("a plain VAE has no clusters; use VAE+k-means or MA-VAE for posteriors")

    def prototypes(self) -> tuple[torch.Tensor, np.ndarray | None]:
        raise NotImplementedError("a plain VAE has no clusters, hence no prototypes")
