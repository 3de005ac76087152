"""Process-group helpers for ``torchrun`` and autograd-aware collectives.

The official Barlow Twins normalises each view with ``SyncBatchNorm`` (statistics over the *global*
batch) and all-reduces the cross-correlation matrix. ``nn.SyncBatchNorm`` does not run on CPU, so the
global statistics are computed here with ``torch.distributed.nn.functional.all_reduce``, whose backward
all-reduces the incoming gradients (sum). Every rank then holds the same loss ``L``; the backward on
rank r yields the gradient of ``sum_r L`` through rank r's own samples, i.e. ``world_size`` times rank
r's share of dL/dθ, and DDP's gradient *average* turns the sum of these shares back into exactly the
single-process gradient dL/dθ on the same global batch (lightly issue #1977 / PR #1980 fixed the same
scaling). ``tests/test_ssl_ddp.py`` checks this to 1e-5.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``, ``local_rank`` on its node, its ``device``."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def is_distributed() -> bool:
    """True when a process group with more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def init_from_env(device: str | None = None) -> DistInfo:
    """Join the process group described by ``torchrun``'s environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``); a plain ``python`` launch gives a single process.

    Backend: ``nccl`` on CUDA, ``gloo`` on CPU. ``device`` forces ``"cpu"`` or ``"cuda"``.
    """
    want_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if want_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if want_cuda else "gloo")
        rank, world_size = dist.get_rank(), dist.get_world_size()
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def cleanup() -> None:
    """Destroy the process group if one is running."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum ``x`` over ranks, differentiably (backward sums the gradients over ranks); identity on one process."""
    if not is_distributed():
        return x
    return dist_fn.all_reduce(x, op=dist.ReduceOp.SUM)


def global_batch_size(n_local: int) -> int:
    """Number of samples in the global batch. Every rank holds an equal share (the engine's ``batch_indices``:
    batch_size / world_size each, divisibility checked), so ``n_local x world_size``: no all-reduce and no
    read-back, which would be a host synchronisation in every BatchNorm and loss forward of a DDP step."""
    return n_local * get_world_size() if is_distributed() else n_local


def global_mean_var(x: torch.Tensor, n_global: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and *biased* variance over dim 0 of the batch concatenated across ranks (as BatchNorm).

    x: [n_local, D] -> (mean [D], var [D]); both differentiable through every rank's samples.
    Two passes (mean, then centred squares) for numerical stability.
    """
    n = global_batch_size(x.shape[0]) if n_global is None else n_global
    mean = all_reduce_sum(x.sum(dim=0)) / n  # [D]
    var = all_reduce_sum((x - mean).pow(2).sum(dim=0)) / n  # [D]
    return mean, var


def reduce_mean_scalar(value: float, device: torch.device | None = None) -> float:
    """Average a Python float over ranks (no autograd), for logging."""
    if not is_distributed():
        return float(value)
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / get_world_size()


def gather_rng_states(info: DistInfo) -> list:
    """Every rank's RNG state (``rtsseg.checkpoint.rng_state``), in rank order, for a checkpoint written by rank 0:
    a resumed run restores each rank's own stream."""
    from rtsseg.checkpoint import rng_state

    if info.world_size == 1:
        return [rng_state()]
    states = [None] * info.world_size
    dist.all_gather_object(states, rng_state())
    return states
