"""Baseline: a plain VAE, then scikit-learn's KMeans fitted on its training encoder means."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans

from ..vae import VAE


class VAEKMeans(VAE):
    """Trains as a plain VAE; after the last epoch KMeans(K) is fitted on the training encoder means
    (best of ``n_init`` seeded k-means++ starts by inertia). posterior(z) is the one-hot
    assignment to the nearest centroid, argmin_k ||z - c_k||^2 (k-means has no soft posterior);
    prototypes are the centroids (not real samples)."""

    refits_at_end = True

    def __init__(self, image_shape, latent_dim: int = 16, n_components: int = 5, *, width: int = 32,
                 beta: float = 1.0, recon: str = "mse", n_init: int = 10, seed: int = 0, pose: str = "none"):
        super().__init__(image_shape, latent_dim=latent_dim, width=width, beta=beta, recon=recon, pose=pose)
        if n_components < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}")
        if n_init < 1:
            raise ValueError(f"n_init must be >= 1, got {n_init}")
        self.n_components, self.n_init, self.seed = n_components, n_init, seed
        self.register_buffer("centroids", torch.zeros(n_components, latent_dim))
        self.register_buffer("fitted", torch.tensor(False))

    def refit(self, encodings: torch.Tensor, logvars: torch.Tensor | None = None) -> None:
        kmeans = KMeans(self.n_components, n_init=self.n_init, random_state=self.seed)
        kmeans.fit(encodings.detach().double().cpu().numpy())
        self.centroids.copy_(torch.as_tensor(kmeans.cluster_centers_, dtype=self.centroids.dtype))
        self.fitted.fill_(True)

    def posterior(self, z: torch.Tensor) -> torch.Tensor:
        """One-hot of argmin_k ||z - c_k||^2, (n, K)."""
        if not bool(self.fitted):
            raise RuntimeError("k-means is fitted after training; train the model first")
        nearest = torch.cdist(z.to(self.centroids.dtype), self.centroids).argmin(1)
        return F.one_hot(nearest, self.n_components).to(z.dtype)

    def prototypes(self) -> tuple[torch.Tensor, np.ndarray | None]:
        if not bool(self.fitted):
            raise RuntimeError("k-means is fitted after training; train the model first")
        return self.centroids.clone(), None
