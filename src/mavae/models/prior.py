"""A Gaussian-mixture prior held as buffers, so a model's state_dict carries it."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..mixture import estimate_covariances, log_gaussian_prob, precision_cholesky


def kl_diag_to_full(mean: torch.Tensor, logvar: torch.Tensor, mu: torch.Tensor,
                    prec_chol: torch.Tensor) -> torch.Tensor:
    """KL(N(m, diag s^2) || N(mu, S)) = 1/2 [tr(S^-1 diag s^2) + (mu - m)^T S^-1 (mu - m) - d + ln det S
    - sum ln s^2], per row, with S^-1 = P P^T (so ln det S = -2 sum ln diag P). mu, P are per row."""
    var = logvar.exp()
    trace = (var[:, :, None] * prec_chol.square()).sum((1, 2))  # sum_j s_j^2 sum_l P_jl^2
    maha = ((mean - mu)[:, :, None] * prec_chol).sum(1).square().sum(1)  # ||P^T (m - mu)||^2
    log_det_s = -2.0 * torch.diagonal(prec_chol, dim1=-2, dim2=-1).log().sum(1)
    return 0.5 * (trace + maha - mean.shape[1] + log_det_s - logvar.sum(1))


def mixture_in_latents(z, resp, means, reg_covar: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """The Gaussian mixture in z of a partition found in another space (e.g. manifold coordinates):
    given responsibilities gamma (n, K) and anchors mu_k (K, d) in z, Sigma_k = sum_i gamma_ik
    (z_i - mu_k)(z_i - mu_k)^T / N_k + reg_covar I and pi_k = N_k / n, N_k = sum_i gamma_ik.
    Returns (covariances (K, d, d), weights (K,)) as float64 arrays."""
    z, resp = torch.as_tensor(np.asarray(z, dtype=np.float64)), torch.as_tensor(np.asarray(resp, dtype=np.float64))
    nk = resp.sum(0) + 1e-12
    covariances = estimate_covariances(z, resp, nk, torch.as_tensor(np.asarray(means, dtype=np.float64)), "full",
                                       reg_covar)
    return covariances.numpy(), (nk / len(z)).numpy()


class MixturePrior(nn.Module):
    """p(z) = sum_k pi_k N(z | mu_k, Sigma_k) with full covariances; unset until ``set`` is called.

    Posteriors use Sigma_k exactly as fitted (the estimator's predict_proba). The KL target of
    component k may add a diagonal ``extra_variance`` v_k: N(mu_k, Sigma_k + diag v_k).
    """

    def __init__(self, n_components: int, latent_dim: int):
        super().__init__()
        k, d = n_components, latent_dim
        self.n_components, self.latent_dim = k, d
        self.register_buffer("means", torch.zeros(k, d))
        self.register_buffer("covariances", torch.eye(d).repeat(k, 1, 1))
        self.register_buffer("weights", torch.full((k,), 1.0 / k))
        self.register_buffer("precisions_cholesky", torch.eye(d).repeat(k, 1, 1))
        self.register_buffer("kl_precisions_cholesky", torch.eye(d).repeat(k, 1, 1))
        self.register_buffer("medoid_indices", torch.full((k,), -1, dtype=torch.long))
        self.register_buffer("fitted", torch.tensor(False))

    def set(self, means, covariances, weights, medoid_indices=None, extra_variance=None) -> None:
        """Install new parameters (arrays or tensors), e.g. from a fitted estimator; extra_variance
        (K, d) widens the KL targets only."""
        dtype = self.means.dtype
        covariances = torch.as_tensor(np.asarray(covariances), dtype=torch.float64)
        kl_covariances = covariances if extra_variance is None else \
            covariances + torch.diag_embed(torch.as_tensor(np.asarray(extra_variance), dtype=torch.float64))
        self.kl_precisions_cholesky.copy_(precision_cholesky(kl_covariances, "full").to(dtype))
        self.means.copy_(torch.as_tensor(np.asarray(means)).to(dtype))
        self.covariances.copy_(covariances.to(dtype))
        self.weights.copy_(torch.as_tensor(np.asarray(weights)).to(dtype))
        self.precisions_cholesky.copy_(precision_cholesky(covariances, "full").to(dtype))
        if medoid_indices is not None:
            self.medoid_indices.copy_(torch.as_tensor(np.asarray(medoid_indices), dtype=torch.long))
        self.fitted.fill_(True)

    def log_joint(self, z: torch.Tensor) -> torch.Tensor:
        """log pi_k + log N(z | mu_k, Sigma_k), shape (n, K)."""
        return log_gaussian_prob(z, self.means, self.precisions_cholesky, "full") + self.weights.log()

    def posterior(self, z: torch.Tensor) -> torch.Tensor:
        """gamma_k(z) = pi_k N(z | mu_k, Sigma_k) / sum_l pi_l N(z | mu_l, Sigma_l)."""
        return torch.softmax(self.log_joint(z), dim=1)

    def assigned(self, mean: torch.Tensor) -> torch.Tensor:
        """k* = argmax_k [log pi_k + log N(m | mu_k, S_k)], S_k = Sigma_k + diag v_k, without gradient (n,)."""
        with torch.no_grad():
            return (log_gaussian_prob(mean.detach(), self.means, self.kl_precisions_cholesky, "full")
                    + self.weights.log()).argmax(1)

    def kl_to_assigned(self, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Batch mean of KL(q(z|x) || N(mu_k*, S_k*)), S_k = Sigma_k + diag v_k, with k* = argmax_k
        pi_k N(m(x) | mu_k, S_k) (no gradient): the component is chosen by the same Gaussians the
        KL is taken to. (Choosing it by Sigma_k alone lets dimensions the VAE leaves unused, where
        Sigma_k is tiny, decide k*; the within-cluster spread then contracts epoch after epoch.)"""
        assigned = self.assigned(mean)
        return kl_diag_to_full(mean, logvar, self.means[assigned], self.kl_precisions_cholesky[assigned]).mean()
