"""Mixture of VAE charts (Alberti, Hertrich, Santacesaria & Sciutto, JMLR 2024; docs/method.md section 8).

K VAEs, each one a chart of the data manifold: chart k has an encoder E_k (x -> q_k(z|x)) and a
decoder g_k (z -> x) over its own d-dimensional latent space. A point belongs to the charts by
the chart posteriors

    beta_ik = softmax_k(-negELBO_k(x_i) / beta + log alpha_k),

and the loss is sum_k beta_ik * negELBO_k(x_i), averaged over the batch (beta_ik without
gradient), where negELBO_k = recon + beta * KL as in the other models. Dividing by beta puts
negELBO in nats: recon + beta * KL with the mse loss is beta times the negative ELBO of a
Gaussian likelihood of variance beta / 2, so beta sets how sharply the charts compete (for
2-D toy data with beta = 1e-3 a squared error of 1e-3 is one nat). The chart weights alpha_k
are the mean posteriors of the previous epoch.

Training phases, by epoch (``start_epoch``):
- seeding (epochs < ``warmup_epochs``): well-spread centres in data space (the best of 10
  k-means++ seedings with Lloyd refinement on the first batch, then mini-batch k-means updates),
  and each chart is trained on the points nearest to its centre (beta = one-hot of the nearest
  centre);
- mixture: the loss above;
- overlap (the last ``overlap_epochs`` epochs): the charts are enlarged so that they overlap:
  the training weights are the posteriors with each chart's latent prior widened to
  N(0, overlap_scale^2 I), which favours a chart at the border of its domain
  (large |z|) relative to the plain posteriors. negELBO itself keeps the N(0, I) prior.

The one-model interface for a multi-chart model (a code names its chart):
- ``encode(x)`` -> (mean, logvar) of dimension d + K: the latent of the most probable chart
  k* = argmax_k beta_ik in the first d entries, and the one-hot indicator of k* in the last K
  (with log-variance -30, so reparameterised samples keep their chart);
- ``decode(z)`` routes each code to the chart of its largest indicator entry and decodes the
  first d entries there;
- ``posterior(z)`` = the indicator of the code's chart; ``cluster_posterior(x)`` = beta (the
  negELBO at the encoder mean z = m_k(x), no sampling) -- the chart is the sub-population;
- ``prototypes()`` = each chart's latent origin (the mean of its prior), indices None.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from torch import nn

from ...config import FitConfig
from ..base import Model
from ..vae import VAE, reconstruction_per_sample

INDICATOR_LOGVAR = -30.0  # sd 3e-7: reparameterised samples of the chart indicator stay on their chart
PRUNE_WEIGHT = 1e-3  # a chart whose training weight for a sample is below this is left out of its gradient


def kl_to_isotropic(mean: torch.Tensor, logvar: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """KL(N(m, diag s^2) || N(0, c^2 I)) per sample (n,) = 1/2 sum_j [(s_j^2 + m_j^2) / c^2 - 1 - ln s_j^2 + 2 ln c]."""
    return 0.5 * ((logvar.exp() + mean.square()) / scale**2 - 1.0 - logvar + 2.0 * np.log(scale)).sum(1)


class Charts(Model):
    """K VAE charts with chart posteriors beta_ik; see the module docstring for the loss, the
    phases and how encode/decode/prototypes name a chart.

    n_components: K charts; latent_dim: d per chart; each chart is a ``VAE`` with the same
    networks as the single-VAE models. beta weights the KL inside negELBO_k = recon + beta * KL.
    """

    has_unused_parameters = True  # a chart with no weight > 1e-3 in a batch gets no gradient

    def __init__(self, image_shape, latent_dim: int = 16, n_components: int = 5, *, width: int = 32,
                 beta: float = 1.0, recon: str = "mse", warmup_epochs: int = FitConfig.warmup_epochs,
                 overlap_epochs: int = 2,
                 overlap_scale: float = 1.5, seed: int = 0):
        super().__init__()
        if n_components < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}")
        if warmup_epochs < 0 or overlap_epochs < 0:
            raise ValueError(f"warmup_epochs and overlap_epochs must be >= 0, got {warmup_epochs}, {overlap_epochs}")
        if not beta > 0:
            raise ValueError(f"beta must be > 0 for a mixture of charts (it scales the chart posteriors), got {beta}")
        if not overlap_scale >= 1.0:
            raise ValueError(f"overlap_scale must be >= 1, got {overlap_scale}")
        self.image_shape = tuple(image_shape)
        self.latent_dim, self.n_components, self.beta, self.recon = latent_dim, n_components, beta, recon
        self.warmup_epochs, self.overlap_epochs, self.overlap_scale = warmup_epochs, overlap_epochs, overlap_scale
        self.seed = seed
        self.charts = nn.ModuleList(VAE(image_shape, latent_dim=latent_dim, width=width, beta=beta, recon=recon)
                                    for _ in range(n_components))
        n_features = int(np.prod(self.image_shape))
        self.register_buffer("log_alpha", torch.full((n_components,), -float(np.log(n_components))))
        self.register_buffer("centres", torch.zeros(n_components, n_features))
        self.register_buffer("centre_counts", torch.zeros(n_components))
        self.register_buffer("seeded", torch.tensor(False))
        self.register_buffer("weight_sums", torch.zeros(n_components))  # sum_i beta_ik over this epoch
        self.phase = "mixture"

    # ---- schedule ------------------------------------------------------------------------------
    def start_epoch(self, epoch: int, epochs: int) -> None:
        """alpha_k <- mean training weight of chart k over the previous epoch; then pick the phase:
        seeding for epoch < warmup_epochs, overlap for the last overlap_epochs, mixture between."""
        total = self.weight_sums.sum()
        if total > 0:
            self.log_alpha.copy_((self.weight_sums / total).clamp_min(1e-12).log())
        self.weight_sums.zero_()
        if epoch < self.warmup_epochs:
            self.phase = "seeding"
        elif epoch >= epochs - self.overlap_epochs:
            self.phase = "overlap"
        else:
            self.phase = "mixture"

    # ---- the loss ------------------------------------------------------------------------------
    def terms_of_chart(self, chart: VAE, x: torch.Tensor, sample: bool = True) -> dict[str, torch.Tensor]:
        """One chart's recon, kl and kl_wide per sample (n,): KL to N(0, I) and to N(0, overlap_scale^2 I),
        at z ~ q_k(z|x) (sample) or at the encoder mean z = m_k(x); and the encoder's mean and logvar (n, d)."""
        mean, logvar = chart.encode(x)
        z = self.reparameterize(mean, logvar) if sample else mean
        return dict(recon=reconstruction_per_sample(chart.decode(z), x, self.recon), kl=kl_to_isotropic(mean, logvar),
                    kl_wide=kl_to_isotropic(mean, logvar, self.overlap_scale), mean=mean, logvar=logvar)

    def chart_terms(self, x: torch.Tensor, sample: bool = True) -> dict[str, torch.Tensor]:
        """``terms_of_chart`` of every chart, stacked on dimension 1: recon, kl and kl_wide (n, K), mean and
        logvar (n, K, d)."""
        per_chart = [self.terms_of_chart(chart, x, sample) for chart in self.charts]
        return {name: torch.stack([terms[name] for terms in per_chart], 1) for name in per_chart[0]}

    def chart_posteriors(self, neg_elbo: torch.Tensor) -> torch.Tensor:
        """beta_ik = softmax_k(-negELBO_k(x_i) / beta + log alpha_k), (n, K)."""
        return torch.softmax(-neg_elbo / self.beta + self.log_alpha, dim=1)

    def training_weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(w, beta), each (n, K), without gradient: w = the nearest-centre one-hot (seeding; beta = w
        then), beta (mixture) or the widened-prior posteriors (overlap)."""
        with torch.no_grad():
            if self.phase == "seeding":
                weights = F.one_hot(self.nearest_centre(x, update=self.training), self.n_components).to(x.dtype)
                return weights, weights
            terms = self.chart_terms(x)
            beta = self.chart_posteriors(terms["recon"] + self.beta * terms["kl"])
            if self.phase == "overlap":
                return self.chart_posteriors(terms["recon"] + self.beta * terms["kl_wide"]), beta
            return beta, beta

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """sum_k w_ik negELBO_k(x_i), batch mean, with w from ``training_weights``.

        The weights come from a pass without gradient; negELBO_k then gets its gradient only on the rows
        where w_ik > PRUNE_WEIGHT (1e-3: a left-out term is < 0.1 % of the sample's loss), so with
        sharp posteriors a step costs about one chart per sample, plus K forward passes for the weights
        (none while seeding). Charts without rows in a batch get no gradient, so under
        DistributedDataParallel this model needs find_unused_parameters=True. In training mode this also
        adds sum_i beta_i to the epoch's sums for alpha and, while seeding, moves the centres.
        """
        weights, beta = self.training_weights(x)
        if self.training:
            self.weight_sums += beta.sum(0)
        recon, kl = x.new_zeros(()), x.new_zeros(())
        for k, chart in enumerate(self.charts):
            rows = (weights[:, k] > PRUNE_WEIGHT).nonzero().flatten()
            if len(rows):
                terms = self.terms_of_chart(chart, x[rows])
                recon = recon + (weights[rows, k] * terms["recon"]).sum()
                kl = kl + (weights[rows, k] * terms["kl"]).sum()
        recon, kl = recon / len(x), kl / len(x)
        return {"loss": recon + self.beta * kl, "recon": recon, "kl": kl}

    @torch.no_grad()
    def nearest_centre(self, x: torch.Tensor, update: bool = False) -> torch.Tensor:
        """argmin_k ||x_i - c_k||^2 (n,). The first call seeds the centres on x (``seed_centres``); with update, a
        mini-batch k-means step follows: v_k += n_k, c_k += (sum_{i in k} x_i - n_k c_k) / v_k."""
        flat = x.flatten(1).to(self.centres.dtype)
        if not bool(self.seeded):
            self.centres.copy_(seed_centres(flat, self.n_components, self.seed))
            self.seeded.fill_(True)
        nearest = torch.cdist(flat, self.centres).argmin(1)
        if update:
            counts = torch.bincount(nearest, minlength=self.n_components).to(flat.dtype)
            sums = torch.zeros_like(self.centres).index_add_(0, nearest, flat)
            self.centre_counts += counts
            moved = counts > 0
            self.centres[moved] += (sums[moved] - counts[moved, None] * self.centres[moved]) \
                / self.centre_counts[moved, None]
        return nearest

    # ---- the model interface -------------------------------------------------------------------
    def encode_and_cluster(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mean, logvar, beta) from one pass of every chart at its encoder mean (deterministic): beta (n, K)
        as ``cluster_posterior``; mean and logvar (n, d + K) as ``encode``."""
        terms = self.chart_terms(x, sample=False)
        beta = self.chart_posteriors(terms["recon"] + self.beta * terms["kl"])
        best = beta.argmax(1)
        rows = torch.arange(len(x), device=x.device)
        indicator = F.one_hot(best, self.n_components).to(beta.dtype)
        return (torch.cat([terms["mean"][rows, best], indicator], 1),
                torch.cat([terms["logvar"][rows, best], torch.full_like(indicator, INDICATOR_LOGVAR)], 1), beta)

    @torch.no_grad()
    def cluster_posterior(self, x: torch.Tensor) -> torch.Tensor:
        """beta (n, K) with negELBO_k evaluated at the encoder mean of each chart (deterministic)."""
        return self.encode_and_cluster(x)[2]

    def chart_models(self) -> list:
        return list(self.charts)

    def stratify(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, _, beta = self.encode_and_cluster(x)
        return mean, beta

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, logvar), each (n, d + K): chart k* = argmax_k beta_ik's (m, log s^2) and its one-hot
        indicator (log-variance -30)."""
        return self.encode_and_cluster(x)[:2]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """g_k(z[:d]) with k = argmax of the indicator z[d:], per row."""
        if z.shape[1] != self.latent_dim + self.n_components:
            raise ValueError(f"codes must have latent_dim + n_components = {self.latent_dim + self.n_components} "
                             f"columns (chart latent, chart indicator), got {z.shape[1]}")
        chart_of = z[:, self.latent_dim:].argmax(1)
        out = z.new_empty((len(z), *self.image_shape))
        for k, chart in enumerate(self.charts):
            rows = (chart_of == k).nonzero().flatten()
            if len(rows):
                out[rows] = chart.decode(z[rows, :self.latent_dim])
        return out

    def posterior(self, z: torch.Tensor) -> torch.Tensor:
        """The chart indicator of each code (n, K), normalised."""
        indicator = z[:, self.latent_dim:].clamp_min(0)
        return F.one_hot(indicator.argmax(1), self.n_components).to(z.dtype) if indicator.sum() == 0 \
            else indicator / indicator.sum(1, keepdim=True).clamp_min(1e-12)

    def prototypes(self) -> tuple[torch.Tensor, np.ndarray | None]:
        """Chart k's latent origin (its prior mean) with indicator k: (K, d + K); not training samples."""
        zeros = self.log_alpha.new_zeros(self.n_components, self.latent_dim)
        return torch.cat([zeros, torch.eye(self.n_components, device=zeros.device)], 1), None

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """n draws of the mixture: chart k ~ alpha, z ~ N(0, I), x = g_k(z); returns (x, chart)."""
        device = self.log_alpha.device
        chart = torch.multinomial(self.log_alpha.exp(), n, replacement=True, generator=generator)
        z = torch.randn(n, self.latent_dim, generator=generator, device=device)
        return self.decode(torch.cat([z, F.one_hot(chart, self.n_components).to(z.dtype)], 1)), chart


def seed_centres(points: torch.Tensor, k: int, seed: int, n_init: int = 10) -> torch.Tensor:
    """Well-spread centres of points (n, D): scikit-learn's ``KMeans(k, n_init=n_init, random_state=seed)``,
    i.e. the best, by inertia sum_i min_k ||x_i - c_k||^2, of n_init k-means++ seedings each refined by
    Lloyd iterations; deterministic for a given seed. Restarts avoid the local optima of a single seeding
    (e.g. three centres on one of two circles and one on the other). Returns (k, D) in points' dtype and
    device."""
    if len(points) < k:
        raise ValueError(f"seeding {k} charts needs a first batch of at least {k} points, got {len(points)}; "
                         "use a larger batch_size")
    kmeans = KMeans(k, n_init=n_init, random_state=seed, algorithm="lloyd")
    kmeans.fit(points.detach().double().cpu().numpy())
    return torch.as_tensor(kmeans.cluster_centers_, dtype=points.dtype, device=points.device)
