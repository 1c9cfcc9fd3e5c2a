"""Graph geometry on embeddings: heat kernel, bandwidths, Laplacian, Dirichlet energy, medoids.

Pure functions on torch tensors (numpy arrays are accepted where noted). Anything O(n^2) is
chunked so memory stays O(chunk * n).
"""
from __future__ import annotations

import math

import numpy as np
import sklearn
import torch
from sklearn.neighbors import NearestNeighbors

DEFAULT_CHUNK = 2048
MEDIAN_MAX_PAIRS = 50_000
KNN_MAX_QUERIES = 10_000


def as_tensor(z, dtype=None) -> torch.Tensor:
    """A tensor view of z (numpy arrays are wrapped, tensors kept as they are)."""
    if isinstance(z, torch.Tensor):
        return z if dtype is None else z.to(dtype)
    return torch.as_tensor(np.asarray(z), dtype=dtype)


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """D_ij = ||a_i - b_j||^2 = |a_i|^2 + |b_j|^2 - 2 a_i.b_j, clamped at 0."""
    d2 = (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return d2.clamp_min_(0.0) if not d2.requires_grad else d2.clamp_min(0.0)


def heat_kernel(a: torch.Tensor, b: torch.Tensor | None = None, *, sigma: float) -> torch.Tensor:
    """W_ij = exp(-||a_i - b_j||^2 / sigma^2). With b None, the graph on a: W_ii = 0."""
    if sigma <= 0 or not math.isfinite(sigma):
        raise ValueError(f"sigma must be a positive finite number, got {sigma}")
    w = torch.exp(-squared_distances(a, a if b is None else b) / sigma**2)
    if b is None:
        w = w - torch.diag_embed(torch.diagonal(w))
    return w


def graph_laplacian(w: torch.Tensor) -> torch.Tensor:
    """L = D - W with D = diag(sum_j W_ij)."""
    return torch.diag_embed(w.sum(1)) - w


def _sample_pairs(n: int, n_pairs: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n_pairs uniform random pairs (i, j) with i != j."""
    i = torch.randint(0, n, (n_pairs,), generator=generator)
    j = torch.randint(0, n - 1, (n_pairs,), generator=generator)
    return i, j + (j >= i).long()


def pair_distances(z, *, max_pairs: int = MEDIAN_MAX_PAIRS, seed: int = 0) -> torch.Tensor:
    """||z_i - z_j|| over all pairs i < j, or over max_pairs seeded random pairs when there are more."""
    z = as_tensor(z)
    n = len(z)
    if n < 2:
        raise ValueError(f"the median distance needs at least 2 points, got {n}")
    if n * (n - 1) // 2 <= max_pairs:
        i, j = torch.triu_indices(n, n, offset=1)
    else:
        i, j = _sample_pairs(n, max_pairs, torch.Generator().manual_seed(seed))
    return (z[i] - z[j]).norm(dim=1)


def median_distance(z, *, max_pairs: int = MEDIAN_MAX_PAIRS, seed: int = 0) -> float:
    """Median of ||z_i - z_j|| over i != j (``pair_distances``)."""
    return float(pair_distances(z, max_pairs=max_pairs, seed=seed).median())


def knn_distance(z, *, k: int = 10, max_queries: int = KNN_MAX_QUERIES, chunk_size: int = DEFAULT_CHUNK,
                 seed: int = 0) -> float:
    """Median distance from a point to its k-th nearest neighbour (itself excluded).

    The median (the lower middle value for an even count, as torch.median) runs over at most
    max_queries seeded random query points, each searched exactly against the whole set with
    scikit-learn's NearestNeighbors; chunk_size is the block size of its brute-force search.
    A point is its own nearest neighbour (distance 0), so its k-th neighbour excluding itself is
    its (k+1)-th including itself; exact duplicates elsewhere still count.
    """
    z = as_tensor(z)
    n = len(z)
    if n <= k:
        raise ValueError(f"the k-NN bandwidth needs more than k={k} points, got {n}")
    queries = torch.arange(n)
    if n > max_queries:
        queries = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_queries]
    points = z.detach().cpu().numpy()
    with sklearn.config_context(pairwise_dist_chunk_size=chunk_size):
        dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points[queries.numpy()])
    return float(torch.from_numpy(dist[:, k]).median())


def bandwidth(z, rule="median", *, k: int = 10, seed: int = 0) -> float:
    """The heat-kernel bandwidth sigma: "median" (median pairwise distance), "knn" (median
    distance to the k-th neighbour) or a positive float. When a rule gives 0 (more than half the
    points coincide), the median of the non-zero pairwise distances; 1 when every point is the same
    (any bandwidth then gives the same medoids)."""
    if isinstance(rule, str):
        if rule == "median":
            sigma = median_distance(z, seed=seed)
        elif rule == "knn":
            sigma = knn_distance(z, k=k, seed=seed)
        else:
            raise ValueError(f"bandwidth must be 'median', 'knn' or a positive float, got '{rule}'")
        if sigma == 0:  # most points coincide: the scale of the distinct ones; 1 when all coincide
            distances = pair_distances(z, seed=seed)
            distances = distances[distances > 0]
            sigma = float(distances.median()) if len(distances) else 1.0
    elif isinstance(rule, (int, float)) and not isinstance(rule, bool):
        sigma = float(rule)
    else:
        raise ValueError(f"bandwidth must be 'median', 'knn' or a positive float, got {rule!r}")
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"bandwidth must be positive and finite, got {sigma}")
    return sigma


def dirichlet_energy(z: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """E(Z) = tr(Z^T L Z) / B = 1/2 sum_ij W_ij ||z_i - z_j||^2 / B.

    W is the heat-kernel graph of the batch under stop-gradient (the graph is fixed, z is the
    signal on it); gradients flow through the squared distances. sigma defaults to the
    batch's median pairwise distance (also without gradient). A batch of one point has no edges:
    E = 0 (the last batch of an epoch can hold a single image).
    """
    if z.ndim != 2 or len(z) < 1:
        raise ValueError(f"dirichlet_energy needs a (B >= 1, d) batch, got shape {tuple(z.shape)}")
    if len(z) == 1:
        return (z * 0.0).sum()  # zero, still part of the graph for autograd
    d2 = squared_distances(z, z)
    with torch.no_grad():
        if sigma is None:
            sigma = bandwidth(z.detach())
        w = torch.exp(-d2.detach() / sigma**2)
        w.fill_diagonal_(0.0)
    return 0.5 * (w * d2).sum() / len(z)


def _affinity(a: torch.Tensor, b: torch.Tensor, sigma: float) -> torch.Tensor:
    """exp(-||a_i - b_j||^2 / sigma^2) without gradient, built in place to save memory traffic."""
    with torch.no_grad():
        w = a @ b.T
        w.mul_(2.0 / sigma**2).sub_((a * a).sum(1, keepdim=True) / sigma**2).sub_((b * b).sum(1) / sigma**2)
        return w.clamp_max_(0.0).exp_()


def kernel_sums(candidates: torch.Tensor, references: torch.Tensor, *, sigma: float,
                chunk_size: int = DEFAULT_CHUNK) -> torch.Tensor:
    """s_c = sum_r exp(-||z_c - z_r||^2 / sigma^2), chunked over candidates: memory O(chunk * |R|)."""
    out = torch.empty(len(candidates), dtype=candidates.dtype)
    for start in range(0, len(candidates), chunk_size):
        block = candidates[start:start + chunk_size]
        out[start:start + len(block)] = _affinity(block, references, sigma).sum(1)
    return out


def within_cluster_affinity(z: torch.Tensor, labels: torch.Tensor, n_clusters: int, *, sigma: float,
                            chunk_size: int = DEFAULT_CHUNK) -> torch.Tensor:
    """s_i = sum_{j != i, c_j = c_i} W_ij for every point: the medoid score within its own cluster.

    Exact, O(sum_k |M_k|^2) work, memory O(chunk * max_k |M_k|). Float64 result.
    """
    scores = torch.zeros(len(z), dtype=torch.float64)
    for k in range(n_clusters):
        members = (labels == k).nonzero().squeeze(1)
        if len(members):
            scores[members] = kernel_sums(z[members], z[members], sigma=sigma, chunk_size=chunk_size).double() - 1.0
    return scores


def update_within_cluster_affinity(z: torch.Tensor, scores: torch.Tensor, old_labels: torch.Tensor,
                                   new_labels: torch.Tensor, n_clusters: int, *, sigma: float,
                                   chunk_size: int = DEFAULT_CHUNK) -> torch.Tensor:
    """``within_cluster_affinity`` for new_labels, updated from the scores under old_labels.

    Only the moved points P enter: a point that stayed gains W_ip for each p that joined its cluster
    and loses it for each p that left; a moved point is re-scored from its row W_p. O(n |P|) work.
    """
    moved = (old_labels != new_labels).nonzero().squeeze(1)
    scores = scores.clone()
    if len(moved) == 0:
        return scores
    new_onehot = torch.nn.functional.one_hot(new_labels, n_clusters).to(z.dtype)
    delta = torch.zeros(len(z), n_clusters, dtype=torch.float64)
    rescored = torch.empty(len(moved), dtype=torch.float64)
    for start in range(0, len(moved), chunk_size):
        block = moved[start:start + chunk_size]
        w = _affinity(z[block], z, sigma)  # (|block|, n)
        change = new_onehot[block] - torch.nn.functional.one_hot(old_labels[block], n_clusters).to(z.dtype)
        delta += (w.T @ change).double()
        rescored[start:start + len(block)] = (
            (w @ new_onehot).gather(1, new_labels[block, None]).squeeze(1).double() - 1.0)
    scores += delta.gather(1, new_labels[:, None]).squeeze(1)
    scores[moved] = rescored
    return scores


def cluster_argmax(scores: torch.Tensor, labels: torch.Tensor, n_clusters: int) -> torch.Tensor:
    """For each cluster k, the index of its member with the largest score (-1 when k is empty)."""
    best = torch.full((n_clusters,), -torch.inf, dtype=scores.dtype).scatter_reduce(0, labels, scores, "amax")
    is_best = scores == best[labels]
    out = torch.full((n_clusters,), len(scores), dtype=torch.long)
    out = out.scatter_reduce(0, labels[is_best], is_best.nonzero().squeeze(1), "amin")
    out[out == len(scores)] = -1
    return out


def graph_medoid(z, *, sigma: float, chunk_size: int = DEFAULT_CHUNK, max_references: int | None = None,
                 max_candidates: int | None = None, include: int | None = None, seed: int = 0) -> int:
    """argmax_{m in M} sum_{j in M, j != m} W_mj: the member of largest aggregate affinity.

    Exact by default. ``max_references`` r scores each candidate against a seeded random subset of
    r members (the mean affinity over the subset, self excluded: an unbiased estimate of the sum
    up to a constant factor); exact when r >= |M|. ``max_candidates`` c scores only a seeded
    random subset of c members (plus ``include``, e.g. the previous medoid) as candidates.
    Returns the index of the medoid within z.
    """
    z = as_tensor(z)
    n = len(z)
    if n == 0:
        raise ValueError("graph_medoid needs at least one point")
    if n == 1:
        return 0
    generator = torch.Generator().manual_seed(seed)
    candidates = torch.arange(n)
    if max_candidates is not None and max_candidates < n:
        candidates = torch.randperm(n, generator=generator)[:max_candidates]
        if include is not None and not bool((candidates == include).any()):
            candidates = torch.cat([candidates, torch.tensor([include])])
    references = torch.arange(n)
    if max_references is not None and max_references < n:
        references = torch.randperm(n, generator=generator)[:max_references]
    sums = kernel_sums(z[candidates], z[references], sigma=sigma, chunk_size=chunk_size)
    # Remove each candidate's affinity with itself (exp(0) = 1) when it is among the references.
    in_refs = torch.zeros(n, dtype=torch.bool)
    in_refs[references] = True
    self_term = in_refs[candidates].to(sums.dtype)
    mean_affinity = (sums - self_term) / (len(references) - self_term)
    return int(candidates[int(torch.argmax(mean_affinity))])
