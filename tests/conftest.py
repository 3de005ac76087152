"""Shared pytest fixtures. Data fixtures (``data_*``) write tiny trees in the real data set layouts."""

from __future__ import annotations

import os
from pathlib import Path

# amp=auto decides bf16 vs fp32 on a CPU by a measured probe (rtsseg.precision): off in the tests, so every
# machine trains them in fp32 and nothing is written to the real runs/precision/ (the precision tests clear it)
os.environ.setdefault("RTSSEG_AMP_PROBE", "off")

import pytest

import data_fakes


@pytest.fixture
def data_camvid_tree(tmp_path: Path) -> Path:
    """``tmp/camvid``: train (3 jpg, train.txt) and val (2 png, paired by stem), labels 0, 3, 10, 11 (void)."""
    return data_fakes.make_camvid(tmp_path / "camvid")


@pytest.fixture
def data_tiny_tree(tmp_path: Path) -> Path:
    """``tmp/tiny-imagenet-200`` with 3 classes x 4 train images (one class without boxes), 6 val images."""
    return data_fakes.make_tiny_imagenet(tmp_path / "tiny-imagenet-200")


@pytest.fixture
def data_coco_tree(tmp_path: Path) -> Path:
    """``tmp/cocostuff`` with val2017: 3 images + stuffthingmaps, a curated list of the first 2."""
    return data_fakes.make_cocostuff(tmp_path / "cocostuff")


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """A test that sets torch's thread count (directly, or through a trainer's ``num_threads``) must not change the
    arithmetic of the tests after it: a resumed run compared bitwise with a child process would differ."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
