"""GMVAE in Rui Shu's formulation ("Gaussian mixture VAE", 2016) with a Gumbel-softmax relaxation of the
categorical (as in J. Arias' PyTorch GMVAE): docs/method.md section 9.

Generative model: y ~ Cat(1/K), z | y ~ N(mu_y, diag sigma_y^2) (learned), x | z ~ p(x|z) (the decoder).
Inference: q(y|x) = Cat(softmax(l(x))), q(z|x, y) = N(m(x, y), diag s^2(x, y)).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...nets import build_decoder, build_encoder
from ..base import Model
from ..vade import log_normal_diag
from ..vae import LOGVAR_RANGE, RECON_KINDS, reconstruction_loss


class GMVAE(Model):
    """L = recon(g(z), x) + beta * [KL(q(z|x, y) || p(z|y)) + KL(q(y|x) || Cat(1/K))],
    y = GumbelSoftmax(l(x), tau) (a relaxed one-hot sample), z ~ q(z|x, y), and the prior of a relaxed y is
    p(z|y) = N(sum_k y_k mu_k, diag sum_k y_k sigma_k^2) (a linear layer of y, as in Shu's network p(z|y)).
    KL(q(y|x) || Cat(1/K)) = sum_k q_k ln q_k + ln K; the Gaussian KL is in closed form.

    Temperature: tau = tau_start * (tau_end / tau_start)^(epoch / (epochs - 1)), set by ``start_epoch``:
    exponential annealing from 1.0 to 0.5 over the run (Arias' schedule, 1.0 decaying to a floor of 0.5,
    stretched to the epoch budget).

    Networks: a trunk h(x) = LeakyReLU(build_encoder(x)) of 8 * width features; l(x) = linear(h);
    (m, ln s^2)(x, y) = MLP([h, y]) with one hidden layer of 8 * width; the decoder as the VAE's.
    Outputs: ``cluster_posterior(x)`` = q(y|x); ``encode(x)`` = q(z|x, y*) with y* = onehot(argmax q(y|x))
    (the latent the decoder sees for the most likely cluster); ``posterior(z)`` = p(y|z) under the learned
    prior with uniform p(y); ``prototypes()`` = the learned means mu_y (no indices: not real samples).
    The prior's means start at N(0, I) draws (torch's global RNG), its log-variances at 0; they get no
    weight decay.
    """

    def __init__(self, image_shape, latent_dim: int = 10, n_components: int = 10, *, width: int = 32,
                 beta: float = 1.0, recon: str = "mse", tau_start: float = 1.0, tau_end: float = 0.5, seed: int = 0):
        super().__init__()
        if recon not in RECON_KINDS:
            raise ValueError(f"unknown reconstruction loss {recon!r}; expected one of {RECON_KINDS}")
        if n_components < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}")
        if not 0 < tau_end <= tau_start:
            raise ValueError(f"need 0 < tau_end <= tau_start, got tau_start={tau_start}, tau_end={tau_end}")
        self.image_shape = tuple(image_shape)
        self.latent_dim, self.n_components, self.beta, self.recon = latent_dim, n_components, beta, recon
        self.tau_start, self.tau_end, self.seed = tau_start, tau_end, seed
        hidden = 8 * width
        self.trunk = nn.Sequential(build_encoder(self.image_shape, hidden, width), nn.LeakyReLU(0.2))
        self.logits_head = nn.Linear(hidden, n_components)
        self.latent_head = nn.Sequential(nn.Linear(hidden + n_components, hidden), nn.LeakyReLU(0.2),
                                         nn.Linear(hidden, 2 * latent_dim))
        self.decoder = build_decoder(self.image_shape, latent_dim, width)
        self.prior_means = nn.Parameter(torch.randn(n_components, latent_dim))
        self.prior_logvars = nn.Parameter(torch.zeros(n_components, latent_dim))
        self.register_buffer("temperature", torch.tensor(float(tau_start)))

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """tau = tau_start * (tau_end / tau_start)^(epoch / (epochs - 1))."""
        fraction = epoch / (epochs - 1) if epochs > 1 else 0.0
        self.temperature.fill_(self.tau_start * (self.tau_end / self.tau_start) ** fraction)

    # -- inference -------------------------------------------------------------------------------
    def _latent(self, h: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(m, ln s^2) of q(z|x, y) from trunk features h and a (relaxed) one-hot y; ln s^2 clamped to [-10, 10]."""
        mean, logvar = self.latent_head(torch.cat([h, y], 1)).chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def cluster_posterior(self, x: torch.Tensor) -> torch.Tensor:
        """q(y|x) = softmax(l(x)), (n, K)."""
        return torch.softmax(self.logits_head(self.trunk(x)), 1)

    def stratify(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean of q(z|x, y*), q(y|x)) from one pass of the trunk."""
        h = self.trunk(x)
        q_y = torch.softmax(self.logits_head(h), 1)
        return self._latent(h, F.one_hot(q_y.argmax(1), self.n_components).to(h.dtype))[0], q_y

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, logvar) of q(z|x, y*), y* = onehot(argmax_y q(y|x))."""
        h = self.trunk(x)
        y = F.one_hot(self.logits_head(h).argmax(1), self.n_components).to(h.dtype)
        return self._latent(h, y)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    # -- prior -----------------------------------------------------------------------------------
    def posterior(self, z: torch.Tensor) -> torch.Tensor:
        """p(y|z) = N(z | mu_y, diag sigma_y^2) / sum_k N(z | mu_k, diag sigma_k^2) (uniform p(y))."""
        return torch.softmax(log_normal_diag(z, self.prior_means, self.prior_logvars), 1)

    def prototypes(self) -> tuple[torch.Tensor, np.ndarray | None]:
        return self.prior_means.detach().clone(), None

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        """Weight decay on the networks only; the prior's mu_y and ln sigma_y^2 get none."""
        prior = [self.prior_means, self.prior_logvars]
        ids = {id(p) for p in prior}
        networks = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        return [{"params": networks, "weight_decay": weight_decay}, {"params": prior, "weight_decay": 0.0}]

    # -- loss ------------------------------------------------------------------------------------
    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.trunk(x)
        logits = self.logits_head(h)
        log_q = torch.log_softmax(logits, 1)
        y = F.gumbel_softmax(logits, tau=float(self.temperature))
        mean, logvar = self._latent(h, y)
        recon = reconstruction_loss(self.decode(self.reparameterize(mean, logvar)), x, self.recon)
        prior_mean, prior_logvar = y @ self.prior_means, torch.log(y @ self.prior_logvars.exp())
        kl_z = 0.5 * (prior_logvar - logvar + (logvar.exp() + (mean - prior_mean).square()) / prior_logvar.exp()
                      - 1.0).sum(1).mean()
        kl_y = ((log_q.exp() * log_q).sum(1) + math.log(self.n_components)).mean()
        return {"loss": recon + self.beta * (kl_z + kl_y), "recon": recon, "kl_z": kl_z, "kl_y": kl_y,
                "temperature": self.temperature.clone()}
