"""Plain VAE (Kingma & Welling): the warm-up model of MA-VAE and the baseline of VAE+k-means."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ...nets import build_decoder, build_encoder
from ..base import Model
from ..pose import PoseHead, canonicalize, render

RECON_KINDS = ("mse", "bce")
POSES = ("none", "rigid")
LOGVAR_RANGE = (-10.0, 10.0)
POSE_PRIOR_SD = 0.25  # weak Gaussian prior on shift and log-scale (normalised image coordinates)


def reconstruction_per_sample(x_hat: torch.Tensor, x: torch.Tensor, kind: str) -> torch.Tensor:
    """-log p(x|z) up to a constant per sample (n,), summed over pixels.

    mse: ||x_hat_i - x_i||^2 (Gaussian likelihood);
    bce: -sum_j [x_ij ln x_hat_ij + (1 - x_ij) ln(1 - x_hat_ij)] (Bernoulli likelihood).
    """
    if kind == "mse":
        per_pixel = (x_hat - x).square()
    elif kind == "bce":
        per_pixel = F.binary_cross_entropy(x_hat, x, reduction="none")
    else:
        raise ValueError(f"unknown reconstruction loss {kind!r}; expected one of {RECON_KINDS}")
    return per_pixel.flatten(1).sum(1)


def reconstruction_loss(x_hat: torch.Tensor, x: torch.Tensor, kind: str) -> torch.Tensor:
    """-log p(x|z) up to a constant, summed over pixels and averaged over the batch:
    1/n sum_i reconstruction_per_sample(x_hat, x)_i."""
    return reconstruction_per_sample(x_hat, x, kind).mean()


def kl_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(m, diag s^2) || N(0, I)) = 1/2 sum_j (s_j^2 + m_j^2 - 1 - ln s_j^2), averaged over the batch."""
    return 0.5 * (logvar.exp() + mean.square() - 1.0 - logvar).sum(1).mean()


class VAE(Model):
    """L = recon(g(z), x) + beta * KL(q(z|x) || N(0, I)), z = m(x) + s(x) * eps.

    pose="rigid" (docs/method.md section 7b): a pose head estimates p(x) = (angle, shift, log-scale);
    the encoder sees x in the canonical frame, canonicalize(x, p), so z holds content only; the
    reconstruction is the canonical decoding drawn in pose p, render(g(z), p). The pose head is
    equivariant by construction (``pose.PoseHead``); the pose gets the weak Gaussian prior
    1/2 ||(shift, log-scale)||^2 / 0.25^2. ``decode`` always renders the canonical pose.
    """

    def __init__(self, image_shape: tuple[int, ...], latent_dim: int = 16, width: int = 32,
                 beta: float = 1.0, recon: str = "mse", pose: str = "none"):
        super().__init__()
        if recon not in RECON_KINDS:
            raise ValueError(f"unknown reconstruction loss {recon!r}; expected one of {RECON_KINDS}")
        if pose not in POSES:
            raise ValueError(f"unknown pose {pose!r}; expected one of {POSES}")
        if pose == "rigid" and len(image_shape) != 3:
            raise ValueError(f"pose='rigid' needs (C, H, W) images, got data shape {tuple(image_shape)}")
        self.image_shape = tuple(image_shape)
        self.latent_dim, self.beta, self.recon = latent_dim, beta, recon
        self.encoder = build_encoder(self.image_shape, 2 * latent_dim, width)
        self.decoder = build_decoder(self.image_shape, latent_dim, width)
        self.pose_head = PoseHead(self.image_shape[0]) if pose == "rigid" else None

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, logvar) of q(z|x) (of the canonical-frame image with a pose head); logvar clamped to [-10, 10]."""
        if self.pose_head is not None:
            x = canonicalize(x, self.pose_head(x))
        return self._content(x)

    def _content(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    @property
    def has_pose(self) -> bool:
        return self.pose_head is not None

    def estimate_pose(self, x: torch.Tensor) -> torch.Tensor | None:
        """(n, 4) poses (angle in radians, shift_x, shift_y, log_scale) of the pose head; None without one."""
        return None if self.pose_head is None else self.pose_head(x)

    def reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(mean, logvar, terms): terms["recon"] of a reparameterised sample and, with a pose head,
        "pose_prior"; ``pose_loss(terms)`` is what the pose adds to the loss."""
        pose = self.pose_head(x) if self.pose_head is not None else None
        mean, logvar = self._content(x if pose is None else canonicalize(x, pose))
        x_hat = self.decode(self.reparameterize(mean, logvar))
        terms = {}
        if pose is not None:
            x_hat = render(x_hat, pose)
            terms["pose_prior"] = 0.5 * pose[:, 1:].square().sum(1).mean() / POSE_PRIOR_SD**2
        terms["recon"] = reconstruction_loss(x_hat, x, self.recon)
        return mean, logvar, terms

    def pose_loss(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.pose_head is None:
            return torch.zeros(())
        return terms["pose_prior"]

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mean, logvar, terms = self.reconstruct(x)
        kl = kl_standard_normal(mean, logvar)
        return {"loss": terms["recon"] + self.beta * kl + self.pose_loss(terms), "kl": kl, **terms}

    def posterior(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("a plain VAE has no clusters; use VAE+k-means or MA-VAE for posteriors")

    def prototypes(self) -> tuple[torch.Tensor, np.ndarray | None]:
        raise NotImplementedError("a plain VAE has no clusters, hence no prototypes")
