"""Checks against the real shared data (/work/shared/data or $RTSSEG_DATA); skipped where it is absent."""

from __future__ import annotations

import pytest
import torch

from rtsseg.config import data_root
from rtsseg.data.camvid import NUM_CLASSES, CamVid
from rtsseg.errors import MissingDataError
from rtsseg.data.tinyimagenet import TinyImageNet


@pytest.fixture(scope="module")
def data_shared_root():
    try:
        return data_root()
    except MissingDataError:
        pytest.skip("no shared data (set RTSSEG_DATA)")


def test_shared_camvid_val_item(data_shared_root):
    if not (data_shared_root / "camvid").is_dir():
        pytest.skip("no camvid/ in the shared data")
    ds = CamVid(data_shared_root / "camvid", "val")
    assert len(ds) == 101
    image, mask = ds[0]
    assert image.shape == (3, 360, 480) and mask.shape == (360, 480)
    ids = set(mask.unique().tolist())
    assert ids <= set(range(NUM_CLASSES)) | {255} and len(ids) > 3


def test_shared_tinyimagenet_val(data_shared_root):
    root = data_shared_root / "tiny-imagenet-200"
    if not root.is_dir():
        pytest.skip("no tiny-imagenet-200/ in the shared data")
    ds = TinyImageNet(root, "val")
    annotated = [line for line in (root / "val" / "val_annotations.txt").read_text().splitlines() if line.strip()]
    # 50 val images per class: 10,000 for the original 200 classes (the shared copy lists 202 wnids)
    assert len(ds) == len(annotated) == 50 * len(ds.classes) >= 10_000
    image, label, box = ds[0]
    assert image.shape == (3, 64, 64) and 0 <= label < len(ds.classes)
    x0, y0, x1, y1 = box.tolist()
    assert 0 <= x0 <= x1 < 64 and 0 <= y0 <= y1 < 64
    assert torch.bincount(torch.tensor(ds.labels)).eq(50).all()


def test_shared_curated_lists(data_shared_root):
    from rtsseg.data.cocostuff import curated_ids

    curated = data_shared_root / "cocostuff" / "curated"
    if not curated.is_dir():
        pytest.skip("no cocostuff/curated/ in the shared data")
    ids = curated_ids(curated)
    assert len(ids["val2017"]) == 2175 and len(ids["train2017"]) == 49629  # the IIC/PiCIE/STEGO curated split
    assert all(len(i) == 12 and i.isdigit() for i in ids["val2017"])
