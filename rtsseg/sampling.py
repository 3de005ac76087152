"""Data order and random streams of the trainers: functions of (seed, epoch / step, rank) only.

- :func:`epoch_permutation`: the order of one epoch, drawn from ``np.random.SeedSequence([seed, epoch])`` so that
  every (seed, epoch) pair has its own independent order. (Seeding with ``seed + epoch``, as
  ``DistributedSampler`` does, makes seed s at epoch e replay seed s+1 at epoch e-1: seeds were not independent.)
- :func:`batch_indices`: DistributedSampler sharding: global step i takes positions ``[i*B, (i+1)*B)`` of the
  permutation, rank r the positions ``r, r+W, ...`` of that slice.
- :func:`step_generator`: the augmentation generator of one (step, rank, stream), independent of what ran
  before, so a resumed run draws exactly what an uninterrupted one draws.
"""

from __future__ import annotations

import numpy as np
import torch


def _generator(*entropy: int) -> torch.Generator:
    state = np.random.SeedSequence([int(e) for e in entropy]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 31 ^ int(state[1]))


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """int64 ``[n]``: the data order of ``epoch`` for run ``seed`` (independent across seeds and epochs)."""
    return torch.randperm(n, generator=_generator(seed, epoch))


def batch_indices(perm: torch.Tensor, step_in_epoch: int, batch_size: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """This rank's share of global batch ``step_in_epoch``: ``[batch_size // world_size]`` indices
    (fewer for a last incomplete batch)."""
    return perm[step_in_epoch * batch_size : (step_in_epoch + 1) * batch_size][rank::world_size]


def step_generator(seed: int, step: int, rank: int = 0, stream: int = 0) -> torch.Generator:
    """Augmentation generator of one (step, rank): ``stream`` separates uses (0: training, 1: monitor batches,
    2+: other trainers' streams)."""
    return _generator(seed, stream, step, rank)
