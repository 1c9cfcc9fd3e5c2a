"""MA-VAE: a VAE whose prior is a manifold-anchored Gaussian mixture (docs/method.md section 3)."""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from ...config import FitConfig
from ...embedding import MANIFOLDS, manifold_coordinates
from ...geometry import dirichlet_energy
from ...mixture import ManifoldAnchoredGMM
from ..prior import MixturePrior, mixture_in_latents
from ..vae import VAE, kl_standard_normal


class MAVAE(VAE):
    """L = recon + beta * KL(q(z|x) || N(mu_k*, Sigma_k*)) + lambda * E(Z_batch).

    The first ``warmup_epochs`` train a plain VAE (KL to N(0, I)). Then MA-EM is fitted on the
    encoder means of the training set (at most ``refit_max_points`` of them, one seeded subsample
    for every refit; the first fit keeps the best of ``n_init`` initialisations
    by log-likelihood, label-free, each one ordinary EM then medoid-anchored EM: see
    ``ManifoldAnchoredGMM(init_params="em")``) and refitted every ``refit_every`` epochs, warm-started
    from the previous parameters with the medoids' new encodings as means. After the last epoch the
    partition is kept and only its Gaussians moved to the medoids' final encodings (``refit_final``),
    so the posteriors and prototypes belong to the final encoder. At each later refit
    ``refit_restarts`` fresh starts compete with the warm one; the fit of highest log-likelihood is
    kept (by more than tol), its components matched to the previous ones by the overlap of the two
    partitions, so they keep their identity. E is the Dirichlet
    energy of the batch's encoder means on their heat-kernel graph.

    ``manifold="umap"``: MA-EM runs on the UMAP coordinates u_i of the encoder means
    (``embedding.manifold_coordinates``), where the pieces of the data manifold are compact and
    apart, and its responsibilities gamma_ik and medoids m_k give the prior in z:
    mu_k = z_{m_k} (still a real training image), Sigma_k = sum_i gamma_ik (z_i - mu_k)(z_i -
    mu_k)^T / N_k, pi_k = N_k / n. A refit after the first starts the layout from the previous
    layout (``warm_layout_epochs`` epochs instead of a spectral start and umap-learn's 200-500) and
    MA-EM from the previous medoids' new coordinates, so components keep their identity.
    """

    refits_at_end = True
    refit_restarts = 5  # fresh MA-EM starts that compete with the warm start at each later refit
    warm_layout_epochs = 100  # UMAP epochs of a layout that starts from the previous refit's layout

    def __init__(self, image_shape, latent_dim: int = 16, n_components: int = 5, *, width: int = 32,
                 beta: float = 1.0, dirichlet_weight: float = FitConfig.dirichlet_weight, recon: str = "mse",
                 warmup_epochs: int = FitConfig.warmup_epochs, refit_every: int = FitConfig.refit_every,
                 refit_max_points: int = FitConfig.refit_max_points, n_init: int = 30, bandwidth="median",
                 manifold: str = "none", seed: int = 0, pose: str = "none"):
        super().__init__(image_shape, latent_dim=latent_dim, width=width, beta=beta, recon=recon, pose=pose)
        if n_components < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}")
        if warmup_epochs < 0 or refit_every < 1 or refit_max_points < n_components:
            raise ValueError("need warmup_epochs >= 0, refit_every >= 1 and refit_max_points >= n_components, got "
                             f"{warmup_epochs}, {refit_every}, {refit_max_points}")
        self.n_components, self.dirichlet_weight = n_components, dirichlet_weight
        self.warmup_epochs, self.refit_every, self.refit_max_points = warmup_epochs, refit_every, refit_max_points
        if manifold not in MANIFOLDS:
            raise ValueError(f"manifold must be one of {MANIFOLDS}, got {manifold!r}")
        self.n_init, self.bandwidth, self.manifold, self.seed = n_init, bandwidth, manifold, seed
        self.prior = MixturePrior(n_components, latent_dim)
        self.register_buffer("n_refits", torch.tensor(0))
        self.register_buffer("layout", torch.zeros(0, 0, dtype=torch.float64))  # the last refit's u, until the end

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "layout"  # its shape is the refit subsample's; files without it hold no layout
        shape = state_dict[key].shape if key in state_dict else (0, 0)
        self.layout = self.layout.new_zeros(shape)
        state_dict.setdefault(key, self.layout)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def needs_refit(self, epoch: int) -> bool:
        return epoch >= self.warmup_epochs and (epoch - self.warmup_epochs) % self.refit_every == 0

    def refit(self, encodings: torch.Tensor, logvars: torch.Tensor | None = None) -> None:
        """MA-EM on the encoder means m(x); medoid indices are indices into the training set.

        Posteriors are MA-EM's own (Sigma_k as fitted). The KL target must describe the aggregate
        posterior, not only the spread of the means: it is N(mu_k, Sigma_k + sum_i gamma_ik diag
        s_i^2 / N_k), adding the members' mean posterior variance. Without it, dimensions the
        warm-up VAE left near its N(0, I) prior (means ~ 0, variances ~ 1) get a near-zero Sigma_k
        and the KL tr(Sigma_k^-1 diag s^2) explodes.
        """
        z = encodings.detach().double().cpu()
        n = len(z)
        keep = np.arange(n)
        previous = self.prior.medoid_indices.cpu().numpy() if bool(self.prior.fitted) else None
        if n > self.refit_max_points:  # one seeded subsample for every refit, so a layout can start from the last
            keep = np.sort(np.random.default_rng([self.seed, 0]).choice(n, self.refit_max_points, replace=False))
            if previous is not None:  # a no-op once the medoids come from this subsample
                keep = np.union1d(keep, previous)
        rng = np.random.default_rng([self.seed, int(self.n_refits)])
        x = z[keep].numpy()
        start = self.layout.cpu().numpy() if len(self.layout) == len(keep) else None  # only a UMAP refit keeps one
        u = manifold_coordinates(x, self.manifold, seed=int(rng.integers(2**31 - 1)), init=start,
                                 n_epochs=None if start is None else self.warm_layout_epochs)
        if self.manifold != "none":
            self.layout = torch.as_tensor(u, dtype=torch.float64, device=self.layout.device)
        warm = {}
        if previous is not None:
            where = np.searchsorted(keep, previous)  # the previous medoids' rows in x (and u)
            warm = dict(means_init=u[where])
            if self.manifold == "none":  # the same space as the previous prior: keep its shape too
                warm.update(weights_init=self.prior.weights.double().cpu().numpy()
                            / float(self.prior.weights.double().sum()),
                            precisions_init=torch.linalg.inv(self.prior.covariances.double().cpu()).numpy())
        gmm = ManifoldAnchoredGMM(self.n_components, bandwidth=self.bandwidth, init_params="em",
                                  n_init=1 if warm else self.n_init,
                                  random_state=int(rng.integers(2**31 - 1)), **warm).fit(u)
        order, resp = np.arange(self.n_components), gmm.predict_proba(u)
        if warm:  # fresh starts compete with the warm one: a refit is not held to the first refit's optimum
            fresh = ManifoldAnchoredGMM(self.n_components, bandwidth=self.bandwidth, init_params="em",
                                        n_init=self.refit_restarts, random_state=int(rng.integers(2**31 - 1))).fit(u)
            if fresh.lower_bound_ > gmm.lower_bound_ + gmm.tol:
                fresh_resp = fresh.predict_proba(u)
                order = matching_components(resp.argmax(1), fresh_resp.argmax(1), self.n_components)
                gmm, resp = fresh, fresh_resp[:, order]
        medoids = gmm.medoid_indices_[order]
        means, covariances, weights = gmm.means_[order], gmm.covariances_[order], gmm.weights_[order]
        if self.manifold != "none":  # the prior in z from the responsibilities found in u
            means = x[medoids]
            covariances, weights = mixture_in_latents(x, resp, means, gmm.reg_covar)
        extra_variance = None if logvars is None else member_variance(resp, logvars[keep])
        self.prior.set(means, covariances, weights, keep[medoids], extra_variance)
        self.n_refits += 1

    def refit_final(self, encodings: torch.Tensor, logvars: torch.Tensor | None = None) -> None:
        """After the last epoch each Gaussian is moved to its medoid's final encoding, mu_k = z_{m_k},
        with Sigma_k, pi_k and the KL widening v_k kept, so the posteriors and prototypes belong to
        the final encoder and the partition it was trained toward is kept.

        A full refit here would redraw the partition on a new manifold layout with no epoch left to
        train the encoder toward it; re-estimating Sigma_k and pi_k from the moved mixture's
        posterior changed part of it (docs/method.md section 3, the final step).
        """
        if not bool(self.prior.fitted):  # trained no further than warm-up: the first fit
            self.refit(encodings, logvars)
        else:
            medoids = self.prior.medoid_indices.to(encodings.device)
            self.prior.means.copy_(encodings.detach()[medoids].to(self.prior.means))
        self.layout = self.layout.new_zeros(0, 0)  # no refit follows: the saved model does not carry it

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mean, logvar, terms = self.reconstruct(x)  # with a pose head, mean/logvar are the content latent's
        if not bool(self.prior.fitted):  # warm-up: a plain VAE
            kl = kl_standard_normal(mean, logvar)
            return {"loss": terms["recon"] + self.beta * kl + self.pose_loss(terms), "kl": kl,
                    "dirichlet": torch.zeros(()), **terms}
        kl = self.prior.kl_to_assigned(mean, logvar)
        dirichlet = dirichlet_energy(mean)
        loss = terms["recon"] + self.beta * kl + self.dirichlet_weight * dirichlet + self.pose_loss(terms)
        return {"loss": loss, "kl": kl, "dirichlet": dirichlet, **terms}

    def posterior(self, z: torch.Tensor) -> torch.Tensor:
        if not bool(self.prior.fitted):
            raise RuntimeError("the MA-VAE prior is not fitted yet (still in warm-up)")
        return self.prior.posterior(z)

    def prototypes(self) -> tuple[torch.Tensor, np.ndarray | None]:
        """The prior's means: encoder means of real training images, whose indices are returned."""
        if not bool(self.prior.fitted):
            raise RuntimeError("the MA-VAE prior is not fitted yet (still in warm-up)")
        return self.prior.means.clone(), self.prior.medoid_indices.cpu().numpy()


def member_variance(resp: np.ndarray, logvars: torch.Tensor) -> np.ndarray:
    """v_k = sum_i gamma_ik s_i^2 / N_k (K, d): the members' mean posterior variance."""
    var = logvars.detach().double().cpu().exp().numpy()
    return (resp.T @ var) / (resp.sum(0)[:, None] + 1e-12)


def matching_components(previous: np.ndarray, new: np.ndarray, k: int) -> np.ndarray:
    """order (k,) such that new component order[j] takes the place of previous component j: the
    assignment of maximum overlap between the two hard partitions of the same points (Hungarian)."""
    overlap = np.zeros((k, k))
    np.add.at(overlap, (previous, new), 1)
    return linear_sum_assignment(overlap, maximize=True)[1]
