"""MA-EM on embeddings sharded over processes (docs/method.md section 13): each rank holds only its
rows, and the fit equals the one-process fit on the rows of all ranks concatenated.

Per iteration, with rank r holding rows X_r (the concatenation X = [X_0; X_1; ...] is never formed):
- E-step, local: gamma_ik = pi_k N(x_i | mu_k, Sigma_k) / sum_l pi_l N(x_i | mu_l, Sigma_l);
- N_k = sum_i gamma_ik and the mean log-likelihood: all-reduced sums;
- medoids: the candidates of component k are its C hard-assigned members of lowest priority
  p_i, where p = U(0, 1) draws seeded by ``random_state`` and indexed by the global row, so the
  candidates do not depend on how the rows are sharded; each rank proposes its own C lowest, the
  proposals are gathered and the C lowest overall kept. Every candidate's affinity sum
  s_c = sum_{j in M_k} exp(-||x_c - x_j||^2 / sigma^2) over the members on this rank is
  all-reduced, and mu_k = the candidate of largest s_c;
- Sigma_k = sum_i gamma_ik (x_i - mu_k)(x_i - mu_k)^T / N_k + reg_covar I: all-reduced sums.
Initialisation: k-means++ on the (at most ``init_sample``) rows of lowest priority, gathered on every
rank; the bandwidth is the median distance on the same rows. Bytes exchanged per iteration:
O(K d^2 + K C d) per rank, independent of n.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.cluster import kmeans_plusplus

from . import distributed
from .geometry import DEFAULT_CHUNK, median_distance, squared_distances
from .mixture import log_gaussian_prob, precision_cholesky


class ShardedManifoldAnchoredGMM:
    """MA-EM (full covariances, medoid anchor) on the rows this process holds; under torchrun every
    rank calls ``fit`` with its own rows and ends with the same parameters.

    Parameters: n_components K; max_candidates C per component and iteration; init_sample rows for
    k-means++ and the bandwidth; tol, max_iter, reg_covar as in ``ManifoldAnchoredGMM``;
    random_state an int.

    Attributes after fit: means_, covariances_, weights_, precisions_cholesky_, medoid_indices_
    (global row indices: rank 0's rows first, then rank 1's, ...), bandwidth_, n_iter_, converged_,
    lower_bound_, bytes_exchanged_ (bytes this rank received in collectives, 0 in one process).
    """

    def __init__(self, n_components: int, *, max_candidates: int = 256, init_sample: int = 10000, tol: float = 1e-3,
                 max_iter: int = 100, reg_covar: float = 1e-6, chunk_size: int = DEFAULT_CHUNK, random_state: int = 0):
        if n_components < 1 or max_candidates < 1 or init_sample < n_components or max_iter < 1:
            raise ValueError("need n_components, max_candidates, max_iter >= 1 and init_sample >= n_components")
        self.n_components, self.max_candidates, self.init_sample = n_components, max_candidates, init_sample
        self.tol, self.max_iter, self.reg_covar, self.chunk_size = tol, max_iter, reg_covar, chunk_size
        self.random_state = random_state

    # ------------------------------------------------------------------ collectives
    def _sum(self, tensor: torch.Tensor) -> torch.Tensor:
        self.bytes_exchanged_ += (distributed.world_size() - 1) * tensor.numel() * tensor.element_size()
        return distributed.all_reduce_sum(tensor)

    def _gather(self, local: torch.Tensor, counts: list[int]) -> torch.Tensor:
        """Rows of every rank concatenated in rank order; counts: each rank's number of rows."""
        if distributed.world_size() == 1:
            return local
        parts = distributed.gather_padded(local, max(counts))
        self.bytes_exchanged_ += (len(counts) - 1) * parts[0].numel() * parts[0].element_size()
        return torch.cat([part[:count] for part, count in zip(parts, counts)])

    def _counts(self, n_local: int) -> list[int]:
        counts = torch.zeros(distributed.world_size(), dtype=torch.long)
        counts[distributed.rank()] = n_local
        return self._sum(counts).tolist()

    # ------------------------------------------------------------------ fitting
    def fit(self, X) -> ShardedManifoldAnchoredGMM:
        x = torch.as_tensor(np.asarray(X, dtype=np.float64))
        if x.ndim != 2 or not torch.isfinite(x).all():
            raise ValueError(f"X must be a finite 2-D array, got shape {tuple(x.shape)}")
        self.bytes_exchanged_ = 0
        counts = self._counts(len(x))
        n, offset = sum(counts), sum(counts[: distributed.rank()])
        if n < self.n_components:
            raise ValueError(f"Expected n_samples >= n_components, got {n} < {self.n_components}")
        priority = torch.as_tensor(np.random.default_rng(self.random_state).random(n)[offset:offset + len(x)])
        rows, _, valid = self._lowest(x, priority, torch.zeros(len(x), dtype=torch.long), 1, self.init_sample, offset)
        sample = rows[0][valid[0]]
        sigma = median_distance(sample, seed=self.random_state)
        centres, _ = kmeans_plusplus(sample.numpy(), self.n_components, random_state=self.random_state)
        labels = squared_distances(x, torch.as_tensor(centres)).argmin(1)
        resp = torch.nn.functional.one_hot(labels, self.n_components).double()
        means, medoids, covs, weights = self._m_step(x, resp, labels, priority, sigma, n, offset)
        prev_ll, prev_labels, converged = -np.inf, None, False
        for n_iter in range(1, self.max_iter + 1):  # noqa: B007 (n_iter is the count kept after the loop)
            prec_chol = precision_cholesky(covs, "full")
            weighted = log_gaussian_prob(x, means, prec_chol, "full") + weights.log()
            sample_ll = torch.logsumexp(weighted, 1)
            labels = weighted.argmax(1)
            ll = float(self._sum(sample_ll.sum().reshape(1))[0]) / n
            changed = self._sum(torch.tensor([0 if prev_labels is None else int((labels != prev_labels).sum()),
                                              int(prev_labels is None)]))
            if abs(ll - prev_ll) < self.tol or (changed[1] == 0 and changed[0] == 0):
                converged = True
                break
            resp = (weighted - sample_ll[:, None]).exp()
            means, medoids, covs, weights = self._m_step(x, resp, labels, priority, sigma, n, offset)
            prev_ll, prev_labels = ll, labels
        self.means_, self.covariances_, self.weights_ = means.numpy(), covs.numpy(), weights.numpy()
        self.precisions_cholesky_ = precision_cholesky(covs, "full").numpy()
        self.medoid_indices_ = medoids.numpy()
        self.bandwidth_, self.n_iter_, self.converged_, self.lower_bound_ = sigma, n_iter, converged, ll
        return self

    def _lowest(self, x, priority, labels, n_groups, count, offset):
        """Per group k: the ``count`` rows of lowest priority among all ranks' rows labelled k, as
        (rows (n_groups, count, d), global indices (n_groups, count), valid (n_groups, count))."""
        d = x.shape[1]
        rows = torch.zeros(n_groups, count, d, dtype=x.dtype)
        index = torch.full((n_groups, count), -1, dtype=torch.long)
        key = torch.full((n_groups, count), np.inf, dtype=torch.float64)
        for k in range(n_groups):
            members = (labels == k).nonzero().squeeze(1)
            take = members[torch.argsort(priority[members])[:count]]
            rows[k, : len(take)], index[k, : len(take)], key[k, : len(take)] = x[take], take + offset, priority[take]
        if distributed.world_size() > 1:  # one gather of the rows, indices and keys packed in float64
            size = distributed.world_size()
            packed = torch.cat([rows, index[..., None].double(), key[..., None]], 2).reshape(1, -1)
            packed = self._gather(packed, [1] * size).reshape(size, n_groups, count, d + 2)
            rows, index, key = packed[..., :d], packed[..., d].long(), packed[..., d + 1]
            order = torch.argsort(key.permute(1, 0, 2).reshape(n_groups, -1), dim=1)[:, :count]
            rows = torch.gather(rows.permute(1, 0, 2, 3).reshape(n_groups, -1, d), 1,
                                order[..., None].expand(-1, -1, d))
            index = torch.gather(index.permute(1, 0, 2).reshape(n_groups, -1), 1, order)
            key = torch.gather(key.permute(1, 0, 2).reshape(n_groups, -1), 1, order)
        return rows, index, torch.isfinite(key)

    def _m_step(self, x, resp, labels, priority, sigma, n, offset):
        """Medoids from the candidates' all-reduced affinity sums, then N_k, weights, covariances."""
        k_total = self.n_components
        candidates, index, valid = self._lowest(x, priority, labels, k_total, self.max_candidates, offset)
        scores = torch.zeros(k_total, self.max_candidates, dtype=torch.float64)
        x32, c32 = x.float(), candidates.float()
        for k in range(k_total):
            members = x32[labels == k]
            for block in members.split(self.chunk_size):
                scores[k] += torch.exp(-squared_distances(c32[k], block).double() / sigma**2).sum(1)
        scores = self._sum(scores)
        scores[~valid] = -np.inf
        best = scores.argmax(1)
        empty = ~valid[:, 0]
        if bool(empty.any()):
            raise ValueError(f"component(s) {empty.nonzero().squeeze(1).tolist()} lost every member; use fewer "
                             "components")
        means = candidates[torch.arange(k_total), best]
        medoids = index[torch.arange(k_total), best]
        nk = self._sum(resp.sum(0)) + 10 * torch.finfo(torch.float64).eps
        scatter = torch.stack([((resp[:, k, None] * (x - means[k])).T @ (x - means[k])) for k in range(k_total)])
        covs = self._sum(scatter) / nk[:, None, None]
        covs.diagonal(dim1=-2, dim2=-1).add_(self.reg_covar)
        return means, medoids, covs, nk / n

    def predict(self, X) -> np.ndarray:
        x = torch.as_tensor(np.asarray(X, dtype=np.float64))
        weighted = log_gaussian_prob(x, torch.as_tensor(self.means_), torch.as_tensor(self.precisions_cholesky_),
                                     "full") + torch.as_tensor(self.weights_).log()
        return weighted.argmax(1).numpy()
