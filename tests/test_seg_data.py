"""Segmentation data helpers: deterministic evenly spaced subsets, masks of different sizes in one batch."""

from __future__ import annotations

import pytest
import torch

from rtsseg.seg.data import collate_masks_as_list, evenly_spaced


def test_evenly_spaced():
    assert evenly_spaced(10, None) == list(range(10))
    assert evenly_spaced(10, 20) == list(range(10))
    assert evenly_spaced(367, 3) == [0, 183, 366]
    picks = evenly_spaced(100, 7)  # sorted, first and last item, gaps differ by at most one
    gaps = [b - a for a, b in zip(picks, picks[1:])]
    assert picks[0] == 0 and picks[-1] == 99 and len(picks) == 7 and max(gaps) - min(gaps) <= 1
    assert len(set(evenly_spaced(101, 50))) == 50
    with pytest.raises(ValueError):
        evenly_spaced(10, 0)


def test_collate_stacks_equal_masks_and_lists_others():
    image = torch.zeros(3, 4, 4, dtype=torch.uint8)
    images, masks = collate_masks_as_list([(image, torch.zeros(6, 6)), (image, torch.ones(6, 6))])
    assert images.shape == (2, 3, 4, 4) and masks.shape == (2, 6, 6)
    images, masks = collate_masks_as_list([(image, torch.zeros(6, 6)), (image, torch.zeros(5, 7))])
    assert images.shape == (2, 3, 4, 4) and [m.shape for m in masks] == [(6, 6), (5, 7)]
