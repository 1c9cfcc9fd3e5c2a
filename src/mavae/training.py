"""One Trainer for every model: the loop, checkpoints with exact resume, the NaN stop, progress,
DDP awareness and the per-epoch hook that refits a model's prior.

Randomness: every epoch re-seeds the global torch RNG, so nothing depends on the RNG state left by
earlier epochs, callbacks or a previous process, and a resumed run is bit-identical:
- the refit at the start of epoch e runs under a seed of (seed, e), the same on every rank, so all
  ranks refit the same prior;
- the batches of epoch e run under a seed of (seed, e, rank) (reparameterisation noise);
- the shuffle of epoch e is DistributedSampler's permutation seeded with seed + e.
"""
from __future__ import annotations

import io
import math
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from .distributed import broadcast_buffers, gather_rows, shard
from .models.base import Model
from .runs import write_atomic


class NonFiniteLossError(RuntimeError):
    """A loss term or the gradient norm became NaN or Inf; raised before the optimizer step, so the
    parameters and the last good checkpoint are left untouched."""


def _seed(*keys: int) -> int:
    """A well-mixed 32-bit seed from a tuple of non-negative ints, e.g. (seed, epoch, rank)."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])


class Trainer:
    """Minimise ``model.loss`` with AdamW (decoupled weight decay, per ``model.parameter_groups``)
    and gradient-norm clipping, on images (n, C, H, W) in [0, 1] held in memory.

    Under ``torch.distributed`` (``torchrun``, see ``distributed``) each rank trains on its
    DistributedSampler shard with batch_size / W images per step, so the W ranks' step-s batches
    together are one process's step-s batch (the sampler's permutation is seeded with seed + epoch
    on every rank); gradients are averaged by DistributedDataParallel. For a refit each rank encodes
    only its rows, the encodings are gathered on every rank (``distributed.gather_rows``), every
    rank refits the same prior from them and rank 0's buffers are broadcast so the priors are
    identical. Only rank 0 writes checkpoints and shows progress.
    """

    def __init__(self, model: Model, images, *, epochs: int, batch_size: int = 64, lr: float = 1e-3,
                 weight_decay: float = 1e-4, grad_clip: float = 5.0, seed: int = 0, device="cpu",
                 checkpoint_path: str | os.PathLike | None = None, setup: dict | None = None, progress: bool = True,
                 callbacks: Iterable[Callable[["Trainer", int, dict], None]] = ()):
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.model = model.to(self.device)
        self.images = torch.as_tensor(images, dtype=torch.float32)
        if len(self.images) == 0 or not ((self.images >= 0) & (self.images <= 1)).all():
            raise ValueError("images must be a non-empty float array with values in [0, 1] (no NaN)")
        self.epochs, self.batch_size, self.grad_clip, self.seed = epochs, batch_size, grad_clip, seed
        self.local_batch = math.ceil(batch_size / self.world_size)  # per rank: the global batch split W ways
        self.refit_bytes = 0  # bytes this rank received in the last refit (0 in one process)
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None
        self.setup = setup  # what the checkpoint records of the run's settings (runs.staged_run checks it)
        self.progress = progress and self.rank == 0
        self.callbacks = list(callbacks)
        self.optimizer = torch.optim.AdamW(model.parameter_groups(weight_decay), lr=lr)
        self.epoch = 0  # number of completed epochs
        self.history: list[dict] = []

    # ----------------------------------------------------------------------------------------
    def fit(self) -> list[dict]:
        """Train up to ``epochs`` (resuming from ``checkpoint_path`` if it exists); returns the
        history, one dict per epoch: epoch, the mean of every loss term, seconds (refit included),
        refit (the prior was refitted at the start of the epoch), refit_end (refitted after the last
        epoch), refit_seconds (the time of this epoch's refits: the one at its start, and for the last
        epoch the final one too)."""
        if self.checkpoint_path is not None and self.checkpoint_path.exists():
            self.load_checkpoint(self.checkpoint_path)
        model = self.model
        net = model
        if self.distributed:
            net = DistributedDataParallel(model, device_ids=[self.device] if self.device.type == "cuda" else None,
                                          find_unused_parameters=model.has_unused_parameters)
        sampler = DistributedSampler(range(len(self.images)), num_replicas=self.world_size, rank=self.rank,
                                     shuffle=True, seed=self.seed)
        steps = math.ceil(len(sampler) / self.local_batch)
        bar = tqdm(total=self.epochs * steps, initial=self.epoch * steps, disable=not self.progress,
                   unit="batch", dynamic_ncols=True)
        try:
            for epoch in range(self.epoch, self.epochs):
                start = time.perf_counter()
                torch.manual_seed(_seed(self.seed, epoch))
                model.start_epoch(epoch, self.epochs)
                refit = model.needs_refit(epoch)
                if refit:
                    self.refit()
                refit_seconds = time.perf_counter() - start
                torch.manual_seed(_seed(self.seed, epoch, self.rank))
                sampler.set_epoch(epoch)
                model.train()
                sums, count = {}, 0
                for step, idx in enumerate(torch.tensor(list(sampler)).split(self.local_batch)):
                    terms = net(self.images[idx].to(self.device, non_blocking=True))
                    values = torch.stack([t.detach().float() for t in terms.values()])
                    if self.distributed:
                        dist.all_reduce(values)  # all ranks see the same values and stop together
                        values /= self.world_size
                    values = values.tolist()
                    bad = [name for name, v in zip(terms, values) if not math.isfinite(v)]
                    if bad:
                        raise NonFiniteLossError(self._nonfinite_message(
                            f"loss term(s) {', '.join(bad)}", epoch, step, terms, values))
                    self.optimizer.zero_grad(set_to_none=True)
                    terms["loss"].backward()
                    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip)
                    if not torch.isfinite(grad_norm):  # a finite loss with a NaN/Inf gradient
                        raise NonFiniteLossError(self._nonfinite_message(
                            f"gradient norm ({grad_norm.item()})", epoch, step, terms, values))
                    self.optimizer.step()
                    n = len(idx)
                    for name, v in zip(terms, values):
                        sums[name] = sums.get(name, 0.0) + n * v
                    count += n
                    bar.set_postfix(epoch=epoch, loss=f"{sums['loss'] / count:.4g}", refresh=False)
                    bar.update()
                record = {"epoch": epoch, **{name: s / count for name, s in sums.items()},
                          "seconds": time.perf_counter() - start, "refit": refit, "refit_end": False,
                          "refit_seconds": refit_seconds if refit else 0.0}
                if self.distributed:
                    record["refit_bytes"] = self.refit_bytes if refit else 0
                self.history.append(record)
                self.epoch = epoch + 1
                self.save_checkpoint()
                for callback in self.callbacks:
                    callback(self, epoch, record)
            if model.refits_at_end and self.history and not self.history[-1]["refit_end"]:
                torch.manual_seed(_seed(self.seed, self.epoch))
                start = time.perf_counter()
                self.refit(final=True)
                self.history[-1]["refit_end"] = True
                self.history[-1]["refit_seconds"] += time.perf_counter() - start
                self.save_checkpoint()
        finally:
            bar.close()
        return self.history

    def refit(self, final: bool = False) -> None:
        """Refit the model's prior on the encoder means and log-variances of the whole training set
        (``model.refit_final`` after the last epoch): each rank encodes its shard, the rows are
        gathered on every rank, and rank 0's refitted prior is broadcast (a no-op in one process)."""
        n = len(self.images)
        mean, logvar = self.encode_posteriors(self.images[torch.as_tensor(shard(n))])
        mean, logvar = gather_rows(mean, n), gather_rows(logvar, n)
        (self.model.refit_final if final else self.model.refit)(mean, logvar)
        broadcast_buffers(self.model)
        if self.distributed:
            received = (self.world_size - 1) * math.ceil(n / self.world_size) * mean.shape[1] * 2 * mean.element_size()
            self.refit_bytes = received + sum(b.numel() * b.element_size() for b in self.model.buffers())

    def encode(self, images, batch_size: int = 1024) -> torch.Tensor:
        """Encoder means m(x) (n, d) in eval mode, on the trainer's device."""
        return self.encode_posteriors(images, batch_size)[0]

    def encode_posteriors(self, images, batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, logvar) of q(z|x), each (n, d), in eval mode, on the trainer's device."""
        out = self._map(self.model.encode, images, batch_size)
        return torch.cat([m for m, _ in out]), torch.cat([lv for _, lv in out])

    def cluster_posteriors(self, images, batch_size: int = 1024) -> torch.Tensor:
        """(n, K) cluster probabilities ``model.cluster_posterior`` in eval mode, on the trainer's device."""
        return torch.cat(_map(self.model, self.model.cluster_posterior, images, batch_size))

    def _map(self, fn, images, batch_size: int) -> list:
        return _map(self.model, fn, images, batch_size)

    # ----------------------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        """Atomically write model (with its prior buffers), optimizer, epoch and history (rank 0)."""
        if self.checkpoint_path is None or self.rank != 0:
            return
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "epoch": self.epoch, "history": self.history, "setup": self.setup}
        self.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(state, buffer)
        write_atomic(self.checkpoint_path, buffer.getvalue())

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        state = torch.load(path, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.history = state["epoch"], state["history"]

    def _nonfinite_message(self, what, epoch, step, terms, values) -> str:
        shown = ", ".join(f"{name}={v}" for name, v in zip(terms, values))
        if self.checkpoint_path is not None and self.checkpoint_path.exists():
            last = f"last good checkpoint: {self.checkpoint_path} (after {self.epoch} epochs)"
        else:
            last = "no checkpoint was written" + ("" if self.checkpoint_path else " (checkpoint_path=None)")
        return (f"non-finite {what} at epoch {epoch} (0-based), step {step} "
                f"[{shown}]; {last}")


def stratify(model: Model, images, batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(encoder means (n, d), cluster probabilities (n, K), reconstruction errors (n,)) of images
    under ``model.stratify``, in eval mode, one encoder pass per image, returned on the CPU. The
    error is the mean squared difference between x and g(m(x)), the decoded encoder mean."""
    def one_pass(x):
        mean, probabilities = model.stratify(x)
        return mean, probabilities, (model.decode(mean) - x).square().flatten(1).mean(1)

    out = _map(model, one_pass, images, batch_size)
    return tuple(torch.cat([part[i].cpu() for part in out]) for i in range(3))


@torch.no_grad()
def _map(model: Model, fn, images, batch_size: int) -> list:
    """fn on batches of images on the model's device, in eval mode (the mode is restored after)."""
    images = torch.as_tensor(images, dtype=torch.float32)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        return [fn(b.to(device)) for b in images.split(batch_size)]
    finally:
        model.train(was_training)
