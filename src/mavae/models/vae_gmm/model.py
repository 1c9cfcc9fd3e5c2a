"""Baseline: a plain VAE, then scikit-learn's GaussianMixture fitted on its encoder means."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.mixture import GaussianMixture

from ..prior import MixturePrior
from ..vae import VAE


class VAEGMM(VAE):
    """Trains as a plain VAE; after the last epoch a full-covariance GaussianMixture(K) is fitted on
    the training encoder means (best of ``n_init`` by log-likelihood) and gives posteriors and
    prototypes (its means, which are not real samples)."""

    refits_at_end = True

    def __init__(self, image_shape, latent_dim: int = 16, n_components: int = 5, *, width: int = 32,
                 beta: float = 1.0, recon: str = "mse", n_init: int = 30, seed: int = 0, pose: str = "none"):
        super().__init__(image_shape, latent_dim=latent_dim, width=width, beta=beta, recon=recon, pose=pose)
        self.n_components, self.n_init, self.seed = n_components, n_init, seed
        self.prior = MixturePrior(n_components, latent_dim)

    def refit(self, encodings: torch.Tensor, logvars: torch.Tensor | None = None) -> None:
        gmm = GaussianMixture(self.n_components, n_init=self.n_init, random_state=self.seed)
        gmm.fit(encodings.detach().double().cpu().numpy())
        self.prior.set(gmm.means_, gmm.covariances_, gmm.weights_)

    def posterior(self, z: torch.Tensor) -> torch.Tensor:
        if not bool(self.prior.fitted):
            raise RuntimeError("the GaussianMixture is fitted after training; train the model first")
        return self.prior.posterior(z)

    def prototypes(self) -> tuple[torch.Tensor, np.ndarray | None]:
        return self.prior.means.clone(), None
