"""The interface every model implements; the trainer, metrics, uncertainty and report call
nothing else.

- ``loss(x) -> dict`` of named scalar terms, always including ``"loss"`` (what is minimised).
- ``encode(x) -> (mean, logvar)`` of q(z|x); ``decode(z) -> x_hat`` in [0, 1].
- ``posterior(z) -> (n, K)`` cluster probabilities (rows sum to 1).
- ``stratify(x) -> (mean, probabilities)``: encoder means and (n, K) cluster probabilities of
  images in one encoder pass; by default ``posterior`` at the mean, overridden by models whose
  clusters come from the image itself (a categorical encoder q(y|x), chart posteriors).
  ``cluster_posterior(x)`` is its second half.
- ``image_shape``: the (C, H, W) the model was built for; ``has_pose`` / ``estimate_pose(x)``:
  whether it has a pose head, and the (n, 4) poses (None without one); ``chart_models()``: the
  charts of a mixture of charts (None for every other model).
- ``prototypes() -> (codes (K, d), indices or None)``: latent prototypes and, where they are
  real training samples, their training-set indices.
- ``needs_refit(epoch)`` / ``refit(encodings, logvars)``: the trainer calls ``refit`` with the
  encoder means and log-variances of the whole training set at the start of each epoch for
  which ``needs_refit`` is true, and ``refit_final(encodings, logvars)`` once after the last epoch
  when ``refits_at_end`` is true (by default the same as ``refit``).
- ``start_epoch(epoch, epochs)``: called by the trainer at the start of every epoch (0-based, of
  ``epochs``), before any refit, so schedules (temperatures, pretraining phases) follow the epoch
  and a resumed run is identical.
- ``state_dict()`` includes the prior (as buffers), so a checkpoint is the whole model.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


class Model(nn.Module):
    """Base class: subclasses implement loss/encode/decode/posterior/prototypes."""

    refits_at_end: bool = False
    # True when some parameters get no gradient in some steps (a pretraining phase, charts without
    # members in a batch): DistributedDataParallel must then look for unused parameters.
    has_unused_parameters: bool = False

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``forward`` is ``loss`` so DistributedDataParallel can wrap any model."""
        return self.loss(x)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def posterior(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def stratify(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(encoder means (n, d), cluster probabilities (n, K)) of images x: posterior at the mean
        unless overridden."""
        mean = self.encode(x)[0]
        return mean, self.posterior(mean)

    def cluster_posterior(self, x: torch.Tensor) -> torch.Tensor:
        """(n, K) cluster probabilities of images x."""
        return self.stratify(x)[1]

    @property
    def has_pose(self) -> bool:
        """True when the model has a pose head (``estimate_pose`` then returns poses)."""
        return False

    def estimate_pose(self, x: torch.Tensor) -> torch.Tensor | None:
        """(n, 4) poses (angle in radians, shift_x, shift_y, log_scale), None without a pose head."""
        return None

    def chart_models(self) -> list | None:
        """The charts (each with encode and decode) of a mixture of charts; None otherwise."""
        return None

    def prototypes(self) -> tuple[torch.Tensor, np.ndarray | None]:
        raise NotImplementedError

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Hook at the start of epoch ``epoch`` (0-based) of ``epochs``; models with schedules override it."""

    def needs_refit(self, epoch: int) -> bool:
        """True when the trainer must call ``refit`` at the start of ``epoch`` (0-based)."""
        return False

    def refit(self, encodings: torch.Tensor, logvars: torch.Tensor | None = None) -> None:
        """Refit the prior on the training set's encoder means (n, d) and log-variances."""

    def refit_final(self, encodings: torch.Tensor, logvars: torch.Tensor | None = None) -> None:
        """The refit after the last epoch (when ``refits_at_end``): by default an ordinary refit."""
        self.refit(encodings, logvars)

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        """Optimizer groups: weight decay on network weights only, never on a prior."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "weight_decay": weight_decay}]

    @staticmethod
    def reparameterize(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """z = mean + exp(logvar / 2) * eps, eps ~ N(0, I)."""
        return mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
