"""Manifold coordinates of embeddings, in which MA-EM separates the data manifold's pieces
(docs/method.md section 3.1).

A Gaussian mixture fitted directly on VAE latents cuts along directions of large variance, not
along the low-density gaps between the pieces of the data manifold. UMAP (McInnes et al. 2018)
builds the fuzzy k-nearest-neighbour graph of the latents and lays it out so that points joined by
the graph sit together and points it does not join are pushed apart; with ``min_dist=0`` each
connected piece becomes a compact clump, which MA-EM then separates (as in N2D, McConville et
al. 2020).

The layout is always seeded, so the same latents and seed give the same coordinates bit for bit
(umap-learn then runs its nearest-neighbour search and SGD on one thread). Measured on 20,000
MNIST latents on 2 cores, after numba's compilation: 12.6 s seeded against 7.0 s for the
parallel, unseeded layout, whose coordinates differ from run to run (benchmarks/bench_embedding.py).
"""
from __future__ import annotations

import warnings

import numpy as np

MANIFOLDS = ("none", "umap")


def manifold_coordinates(z, method: str = "umap", *, n_components: int = 10, n_neighbors: int = 20,
                         seed: int = 0) -> np.ndarray:
    """(n, n_components) coordinates of z (n, d): UMAP with ``n_neighbors`` neighbours,
    min_dist = 0 and random_state = seed (bit-reproducible); ``method="none"`` returns z itself
    (float64)."""
    z = np.asarray(z, dtype=np.float64)
    if method not in MANIFOLDS:
        raise ValueError(f"manifold must be one of {MANIFOLDS}, got {method!r}")
    if z.ndim != 2 or not np.isfinite(z).all():
        raise ValueError(f"manifold_coordinates needs a finite (n, d) array, got shape {z.shape}")
    if method == "none":
        return z
    if len(z) <= n_neighbors + 1:
        raise ValueError(f"manifold='umap' needs more than n_neighbors + 1 = {n_neighbors + 1} points, got {len(z)}")
    import umap  # a dependency; imported here because its numba start-up costs seconds

    with warnings.catch_warnings():  # umap-learn's notices about its own defaults
        warnings.simplefilter("ignore", UserWarning)
        reducer = umap.UMAP(n_components=n_components, n_neighbors=n_neighbors, min_dist=0.0,
                            random_state=int(seed), n_jobs=1)
        return reducer.fit_transform(z).astype(np.float64)
