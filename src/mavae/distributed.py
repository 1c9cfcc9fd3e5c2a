"""Running one fit on many processes with PyTorch's launcher (``torchrun ... -m mavae fit``).

torchrun starts the processes and sets RANK, LOCAL_RANK, WORLD_SIZE and the rendezvous address;
``process_group`` turns that environment into the default process group (gloo on CPU, nccl on
CUDA). The helpers below are no-ops in a single process, so every caller runs unchanged there.

Sharding convention: rank r of W holds the rows r, r + W, r + 2W, ... of the training set
(``shard``), the same striding as DistributedSampler; ``gather_rows`` puts the rows back in order.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist


def launched_by_torchrun() -> bool:
    """True in a process that torchrun started with more than one process in the job."""
    return "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """The process that writes files and prints (rank 0, or the only process)."""
    return rank() == 0


@contextmanager
def process_group(device: str = "cpu") -> Iterator[None]:
    """The default process group from torchrun's environment for the duration of the block, destroyed
    at the end, also when the block raises. Backend: nccl for a CUDA device (each process on
    cuda:LOCAL_RANK), gloo otherwise; the ranks meet at a barrier before the group is destroyed. A no-op
    outside torchrun or when a group already exists."""
    if not launched_by_torchrun() or active():
        yield
        return
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    try:
        yield
        dist.barrier()  # the ranks leave together: a worker that tore its group down while rank 0 still
        # evaluated and wrote the run was seen to abort at exit ("terminate called without an active exception")
    finally:
        dist.destroy_process_group()


def shard(n: int) -> np.ndarray:
    """The indices of the rows this rank holds: rank, rank + W, ..."""
    return np.arange(rank(), n, world_size())


def gather_padded(local: torch.Tensor, longest: int) -> list[torch.Tensor]:
    """Every rank's ``local`` rows, zero-padded to ``longest`` rows, as a list in rank order (all_gather
    needs equal shapes; the caller cuts each part to its rank's row count). One process: [local]."""
    if not active():
        return [local]
    padded = torch.zeros((longest, *local.shape[1:]), dtype=local.dtype, device=local.device)
    padded[: len(local)] = local
    parts = [torch.empty_like(padded) for _ in range(world_size())]
    dist.all_gather(parts, padded)
    return parts


def gather_rows(local: torch.Tensor, n: int) -> torch.Tensor:
    """Every rank's ``local`` rows (this rank's ``shard(n)``), put back in the order 0..n-1 on every
    rank. Bytes received per rank: (W - 1) * ceil(n / W) * row size."""
    if not active():
        return local
    size = world_size()
    parts = gather_padded(local, -(-n // size))
    out = torch.empty((n, *local.shape[1:]), dtype=local.dtype, device=local.device)
    for r, part in enumerate(parts):
        out[r::size] = part[: len(range(r, n, size))]
    return out


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of ``tensor`` over ranks (in place; the tensor itself in one process)."""
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Rank 0's buffers (a model's fitted prior) copied to every rank."""
    if active():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def broadcast_object(obj=None):
    """Rank 0's ``obj`` on every rank (pickled)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
