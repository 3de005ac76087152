"""The one learning-rate / momentum schedule of every trainer (Barlow Twins, supervised, DINO, probe).

``cosine_scheduler`` follows facebookresearch/dino ``utils.cosine_scheduler``, per optimiser step instead of
per (epoch, iteration): ``warmup_steps`` values rising linearly from ``start_warmup_value`` to ``base_value``
(``np.linspace``, both ends included), then a half cosine from ``base_value`` to ``final_value``:

    v[warmup + i] = final + 0.5 * (base - final) * (1 + cos(pi * i / (total - warmup))),  i = 0 .. total-warmup-1

A trainer reads ``schedule[step]`` before step ``step`` (0-based).
"""

from __future__ import annotations

import numpy as np


def cosine_scheduler(
    base_value: float,
    final_value: float,
    total_steps: int,
    warmup_steps: int = 0,
    start_warmup_value: float = 0.0,
) -> np.ndarray:
    """float64 ``[total_steps]``: linear warmup over ``warmup_steps`` then cosine from base to final value.

    ``warmup_steps`` larger than ``total_steps`` is clamped (the whole run is warmup)."""
    total_steps, warmup_steps = int(total_steps), int(warmup_steps)
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}: check epochs and batch_size")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}: check warmup_epochs")
    warmup_steps = min(warmup_steps, total_steps)
    warmup = np.linspace(start_warmup_value, base_value, warmup_steps) if warmup_steps > 0 else np.array([])
    iters = np.arange(total_steps - warmup_steps)
    cosine = final_value + 0.5 * (base_value - final_value) * (1 + np.cos(np.pi * iters / max(len(iters), 1)))
    schedule = np.concatenate((warmup, cosine)).astype(np.float64)
    assert len(schedule) == total_steps
    return schedule
