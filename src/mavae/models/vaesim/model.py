"""VAESim (docs/method.md section 9): decoder conditioned on [z, c], c = softmax(sim(z, Q) / tau), with
prototypes Q moved by an exponential moving average of their members, not by gradient."""
from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from ...nets import build_decoder
from ..vae import VAE, kl_standard_normal

SIMILARITIES = ("cosine", "dot")
ANNEAL_START, ANNEAL_END = 0.25, 0.5  # fractions of training between which tau falls linearly


def temperature_schedule(epoch: int, epochs: int, tau_start: float = 1.0, tau_end: float = 0.01) -> float:
    """tau at the start of epoch ``epoch`` (0-based) of ``epochs``, with progress p = epoch / epochs:
    tau_start for p <= 1/4, tau_end for p >= 1/2, linear in p in between (per-epoch steps)."""
    if epochs < 1 or not 0 <= epoch < epochs:
        raise ValueError(f"epoch must be in [0, epochs) with epochs >= 1, got epoch={epoch}, epochs={epochs}")
    p = epoch / epochs
    fraction = min(max((p - ANNEAL_START) / (ANNEAL_END - ANNEAL_START), 0.0), 1.0)
    return tau_start + (tau_end - tau_start) * fraction


class VAESim(VAE):
    """L = recon(g([z, c(z)]), x) + beta * KL(q(z|x) || N(0, I)), c(z) = softmax(sim(z, Q_k) / tau).

    - sim: cosine similarity (the paper; default) or the dot product z . Q_k (``similarity="dot"``,
      as in the authors' released code).
    - Q (K, d) is a buffer, never updated by gradient. It is initialised from the encoder means of
      K distinct random images of the first training batch; after each training batch,
      Q_k <- eta * mean{m(x_i) : argmax_l sim(m(x_i), Q_l) = k} + (1 - eta) * Q_k for every k with
      members (eta = 0.95); components without members keep their Q_k. Members and means are taken
      on the encoder means m(x), where ``posterior`` is evaluated (the released code uses the
      sampled z). Under torch.distributed the per-component sums and counts are all-reduced, so
      every rank applies the same update.
    - tau follows ``temperature_schedule`` per epoch (set by ``start_epoch`` and kept as a
      buffer, so a resumed run is identical): tau_start for the first quarter of training, then
      linearly to tau_end at half, then tau_end.
    - The decoder's conditioning c is computed from the reparameterised z (gradients flow into
      z through c, not into Q); ``decode(z)`` computes c from z with the current tau.
    - After the last epoch (``refit``) the prototypes are settled on the final encoder: up to
      ``settle_passes`` times, Q_k <- mean{m(x_i) : argmax_l sim(m(x_i), Q_l) = k} over the whole
      training set, until the assignments stop changing. This is the EMA update for a batch that
      holds the whole training set (eta drops out at the fixed point); it removes the noise of
      Q_k being, with eta = 0.95, little more than the mean of the last batch's few members
      (on MNIST, K = 40 and batch 128, about three images). settle_passes=0 keeps the EMA
      prototypes as trained, as in the paper.
    - posterior(z) = softmax(sim(z, Q) / tau_end): soft, but nearly one-hot with the cosine
      similarity at tau_end = 0.01. prototypes() = Q (not real samples, so indices are None).
    - The paper's optional prototype-orthogonality term is left out: Q receives no gradient, so
      the term would be a constant.
    """

    refits_at_end = True

    def __init__(self, image_shape, latent_dim: int = 16, n_components: int = 5, *, width: int = 32,
                 beta: float = 1.0, recon: str = "mse", similarity: str = "cosine", eta: float = 0.95,
                 tau_start: float = 1.0, tau_end: float = 0.01, settle_passes: int = 100, seed: int = 0,
                 pose: str = "none"):
        super().__init__(image_shape, latent_dim=latent_dim, width=width, beta=beta, recon=recon, pose=pose)
        if n_components < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}")
        if similarity not in SIMILARITIES:
            raise ValueError(f"unknown similarity {similarity!r}; expected one of {SIMILARITIES}")
        if not 0 < eta <= 1:
            raise ValueError(f"eta must be in (0, 1], got {eta}")
        if not (tau_start > 0 and tau_end > 0):
            raise ValueError(f"tau_start and tau_end must be > 0, got {tau_start}, {tau_end}")
        if settle_passes < 0:
            raise ValueError(f"settle_passes must be >= 0, got {settle_passes}")
        self.n_components, self.similarity, self.eta, self.settle_passes = n_components, similarity, eta, settle_passes
        self.tau_start, self.tau_end = tau_start, tau_end
        self.seed = seed  # the common model argument; the first-batch draw uses the trainer's seeded RNG
        self.decoder = build_decoder(self.image_shape, latent_dim + n_components, width)
        self.register_buffer("centers", torch.zeros(n_components, latent_dim))
        self.register_buffer("temperature", torch.tensor(float(tau_start)))
        self.register_buffer("initialised", torch.tensor(False))

    def start_epoch(self, epoch: int, epochs: int) -> None:
        self.temperature.fill_(temperature_schedule(epoch, epochs, self.tau_start, self.tau_end))

    def similarities(self, z: torch.Tensor) -> torch.Tensor:
        """(n, K): cos(z_i, Q_k) = z_i . Q_k / (||z_i|| ||Q_k||), or z_i . Q_k for similarity="dot".
        Uses a copy of Q, so the EMA may update Q in place before the backward pass."""
        q = self.centers.clone()
        if self.similarity == "cosine":
            return F.normalize(z, dim=1) @ F.normalize(q, dim=1).T
        return z @ q.T

    def condition(self, z: torch.Tensor, temperature: float | torch.Tensor) -> torch.Tensor:
        """c = softmax(sim(z, Q) / tau), (n, K)."""
        return torch.softmax(self.similarities(z) / temperature, dim=1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """x_hat = g([z, c(z)]) with the current temperature."""
        return self.decoder(torch.cat([z, self.condition(z, self.temperature)], dim=1))

    @torch.no_grad()
    def initialise_centers(self, x: torch.Tensor) -> None:
        """Q = encoder means of K distinct random images of x (rank 0's choice under torch.distributed)."""
        if len(x) < self.n_components:
            raise ValueError(f"VAESim initialises its {self.n_components} prototypes from the first batch, which "
                             f"has only {len(x)} images; use a batch_size >= n_components")
        pick = torch.randperm(len(x), device=x.device)[: self.n_components]
        self.centers.copy_(self.encode(x[pick])[0])
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(self.centers, 0)
        self.initialised.fill_(True)

    @torch.no_grad()
    def update_centers(self, z: torch.Tensor) -> torch.Tensor:
        """Q_k <- eta * mean(z_i : argmax_l sim(z_i, Q_l) = k) + (1 - eta) * Q_k for k with members;
        returns the assignments (n,)."""
        assigned = self.similarities(z).argmax(1)
        sums = torch.zeros_like(self.centers).index_add_(0, assigned, z.to(self.centers.dtype))
        counts = torch.bincount(assigned, minlength=self.n_components).to(self.centers.dtype)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(sums)
            dist.all_reduce(counts)
        has = counts > 0
        means = sums[has] / counts[has, None]
        self.centers[has] = self.eta * means + (1 - self.eta) * self.centers[has]
        return assigned

    @torch.no_grad()
    def refit(self, encodings: torch.Tensor, logvars: torch.Tensor | None = None) -> None:
        """Settle Q on the training set's encoder means (see the class docstring)."""
        z = encodings.detach().to(self.centers.dtype)
        assigned = None
        for _ in range(self.settle_passes):
            new = self.similarities(z).argmax(1)
            if assigned is not None and torch.equal(new, assigned):
                break
            assigned = new
            sums = torch.zeros_like(self.centers).index_add_(0, assigned, z)
            counts = torch.bincount(assigned, minlength=self.n_components).to(z.dtype)
            has = counts > 0
            self.centers[has] = sums[has] / counts[has, None]

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if not bool(self.initialised):
            self.initialise_centers(x)
        mean, logvar, terms = self.reconstruct(x)  # decodes g([z, c(z)]) of a reparameterised z
        kl = kl_standard_normal(mean, logvar)
        if self.training:
            self.update_centers(mean.detach())
        return {"loss": terms["recon"] + self.beta * kl + self.pose_loss(terms), "kl": kl,
                "temperature": self.temperature.detach().clone(), **terms}

    def posterior(self, z: torch.Tensor) -> torch.Tensor:
        """softmax(sim(z, Q) / tau_end), (n, K)."""
        if not bool(self.initialised):
            raise RuntimeError("the VAESim prototypes are initialised by the first training batch; "
                               "train the model first")
        return self.condition(z, self.tau_end)

    def prototypes(self) -> tuple[torch.Tensor, np.ndarray | None]:
        if not bool(self.initialised):
            raise RuntimeError("the VAESim prototypes are initialised by the first training batch; "
                               "train the model first")
        return self.centers.clone(), None
