"""DINO's teacher at the budget it is given (issue 20.5): how much of its random init the EMA teacher keeps.

The teacher is updated after every step t by ``teacher <- m_t * teacher + (1 - m_t) * student`` with ``m_t`` on a
cosine from a base to 1 (:func:`momentum_schedule`). Unrolled, the teacher after T steps is
``(prod_t m_t) * teacher_0 + (a weighted mean of student iterates)``: the product :func:`teacher_retention` is the
weight of its random initialisation. DINO's base 0.996 is made for 100+ epochs of ImageNet (125,000+ steps:
``prod m_t ~ exp(-0.004 * T / 2) ~ 0``); over the ~300 steps of a CPU chapter it keeps ``exp(-0.6) = 55 %`` of the
random init, and the k-NN monitor scores a teacher that is mostly noise.

:func:`teacher_momentum_base` therefore sets the base from the run length: DINO's 0.996 where that lets the teacher
forget all but ``retention`` (5 %) of its init, else the largest base that does (bisection on the exact product;
about ``1 - 2 ln(1 / retention) / T``, as ``sum_t (1 - m_t) = (1 - base) T / 2`` on the cosine).
"""

from __future__ import annotations

import numpy as np

from rtsseg.schedule import cosine_scheduler

DINO_MOMENTUM = 0.996  # the official base (facebookresearch/dino main_dino.py --momentum_teacher)
RETENTION = 0.05  # at most 5 % of the teacher's initial weights left at the end of the run


def momentum_schedule(base: float, total_steps: int) -> np.ndarray:
    """float64 ``[total_steps]``: the teacher momentum of each step, cosine from ``base`` to 1 (the official one)."""
    return cosine_scheduler(base, 1.0, total_steps)


def teacher_retention(schedule: np.ndarray) -> float:
    """``prod_t m_t``: the weight of the teacher's initial weights after the EMA updates of ``schedule``."""
    m = np.asarray(schedule, dtype=np.float64)
    if m.size and (m.min() < 0 or m.max() > 1):
        raise ValueError(f"momenta must lie in [0, 1], got {m.min()} .. {m.max()}")
    return float(np.exp(np.sum(np.log(m)))) if m.size and m.min() > 0 else float(np.prod(m))


def teacher_momentum_base(total_steps: int, retention: float = RETENTION, cap: float = DINO_MOMENTUM) -> float:
    """The largest base <= ``cap`` whose cosine schedule over ``total_steps`` leaves the teacher at most ``retention``
    of its init (``teacher_retention(momentum_schedule(base, total_steps)) <= retention``)."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}: check epochs and batch_size")
    if not 0 < retention < 1:
        raise ValueError(f"retention must be in (0, 1), got {retention}")
    if teacher_retention(momentum_schedule(cap, total_steps)) <= retention:
        return cap
    lo, hi = 0.0, cap  # retention(lo) = 0 <= retention < retention(hi); retention(base) rises with base
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if teacher_retention(momentum_schedule(mid, total_steps)) <= retention else (lo, mid)
    return lo


def warmup_steps(epochs: float, steps_per_epoch: int) -> int:
    """A warm-up of ``epochs`` epochs (fractions allowed) in steps."""
    return round(epochs * steps_per_epoch)


def same_share(reference_warmup: float, reference_epochs: float, epochs: float) -> float:
    """The warm-up (in epochs) that takes the same share of a run of ``epochs`` as ``reference_warmup`` takes of a
    run of ``reference_epochs``: DINO's warm-ups at the share of Barlow Twins' (chapter 3 at chapter 2's budget)."""
    if reference_epochs <= 0:
        raise ValueError(f"reference_epochs must be > 0, got {reference_epochs}: check bt_epochs")
    return reference_warmup * epochs / reference_epochs


__all__ = ["DINO_MOMENTUM", "RETENTION", "momentum_schedule", "teacher_retention", "teacher_momentum_base",
           "warmup_steps", "same_share"]
