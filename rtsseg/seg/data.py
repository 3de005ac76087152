"""Segmentation data helpers: deterministic evenly spaced subsets, batches of masks of different sizes.

Subsets are evenly spaced over a split: CamVid is a few video sequences in order, so evenly spaced frames
cover every sequence, where the first N would not.
"""

from __future__ import annotations

import torch


def evenly_spaced(n: int, m: int | None) -> list[int]:
    """``m`` indices spread evenly over ``range(n)`` (all of them when ``m`` is None or >= n)."""
    if m is None or m >= n:
        return list(range(n))
    if m < 1:
        raise ValueError(f"subset size must be >= 1, got {m}")
    return torch.linspace(0, n - 1, m).round().long().tolist()


def collate_masks_as_list(batch):
    """Images stacked ``uint8 [B,3,h,w]``; masks stacked when equal in size, else a list (COCO sizes vary)."""
    images = torch.stack([item[0] for item in batch])
    masks = [item[1] for item in batch]
    if len({tuple(m.shape) for m in masks}) == 1:
        return images, torch.stack(masks)
    return images, masks
