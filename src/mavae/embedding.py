"""Manifold coordinates of embeddings, in which MA-EM separates the data manifold's pieces
(docs/method.md section 3.1).

A Gaussian mixture fitted directly on VAE latents cuts along directions of large variance, not
along the low-density gaps between the pieces of the data manifold. UMAP (McInnes et al. 2018)
builds the fuzzy k-nearest-neighbour graph of the latents and lays it out so that points joined by
the graph sit together and points it does not join are pushed apart; with ``min_dist=0`` each
connected piece becomes a compact clump, which MA-EM then separates (as in N2D, McConville et
al. 2020).

The layout is always seeded, so the same latents and seed give the same coordinates bit for bit;
umap-learn then runs its stochastic gradient descent on one thread. The exact neighbour graph is
computed here (scikit-learn, all threads) and the fuzzy graph in numpy, which spares numba's
compilation of umap-learn's own kernels. ``benchmarks/results/embedding_mnist.md`` compares this
path with umap-learn's seeded and parallel layouts on 20,000 MNIST latents: time, start-up,
reproducibility and the agreement of the partitions.
"""
from __future__ import annotations

import warnings

import numpy as np

MANIFOLDS = ("none", "umap")


def manifold_coordinates(z, method: str = "umap", *, n_components: int = 10, n_neighbors: int = 20,
                         seed: int = 0, init=None, n_epochs: int | None = None) -> np.ndarray:
    """(n, n_components) coordinates of z (n, d): UMAP with ``n_neighbors`` neighbours (all other
    points when there are fewer; and at most n - 2 dimensions), min_dist = 0 and random_state = seed (bit-reproducible);
    ``method="none"`` returns z itself (float64).

    The layout starts from the graph's spectral embedding, or from ``init`` (n, n_components), e.g.
    the layout of the same points' previous encodings, taken as it is (umap-learn would rescale
    each axis of a given start to [0, 10], which flattens the axes that separate the pieces most).
    It runs ``n_epochs`` epochs (default umap-learn's: 500 up to 10,000 points, else 200)."""
    z = np.asarray(z, dtype=np.float64)
    if method not in MANIFOLDS:
        raise ValueError(f"manifold must be one of {MANIFOLDS}, got {method!r}")
    if z.ndim != 2 or not np.isfinite(z).all():
        raise ValueError(f"manifold_coordinates needs a finite (n, d) array, got shape {z.shape}")
    if method == "none":
        return z
    if len(z) < 3:
        raise ValueError(f"manifold='umap' needs at least 3 points, got {len(z)}")
    n_neighbors = min(n_neighbors, len(z) - 1)  # a small cohort: every other point is a neighbour
    n_components = min(n_components, len(z) - 2)  # the spectral start needs dimensions + 1 < n
    if init is not None:
        init = np.asarray(init, dtype=np.float64)
        if init.shape != (len(z), n_components) or not np.isfinite(init).all():
            raise ValueError(f"init must be a finite ({len(z)}, {n_components}) layout, got shape {init.shape}")
    if n_epochs is None:
        n_epochs = 500 if len(z) <= 10_000 else 200
    if n_epochs < 1:
        raise ValueError(f"n_epochs must be >= 1, got {n_epochs}")
    from sklearn.neighbors import NearestNeighbors
    from umap.layouts import optimize_layout_euclidean  # numba start-up: imported here
    from umap.umap_ import find_ab_params, make_epochs_per_sample, simplicial_set_embedding

    distances, indices = NearestNeighbors(n_neighbors=n_neighbors, n_jobs=-1).fit(z).kneighbors(z)  # exact
    graph = fuzzy_graph(distances, indices)
    a, b = find_ab_params(1.0, 0.0)  # spread 1, min_dist 0
    random_state = np.random.RandomState(int(seed))
    if init is None:
        with warnings.catch_warnings():  # umap-learn's notices about its own defaults
            warnings.simplefilter("ignore", UserWarning)
            u, _ = simplicial_set_embedding(
                z, graph, n_components, initial_alpha=1.0, a=a, b=b, gamma=1.0, negative_sample_rate=5,
                n_epochs=n_epochs, init="spectral", random_state=random_state, metric="euclidean", metric_kwds={},
                densmap=False, densmap_kwds={}, output_dens=False, parallel=False)
        return u.astype(np.float64)
    # the same optimisation from the given start: edges too weak to be sampled once are dropped
    graph.data[graph.data < graph.data.max() / n_epochs] = 0.0
    graph.eliminate_zeros()
    u = init.astype(np.float32, order="C")
    rng_state = random_state.randint(np.iinfo(np.int32).min, np.iinfo(np.int32).max, 3).astype(np.int64)
    u = optimize_layout_euclidean(u, u, graph.row, graph.col, n_epochs, len(z),
                                  make_epochs_per_sample(graph.data, n_epochs), a, b, rng_state, gamma=1.0,
                                  initial_alpha=1.0, negative_sample_rate=5, parallel=False, move_other=True)
    return u.astype(np.float64)


def fuzzy_graph(distances: np.ndarray, indices: np.ndarray, n_iter: int = 64):
    """UMAP's fuzzy k-nearest-neighbour graph (McInnes et al. 2018, section 3.1), vectorised over points.

    distances, indices: (n, k) exact neighbours of each point, itself first. rho_i is the distance to
    its nearest other point; sigma_i solves sum_{j>0} exp(-max(d_ij - rho_i, 0) / sigma_i) = log2(k)
    by bisection (at least 1e-3 times the mean neighbour distance); w_ij = exp(-max(d_ij - rho_i, 0)
    / sigma_i), and the graph is the fuzzy union W + W^T - W o W^T. The same graph umap-learn builds,
    without compiling its numba kernels (about 14 s of a small fit's start-up).
    """
    from scipy.sparse import coo_matrix

    n, k = distances.shape
    d = distances.astype(np.float64)
    positive = np.where(d > 0, d, np.inf)
    rho = positive.min(1)
    rho[~np.isfinite(rho)] = 0.0
    excess = np.maximum(d[:, 1:] - rho[:, None], 0.0)
    target = np.log2(k)
    lo, hi, sigma = np.zeros(n), np.full(n, np.inf), np.ones(n)
    for _ in range(n_iter):
        total = np.exp(-excess / sigma[:, None]).sum(1)
        too_big = total > target
        hi = np.where(too_big, sigma, hi)
        lo = np.where(too_big, lo, sigma)
        sigma = np.where(np.isfinite(hi), (lo + hi) / 2, sigma * 2)
    sigma = np.maximum(sigma, 1e-3 * np.where(rho > 0, d.mean(1), d.mean()))
    weights = np.exp(-np.maximum(d - rho[:, None], 0.0) / sigma[:, None])
    weights[indices == np.arange(n)[:, None]] = 0.0
    w = coo_matrix((weights.ravel(), (np.repeat(np.arange(n), k), indices.ravel())), shape=(n, n)).tocsr()
    graph = (w + w.T - w.multiply(w.T)).tocoo()
    graph.eliminate_zeros()
    return graph
