"""scripts/sweep_bt.py chooses on held-out TRAIN images: disjoint from what pretraining sees, val untouched."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from rtsseg.data.tinyimagenet import TinyImageNet

SCRIPT = Path(__file__).parents[1] / "scripts" / "sweep_bt.py"
_SPEC = importlib.util.spec_from_file_location("sweep_bt", SCRIPT)
sweep_bt = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(sweep_bt)


def test_heldout_split_is_disjoint_from_pretraining(data_tiny_tree, tmp_path):
    xb, yb, xq, yq, n_cls = sweep_bt.heldout_split(data_tiny_tree, 3, 1, 2, tmp_path / "cache")
    assert n_cls == 3 and len(xq) == 3 and len(xb) == 6
    assert sorted(yq.tolist()) == [0, 1, 2]
    full = TinyImageNet(data_tiny_tree, "train")
    seen = {p.name for p in TinyImageNet(data_tiny_tree, "train", 3).files}
    # the held-out query of each class is its last file (numbered 10), which max_per_class=3 leaves out
    assert all(f.name.endswith("_10.JPEG") for f in full.files if f.name not in seen)
    with pytest.raises(ValueError, match="train images"):
        sweep_bt.heldout_split(data_tiny_tree, 4, 1, 2, tmp_path / "cache")


@pytest.mark.slow
def test_help_runs():
    """``--help`` gets past the script's imports (a moved module crashed it before argparse ran)."""
    proc = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: sweep_bt.py") and "--lambdas" in proc.stdout
