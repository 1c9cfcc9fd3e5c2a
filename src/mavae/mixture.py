"""ManifoldAnchoredGMM: a Gaussian mixture whose means are graph medoids (docs/method.md section 2).

The E-step is the usual posterior; the M-step sets each mean to the heat-kernel graph medoid of
the component's hard-assigned members (a real input point), while covariances and weights keep
the soft responsibilities. ``anchor="mean"`` swaps the medoid for the responsibility-weighted
mean, which is ordinary EM. Everything else is shared.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from mavae.geometry import (DEFAULT_CHUNK, bandwidth, cluster_argmax, graph_medoid, squared_distances,
                            update_within_cluster_affinity, within_cluster_affinity)

ANCHORS = ("medoid", "mean")
COVARIANCE_TYPES = ("full", "diag", "spherical")
INIT_PARAMS = ("k-means++", "kmeans", "em")
AUTO_SAMPLE = 2048  # "auto": exact while a hard set has <= 2 * AUTO_SAMPLE members, else this many


class EmptyComponentWarning(UserWarning):
    """A component lost all its members and was re-seeded."""


# ----------------------------------------------------------------------------------------------
# Gaussian densities in log space with Cholesky factors of the precisions (as sklearn does).
# Shapes: full (K, d, d), diag (K, d), spherical (K,).
# ----------------------------------------------------------------------------------------------

def precision_cholesky(covariances: torch.Tensor, covariance_type: str) -> torch.Tensor:
    """Cholesky factor P of each precision: Sigma^-1 = P P^T (P = L^-T where Sigma = L L^T)."""
    if covariance_type == "full":
        chol, info = torch.linalg.cholesky_ex(covariances)
        if bool((info != 0).any()) or not bool(torch.isfinite(covariances).all()):
            raise ValueError(
                "Fitting the mixture model failed because some components have an ill-defined "
                "empirical covariance (for instance caused by singleton or collapsed samples). "
                "Try to decrease the number of components, or increase reg_covar.")
        eye = torch.eye(covariances.shape[-1], dtype=covariances.dtype).expand_as(covariances)
        return torch.linalg.solve_triangular(chol, eye, upper=False).transpose(-1, -2)
    if bool((covariances <= 0).any()):
        raise ValueError("Fitting the mixture model failed because some components have a zero "
                         "variance. Try to decrease the number of components, or increase reg_covar.")
    return covariances.rsqrt()


def log_det_precision_cholesky(prec_chol: torch.Tensor, covariance_type: str, n_features: int) -> torch.Tensor:
    """log det P per component (= -1/2 log det Sigma)."""
    if covariance_type == "full":
        return torch.diagonal(prec_chol, dim1=-2, dim2=-1).log().sum(-1)
    if covariance_type == "diag":
        return prec_chol.log().sum(-1)
    return n_features * prec_chol.log()


def outer_products(y: torch.Tensor) -> torch.Tensor:
    """(n, d * d): row i is y_i y_i^T flattened."""
    return (y[:, :, None] * y[:, None, :]).reshape(len(y), -1)


def _rows_per_block(width: int) -> int:
    return max(1, 2**22 // max(1, width))  # blocks of about 32 MB of float64


def log_gaussian_prob(x: torch.Tensor, means: torch.Tensor, prec_chol: torch.Tensor,
                      covariance_type: str) -> torch.Tensor:
    """log N(x_i | mu_k, Sigma_k) for every i, k: -1/2 (d log 2pi + ||P_k^T (x_i - mu_k)||^2) + log det P_k."""
    n, d = x.shape
    if covariance_type == "full":
        # ||P_k^T (x - mu_k)||^2 = y^T A_k y - 2 y^T A_k m_k + m_k^T A_k m_k with A_k = P_k P_k^T, y = x - c,
        # m_k = mu_k - c and c the means' centroid: one (n, d^2) x (d^2, K) matmul for all components,
        # chunked over rows (memory O(chunk d^2)), instead of K (n, d) x (d, d) products.
        k = len(means)
        centre = means.mean(0)
        precisions = prec_chol @ prec_chol.transpose(-1, -2)
        m = means - centre
        am = torch.einsum("kde,ke->kd", precisions, m)
        flat = precisions.reshape(k, d * d).T
        maha = torch.cat([outer_products(y) @ flat - 2 * (y @ am.T)
                          for y in (x - centre).split(_rows_per_block(d * d))]) + (m * am).sum(1)
    elif covariance_type == "diag":  # sum_j p_kj^2 (x_ij - mu_kj)^2, expanded into matmuls
        p2 = prec_chol ** 2
        maha = (x * x) @ p2.T - 2 * x @ (means * p2).T + (means * means * p2).sum(1)
    else:
        maha = squared_distances(x, means) * prec_chol[None, :] ** 2
    return -0.5 * (d * math.log(2 * math.pi) + maha) + log_det_precision_cholesky(prec_chol, covariance_type, d)


def estimate_covariances(x: torch.Tensor, resp: torch.Tensor, nk: torch.Tensor, means: torch.Tensor,
                         covariance_type: str, reg_covar: float) -> torch.Tensor:
    """Sigma_k = sum_i gamma_ik (x_i - mu_k)(x_i - mu_k)^T / N_k + reg_covar I (centred at mu_k)."""
    # E_k[(x - mu)(x - mu)^T] = E_k[y y^T] - m E_k[y]^T - E_k[y] m^T + m m^T, with y = x - c, m = mu - c and
    # c the data mean (so the terms stay of the order of the data's spread): for "full" one chunked
    # (K, n) x (n, d^2) matmul for all components; per feature for "diag" and "spherical"
    centre = x.mean(0)
    y, m = x - centre, means - centre
    avg_y = (resp.T @ y) / nk[:, None]
    if covariance_type == "full":
        k, d = m.shape
        rows = _rows_per_block(d * d)
        second = sum(r.T @ outer_products(block) for r, block in zip(resp.split(rows), y.split(rows)))
        covs = second.reshape(k, d, d) / nk[:, None, None] - m[:, :, None] * avg_y[:, None, :]
        covs = covs - avg_y[:, :, None] * m[:, None, :] + m[:, :, None] * m[:, None, :]
        covs = (covs + covs.transpose(-1, -2)) / 2  # exactly symmetric
        covs.diagonal(dim1=-2, dim2=-1).add_(reg_covar)
        return covs
    avg_y2 = (resp.T @ (y * y)) / nk[:, None]
    diag = (avg_y2 - 2 * m * avg_y + m * m).clamp_min(0.0) + reg_covar
    return diag if covariance_type == "diag" else diag.mean(1)


def n_parameters(n_components: int, n_features: int, covariance_type: str) -> int:
    """Free parameters: means, covariances and K - 1 weights."""
    cov = {"full": n_components * n_features * (n_features + 1) / 2,
           "diag": n_components * n_features, "spherical": n_components}[covariance_type]
    return int(cov + n_components * n_features + n_components - 1)


class ManifoldAnchoredGMM(DensityMixin, BaseEstimator):
    """Gaussian mixture fitted by manifold-anchored EM (MA-EM).

    E-step: gamma_ik = pi_k N(z_i | mu_k, Sigma_k) / sum_l pi_l N(z_i | mu_l, Sigma_l).
    M-step: mu_k = argmax_{m in M_k} sum_{j in M_k} exp(-||z_m - z_j||^2 / sigma^2) with
    M_k = {i : argmax_l gamma_il = k} (the graph medoid, always an input point); N_k = sum_i
    gamma_ik, pi_k = N_k / n, Sigma_k = sum_i gamma_ik (z_i - mu_k)(z_i - mu_k)^T / N_k + reg_covar I.

    Parameters
    ----------
    n_components : number of mixture components K.
    anchor : "medoid" (MA-EM) or "mean" (ordinary EM, for comparison).
    covariance_type : "full", "diag" or "spherical".
    tol : stop when the mean log-likelihood changes by less than tol; with the medoid anchor the
        fit also stops as soon as the hard assignments no longer change.
    reg_covar : added to the covariance diagonals.
    max_iter : EM iterations per initialisation.
    n_init : initialisations; the best log-likelihood is kept.
    init_params : "k-means++" (k-means++ seeding, hard labels by nearest seed, one M-step) or
        "kmeans" (the same seeding refined by Lloyd's k-means before the M-step, as sklearn's
        GaussianMixture initialises) or "em" (k-means++ seeding, then ordinary mean-anchored EM to
        convergence, then the medoid-anchored EM: soft means can slide out of the poor optima that
        hard-set medoids get stuck in, e.g. a split elongated cluster).
    bandwidth : heat-kernel sigma: "median" (median pairwise distance of the fitted set, from a
        seeded sample of pairs when large), "knn" (median distance to the 10th neighbour) or a
        positive float. Computed once per fit. The median bandwidth (the paper's) makes the
        medoid a central member of its set (a discrete Frechet mean); "knn" makes it
        mode-seeking (the densest member at the scale of the 10th neighbour).
    max_references : score medoid candidates against at most this many seeded random members
        (None: all members, exact; "auto": exact while every hard set has at most 4096 members,
        else 2048 references).
    max_candidates : consider at most this many seeded random members (plus the previous
        medoid) as medoid candidates (None: all members, exact; "auto": as for max_references).
        The sampled path keeps large fits near GaussianMixture's time (benchmarks/bench_maem.py, without
        split-and-merge: 1.08x to 2.18x at 60,000 points, ARI >= 0.99 against the exact medoids).
    chunk_size : rows per block when summing affinities (memory O(chunk_size * |M_k|)).
    weights_init, means_init, precisions_init : optional starting parameters (as in
        sklearn's GaussianMixture); with means_init alone, points are hard-assigned to the
        nearest mean and one M-step follows.
    split_merge : after the initialisations, split-and-merge moves (Ueda et al., Neural Computation
        2000) on the kept fit: merge the two components whose responsibilities overlap most
        (J_merge(i, j) = sum_n gamma_ni gamma_nj), split a third along its principal axis (the one whose
        Gaussian fits its members worst: local KL J_split(k) = sum_n f_nk ln(f_nk / N(z_n | mu_k, Sigma_k)),
        f_nk = gamma_nk / N_k), rerun EM from there and keep the result if its log-likelihood rises by
        more than tol. Up to ``split_merge`` such triples are tried per round, in that order; rounds
        go on while one is kept. This escapes the typical local optimum of EM, one true cluster split
        in two while two others share a component, which more restarts find only by chance. 0: none.
        Not applied when the fit starts from given or warm parameters, or for K < 3.
    warm_start : start the next ``fit`` from this fit's parameters (n_init is then ignored).
    random_state : seed for the seeding, the bandwidth sample and the medoid sampling.

    An empty M_k is re-seeded with the point of lowest likelihood under the current model (the
    data covariance and weight 1/K), with an ``EmptyComponentWarning``: components never vanish
    silently. With anchor="mean" no component can empty out (N_k > 0 always), as in sklearn.
    """

    def __init__(self, n_components=1, *, anchor="medoid", covariance_type="full", tol=1e-3, reg_covar=1e-6,
                 max_iter=100, n_init=1, init_params="k-means++", bandwidth="median", max_references="auto",
                 max_candidates="auto",
                 chunk_size=DEFAULT_CHUNK, weights_init=None, means_init=None, precisions_init=None,
                 split_merge=5, warm_start=False, random_state=None):
        self.n_components = n_components
        self.anchor = anchor
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.bandwidth = bandwidth
        self.max_references = max_references
        self.max_candidates = max_candidates
        self.chunk_size = chunk_size
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.split_merge = split_merge
        self.warm_start = warm_start
        self.random_state = random_state

    # ------------------------------------------------------------------ validation
    def _check_parameters(self, n_samples: int, n_features: int) -> None:
        def positive_int(name, allow_none=False):
            value = getattr(self, name)
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")

        positive_int("n_components")
        positive_int("max_iter")
        positive_int("n_init")
        positive_int("chunk_size")
        if isinstance(self.split_merge, bool) or not isinstance(self.split_merge, (int, np.integer)) \
                or self.split_merge < 0:
            raise ValueError(f"split_merge must be an integer >= 0, got {self.split_merge!r}")
        for name in ("max_references", "max_candidates"):
            if getattr(self, name) != "auto":
                positive_int(name, allow_none=True)
        if self.anchor not in ANCHORS:
            raise ValueError(f"anchor must be one of {ANCHORS}, got {self.anchor!r}")
        if self.init_params not in INIT_PARAMS:
            raise ValueError(f"init_params must be one of {INIT_PARAMS}, got {self.init_params!r}")
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {self.covariance_type!r}")
        for name in ("tol", "reg_covar"):
            value = getattr(self, name)
            if not isinstance(value, (int, float, np.floating)) or isinstance(value, bool) or not value >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if n_samples < 2:
            raise ValueError(f"ManifoldAnchoredGMM needs at least 2 samples, got n_samples={n_samples}")
        if n_samples < self.n_components:
            raise ValueError(f"Expected n_samples >= n_components, got n_components={self.n_components} "
                             f"and n_samples={n_samples}")
        k, d = self.n_components, n_features
        if self.means_init is not None and np.shape(self.means_init) != (k, d):
            raise ValueError(f"means_init must have shape {(k, d)}, got {np.shape(self.means_init)}")
        if self.weights_init is not None:
            w = np.asarray(self.weights_init, dtype=float)
            if w.shape != (k,) or (w < 0).any() or not np.isclose(w.sum(), 1.0):
                raise ValueError(f"weights_init must be {k} non-negative weights summing to 1, got {w}")
        if self.precisions_init is not None:
            shape = {"full": (k, d, d), "diag": (k, d), "spherical": (k,)}[self.covariance_type]
            if np.shape(self.precisions_init) != shape:
                raise ValueError(f"precisions_init must have shape {shape} for covariance_type="
                                 f"'{self.covariance_type}', got {np.shape(self.precisions_init)}")

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None):
        """Fit by MA-EM (``n_init`` initialisations, the best log-likelihood kept). Returns self."""
        self.fit_predict(X, y)
        return self

    def fit_predict(self, X, y=None):
        """Fit, then return argmax_k gamma_ik for the training points (equal to fit(X).predict(X))."""
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=1, reset=True)
        n, d = X.shape
        self._check_parameters(n, d)
        x = torch.tensor(X, dtype=torch.float64)
        rng = check_random_state(self.random_state)
        sigma = bandwidth(x, self.bandwidth if not isinstance(self.bandwidth, np.number) else float(self.bandwidth),
                          seed=int(rng.randint(2**31 - 1)))
        warm = self.warm_start and hasattr(self, "means_")
        best, best_ll = None, -np.inf
        for _ in range(1 if warm else self.n_init):
            fitted = self._fit_once(x, sigma, rng, warm)
            if fitted["lower_bound"] > best_ll or best is None:
                best, best_ll = fitted, fitted["lower_bound"]
        if not warm and self.means_init is None and self.split_merge > 0 and self.n_components >= 3:
            best = self._split_and_merge(x, sigma, rng, best)
        if not best["converged"]:
            warnings.warn(f"MA-EM did not converge in max_iter={self.max_iter} iterations; try a larger "
                          "max_iter or tol, or check the data.", ConvergenceWarning, stacklevel=2)
        self._set_parameters(best["means"], best["covariances"], best["weights"], best["prec_chol"])
        self.medoid_indices_ = best["medoid_indices"]
        self.bandwidth_ = sigma
        self.converged_ = best["converged"]
        self.n_iter_ = best["n_iter"]
        self.lower_bound_ = best["lower_bound"]
        # a final E-step under the kept parameters (as sklearn does), so that the labels equal
        # fit(X).predict(X) also when the fit stopped at max_iter, right after an M-step
        log_resp, _ = self._e_step(x, best["means"], best["prec_chol"], best["weights"])
        return log_resp.argmax(1).numpy()

    def _fit_once(self, x, sigma, rng, warm):
        seed = int(rng.randint(2**31 - 1))
        medoids = None
        cache = {"x32": x.float()}  # affinities in float32; exact-path scores cached across M-steps
        if warm:
            means, weights = torch.tensor(self.means_), torch.tensor(self.weights_)
            prec_chol = torch.tensor(self.precisions_cholesky_)
            medoids = None if self.medoid_indices_ is None else torch.tensor(self.medoid_indices_)
        elif self.means_init is not None and self.precisions_init is not None:
            means = torch.tensor(np.asarray(self.means_init, dtype=np.float64))
            weights = torch.full((self.n_components,), 1.0 / self.n_components, dtype=torch.float64) \
                if self.weights_init is None else torch.tensor(np.asarray(self.weights_init, dtype=np.float64))
            prec_chol = self._precisions_to_cholesky(torch.tensor(np.asarray(self.precisions_init, dtype=np.float64)))
        else:
            if self.means_init is not None:
                centres = torch.tensor(np.asarray(self.means_init, dtype=np.float64))
            elif self.init_params == "kmeans":
                kmeans = KMeans(self.n_components, n_init=1, random_state=rng).fit(x.numpy())
                centres = torch.from_numpy(kmeans.cluster_centers_).to(x.dtype)
            else:
                centres, _ = kmeans_plusplus(x.numpy(), self.n_components, random_state=rng)
                centres = torch.from_numpy(centres)
            d2 = squared_distances(x, centres)
            labels = d2.argmin(1)
            resp = torch.nn.functional.one_hot(labels, self.n_components).to(x.dtype)
            anchor = "mean" if self.init_params == "em" else self.anchor
            means, covs, weights, medoids = self._m_step(x, resp, labels, -d2.min(1).values, sigma, seed, None,
                                                         cache, anchor)
            prec_chol = precision_cholesky(covs, self.covariance_type)
            if self.init_params == "em" and self.anchor == "medoid":  # ordinary EM first, then anchor
                means, weights, prec_chol, medoids, *_ = self._em(x, sigma, seed, means, weights, prec_chol,
                                                                  medoids, cache, "mean")
        means, weights, prec_chol, medoids, labels, ll, converged, n_iter = self._em(
            x, sigma, seed, means, weights, prec_chol, medoids, cache, self.anchor)
        covs = self._covariances_from_cholesky(prec_chol)
        return dict(means=means, covariances=covs, weights=weights, prec_chol=prec_chol, lower_bound=ll,
                    converged=converged, n_iter=n_iter,
                    medoid_indices=None if medoids is None else medoids.numpy().copy())

    def _split_and_merge(self, x, sigma, rng, best):
        """Split-and-merge rounds on the fit ``best`` (see ``split_merge``); returns the fit kept."""
        improved = True
        while improved:
            improved = False
            resp = self._e_step(x, best["means"], best["prec_chol"], best["weights"])[0].exp()
            for i, j, s in self._split_merge_candidates(x, best, resp)[: self.split_merge]:
                means, weights, prec_chol = self._merged_and_split(x, best, resp, i, j, s)
                seed = int(rng.randint(2**31 - 1))
                cache = {"x32": x.float()}
                means, weights, prec_chol, medoids, *_ = self._em(x, sigma, seed, means, weights, prec_chol, None,
                                                                  cache, "mean")
                means, weights, prec_chol, medoids, labels, ll, converged, n_iter = self._em(
                    x, sigma, seed, means, weights, prec_chol, medoids, cache, self.anchor)
                if ll > best["lower_bound"] + self.tol:
                    best = dict(means=means, covariances=self._covariances_from_cholesky(prec_chol), weights=weights,
                                prec_chol=prec_chol, lower_bound=ll, converged=converged, n_iter=n_iter,
                                medoid_indices=None if medoids is None else medoids.numpy().copy())
                    improved = True
                    break
        return best

    def _split_merge_candidates(self, x, fit, resp) -> list[tuple[int, int, int]]:
        """(i, j, s) triples: merge pairs by decreasing J_merge, then for each the splits s not in {i, j} by
        decreasing J_split; resp: the fit's responsibilities."""
        overlap = resp.T @ resp
        k = self.n_components
        pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
        pairs.sort(key=lambda p: -float(overlap[p]))
        f = resp / (resp.sum(0) + 10 * torch.finfo(x.dtype).eps)
        log_density = log_gaussian_prob(x, fit["means"], fit["prec_chol"], self.covariance_type)
        j_split = (f * (torch.log(f.clamp_min(1e-300)) - log_density)).sum(0)
        splits = [int(s) for s in torch.argsort(j_split, descending=True)]
        return [(i, j, s) for i, j in pairs for s in splits if s not in (i, j)]

    def _merged_and_split(self, x, fit, resp, i, j, s):
        """Starting parameters: components i and j merged into i (responsibilities summed), component s cut
        by the hyperplane through mu_s normal to its principal axis into s and j."""
        covs = self._covariances_from_cholesky(fit["prec_chol"])
        full = covs if self.covariance_type == "full" else torch.diag_embed(
            covs if self.covariance_type == "diag" else covs[:, None].expand(-1, x.shape[1]))
        axis = torch.linalg.eigh(full[s])[1][:, -1]
        side = ((x - fit["means"][s]) @ axis >= 0).to(x.dtype)
        parts = torch.stack([resp[:, i] + resp[:, j], resp[:, s] * side, resp[:, s] * (1 - side)], 1)
        nk = parts.sum(0) + 10 * torch.finfo(x.dtype).eps
        centres = (parts.T @ x) / nk[:, None]
        new_covs = estimate_covariances(x, parts, nk, centres, self.covariance_type, self.reg_covar)
        means, weights, covs = fit["means"].clone(), fit["weights"].clone(), covs.clone()
        for column, target in enumerate((i, s, j)):
            means[target], covs[target], weights[target] = centres[column], new_covs[column], nk[column] / len(x)
        return means, weights / weights.sum(), precision_cholesky(covs, self.covariance_type)

    def _em(self, x, sigma, seed, means, weights, prec_chol, medoids, cache, anchor):
        """E- and M-steps until the hard labels (medoid anchor) or the mean log-likelihood settle."""
        prev_ll, prev_labels, converged, n_iter = -np.inf, None, False, 0
        # noqa: B007 below: n_iter is read after the loop (returned as the iteration count), which B007 misses
        for n_iter in range(1, self.max_iter + 1):  # noqa: B007
            log_resp, sample_ll = self._e_step(x, means, prec_chol, weights)
            labels = log_resp.argmax(1)
            ll = float(sample_ll.mean())
            same_labels = prev_labels is not None and bool((labels == prev_labels).all())
            if abs(ll - prev_ll) < self.tol or (anchor == "medoid" and same_labels):
                converged = True
                break
            means, covs, weights, medoids = self._m_step(x, log_resp.exp(), labels, sample_ll, sigma, seed,
                                                         medoids, cache, anchor)
            prec_chol = precision_cholesky(covs, self.covariance_type)
            prev_ll, prev_labels = ll, labels
        return means, weights, prec_chol, medoids, labels, ll, converged, n_iter

    def _e_step(self, x, means, prec_chol, weights):
        """log gamma_ik and the per-sample log-likelihood log sum_k pi_k N(x_i | mu_k, Sigma_k)."""
        weighted = log_gaussian_prob(x, means, prec_chol, self.covariance_type) + weights.log()
        sample_ll = torch.logsumexp(weighted, dim=1)
        return weighted - sample_ll[:, None], sample_ll

    def _m_step(self, x, resp, labels, fit_score, sigma, seed, previous_medoids, cache, anchor):
        """Anchors (medoids or weighted means), then soft weights and anchor-centred covariances."""
        n, k = len(x), self.n_components
        nk = resp.sum(0) + 10 * torch.finfo(x.dtype).eps
        reseeded = []
        if anchor == "mean":
            means = (resp.T @ x) / nk[:, None]
            medoids = None
        else:
            medoids, reseeded = self._medoids(cache, labels, fit_score, sigma, seed, previous_medoids)
            means = x[medoids]
            if reseeded:
                resp = resp.clone()
                resp[medoids[reseeded]] = 0.0
                resp[medoids[reseeded], reseeded] = 1.0
                nk = resp.sum(0) + 10 * torch.finfo(x.dtype).eps
        covs = estimate_covariances(x, resp, nk, means, self.covariance_type, self.reg_covar)
        weights = nk / n
        if reseeded:
            data_cov = estimate_covariances(x, torch.ones(n, 1, dtype=x.dtype), torch.tensor([float(n)], dtype=x.dtype),
                                            x.mean(0, keepdim=True), self.covariance_type, self.reg_covar)
            covs[reseeded] = data_cov[0]
            weights[reseeded] = 1.0 / k
            weights = weights / weights.sum()
        return means, covs, weights, medoids

    def _medoids(self, cache, labels, fit_score, sigma, seed, previous):
        """Graph medoid of each hard-assigned set; empty sets re-seeded at the worst-fit points.

        Exact path: every point's within-cluster affinity sum is cached and updated from the
        points that changed cluster (O(n |moved|)), or recomputed when that would cost more.
        """
        x32, k_total = cache["x32"], self.n_components
        counts = torch.bincount(labels, minlength=k_total).double()
        large = int(counts.max()) > 2 * AUTO_SAMPLE
        references, candidates = ((AUTO_SAMPLE if large else None) if isinstance(r, str) else r
                                  for r in (self.max_references, self.max_candidates))
        if references is None and candidates is None:
            moved = int((labels != cache["labels"]).sum()) if "labels" in cache else len(labels)
            if moved * len(labels) < float((counts ** 2).sum()):
                cache["scores"] = update_within_cluster_affinity(x32, cache["scores"], cache["labels"], labels,
                                                                 k_total, sigma=sigma, chunk_size=self.chunk_size)
            else:
                cache["scores"] = within_cluster_affinity(x32, labels, k_total, sigma=sigma,
                                                          chunk_size=self.chunk_size)
            cache["labels"] = labels
            medoids = cluster_argmax(cache["scores"], labels, k_total)
        else:
            medoids = torch.full((k_total,), -1, dtype=torch.long)
            for k in range(k_total):
                members = (labels == k).nonzero().squeeze(1)
                if len(members) == 0:
                    continue
                include = None
                if previous is not None and 0 <= previous[k] < len(labels) and labels[previous[k]] == k:
                    include = int(torch.searchsorted(members, previous[k]))
                local = graph_medoid(x32[members], sigma=sigma, chunk_size=self.chunk_size,
                                     max_references=references, max_candidates=candidates,
                                     include=include, seed=seed * 1000 + k)
                medoids[k] = members[local]
        reseeded = (medoids < 0).nonzero().squeeze(1).tolist()
        if reseeded:
            order = torch.argsort(fit_score)  # worst-fit first
            taken = set(medoids[medoids >= 0].tolist())
            free = [int(i) for i in order[: len(taken) + len(reseeded)] if int(i) not in taken]
            for k, point in zip(reseeded, free):
                medoids[k] = point
            warnings.warn(f"component(s) {reseeded} had no hard-assigned member and were re-seeded at the "
                          "point(s) of lowest likelihood", EmptyComponentWarning, stacklevel=2)
        return medoids, reseeded

    # ------------------------------------------------------------------ parameters
    def _precisions_to_cholesky(self, precisions):
        if self.covariance_type == "full":
            return torch.linalg.cholesky(precisions)
        return precisions.sqrt()

    def _covariances_from_cholesky(self, prec_chol):
        if self.covariance_type == "full":
            return torch.linalg.inv(prec_chol @ prec_chol.transpose(-1, -2))
        return prec_chol ** -2

    def _set_parameters(self, means, covariances, weights, prec_chol):
        self.means_ = means.numpy().copy()
        self.covariances_ = covariances.numpy().copy()
        self.weights_ = weights.numpy().copy()
        self.precisions_cholesky_ = prec_chol.numpy().copy()
        if self.covariance_type == "full":
            self.precisions_ = (prec_chol @ prec_chol.transpose(-1, -2)).numpy().copy()
        else:
            self.precisions_ = (prec_chol ** 2).numpy().copy()

    def _check_x(self, X) -> torch.Tensor:
        check_is_fitted(self, "means_")
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return torch.tensor(X, dtype=torch.float64)

    def _weighted_log_prob(self, X) -> torch.Tensor:
        x = self._check_x(X)
        return log_gaussian_prob(x, torch.from_numpy(self.means_), torch.from_numpy(self.precisions_cholesky_),
                                 self.covariance_type) + torch.from_numpy(self.weights_).log()

    # ------------------------------------------------------------------ inference
    def score_samples(self, X):
        """log p(x_i) = log sum_k pi_k N(x_i | mu_k, Sigma_k)."""
        return torch.logsumexp(self._weighted_log_prob(X), dim=1).numpy()

    def score(self, X, y=None):
        """Mean log-likelihood of X."""
        return float(self.score_samples(X).mean())

    def predict_proba(self, X):
        """gamma_ik, rows summing to 1."""
        return torch.softmax(self._weighted_log_prob(X), dim=1).numpy()

    def predict(self, X):
        """argmax_k gamma_ik."""
        return self._weighted_log_prob(X).argmax(1).numpy()

    def bic(self, X):
        """-2 log L + p log n."""
        X = np.asarray(X)
        return -2 * self.score(X) * len(X) + self._n_parameters() * np.log(len(X))

    def aic(self, X):
        """-2 log L + 2 p."""
        return -2 * self.score(X) * len(np.asarray(X)) + 2 * self._n_parameters()

    def _n_parameters(self):
        return n_parameters(self.n_components, self.means_.shape[1], self.covariance_type)

    def sample(self, n_samples=1):
        """Draw n_samples points; returns (X, component labels)."""
        check_is_fitted(self, "means_")
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        rng = check_random_state(self.random_state)
        counts = rng.multinomial(n_samples, self.weights_)
        d = self.means_.shape[1]
        parts = []
        for k, count in enumerate(counts):
            if self.covariance_type == "full":
                parts.append(rng.multivariate_normal(self.means_[k], self.covariances_[k], count))
            else:
                sd = np.sqrt(self.covariances_[k]) * np.ones(d)
                parts.append(self.means_[k] + rng.standard_normal((count, d)) * sd)
        return np.vstack(parts), np.repeat(np.arange(self.n_components), counts)
