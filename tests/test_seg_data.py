"""CamVid loaders for the probe: deterministic evenly spaced subsets, native-resolution masks."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from rtsseg.seg.data import evenly_spaced, subset


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


def test_subset_is_deterministic():
    ds = TensorDataset(torch.arange(20))
    sub = subset(ds, 5)
    assert [sub[i][0].item() for i in range(len(sub))] == [0, 5, 10, 14, 19]
    assert subset(ds, None) is ds


def test_camvid_loaders_on_shared_data():
    from rtsseg.config import data_root
    from rtsseg.seg.data import camvid_loaders

    try:
        root = data_root() / "camvid"
    except FileNotFoundError:
        pytest.skip("no shared data")
    if not root.is_dir():
        pytest.skip("no CamVid under the data root")
    train, val = camvid_loaders(root, input_size=(64, 96), batch_size=2, max_train=2, max_val=2)
    assert len(train.dataset) == 2 and len(val.dataset) == 2
    images, masks = next(iter(val))
    assert images.shape == (2, 3, 64, 96) and images.dtype == torch.uint8
    assert masks.shape == (2, 360, 480) and masks.dtype == torch.int64
    assert set(masks.unique().tolist()) <= set(range(11)) | {255}
