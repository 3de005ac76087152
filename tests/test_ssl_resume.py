"""Exact resume after SIGKILL, and a clean stop on a non-finite loss."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model_fakes import TinyBackbone, subprocess_env
from rtsseg.checkpoint import load_checkpoint, save_checkpoint
from rtsseg.cli import main
from rtsseg.models import register_backbone
from rtsseg.rundir import latest_run
from rtsseg.ssl.train import NonFiniteLossError, PretrainConfig, pretrain

REPO = Path(__file__).resolve().parents[1]
# 48 images / batch 8 = 6 steps per epoch, 2 epochs; checkpoints every 4 steps and at epoch ends
ARGS = [
    "--backbone", "model_fakes:TinyBackbone", "--data", "synthetic", "--synthetic-images", "48", "--batch-size", "8",
    "--epochs", "2", "--projector-dims", "16", "16", "--warmup-epochs", "1", "--save-every-steps", "4",
    "--knn-train-per-class", "3", "--knn-val-per-class", "2", "--device", "cpu", "--num-threads", "1",
    "--no-progress", "--lr-weights", "2.0", "--lr-biases", "0.05",
]


@pytest.mark.slow
def test_killed_run_resumes_to_identical_weights(tmp_path: Path):
    torch.set_num_threads(1)
    parent = tmp_path / "killed"
    # step 9 is mid-epoch 2; the last checkpoint is at step 8, so step 9 is lost and redone. The crash is the
    # engine's one fault hook (fault_at_step, operational: not part of the run identity).
    proc = subprocess.run(
        [sys.executable, "-m", "rtsseg.ssl.engine", "barlow-twins", *ARGS, "--fault-at-step", "9",
         "--run-parent", str(parent)],
        cwd=REPO, capture_output=True, text=True, timeout=120, env=subprocess_env(),
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    (killed,) = [p.parent for p in parent.glob("*/checkpoint.pt")]
    assert load_checkpoint(killed / "checkpoint.pt")["step"] == 8
    assert len((killed / "steps.csv").read_text().strip().splitlines()) == 1 + 9

    main(["pretrain", "barlow-twins", *ARGS, "--run-parent", str(parent)])  # same config: resumes from step 8
    assert latest_run(parent) == killed
    main(["pretrain", "barlow-twins", *ARGS, "--run-parent", str(tmp_path / "straight")])  # uninterrupted reference

    resumed = load_checkpoint(killed / "checkpoint.pt")
    straight = load_checkpoint(latest_run(tmp_path / "straight") / "checkpoint.pt")
    assert resumed["step"] == straight["step"] == 12
    for name, tensor in straight["model"].items():
        assert torch.equal(resumed["model"][name], tensor), name
    for k, v in straight["optimizer"]["state"].items():
        assert torch.equal(resumed["optimizer"]["state"][k]["mu"], v["mu"])
    # the per-step log was truncated to the checkpoint and continued: same losses, no duplicates
    straight_dir = latest_run(tmp_path / "straight")
    assert straight_dir.name == killed.name  # same config, same code: same identity
    assert (killed / "steps.csv").read_text() == (straight_dir / "steps.csv").read_text()
    hist_k = (killed / "history.csv").read_text().splitlines()
    hist_s = (straight_dir / "history.csv").read_text().splitlines()
    # every column but wall_s, the resumed epoch's train_loss included (it once averaged only the steps run
    # after the resume: 72.99 against 67.64 uninterrupted)
    assert hist_k[0].split(",")[8] == "train_loss"
    assert [r.split(",")[:10] for r in hist_k] == [r.split(",")[:10] for r in hist_s]


class _NaNAfter(TinyBackbone):
    """Returns NaN from training step ``after`` (0-based) on: no BatchNorm, so one forward per step on both
    views concatenated; the monitors run without grad and are not counted."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after, self.calls = after, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        if torch.is_grad_enabled():
            self.calls += 1
            if self.calls > self.after:
                y = y * float("nan")
        return y


def test_nonfinite_loss_stops_with_diagnostic_and_keeps_last_good_checkpoint(tmp_path: Path):
    torch.set_num_threads(1)
    register_backbone("nan_after_5", lambda weights=None: _NaNAfter(5))
    cfg = PretrainConfig(
        backbone="nan_after_5", data="synthetic", synthetic_images=48, batch_size=8, epochs=2,
        projector_dims=(16, 16), warmup_epochs=1, save_every_steps=2, knn_train_per_class=3,
        knn_val_per_class=2, device="cpu", progress=False, run_parent=str(tmp_path / "run"), amp="none",
    )
    with pytest.raises(NonFiniteLossError, match="step 5"):
        pretrain(cfg)
    (run,) = [p.parent for p in (tmp_path / "run").glob("*/nan_diagnostic.json")]
    diag = json.loads((run / "nan_diagnostic.json").read_text())
    assert diag["step"] == 5 and diag["inputs_finite"] and diag["parameters_finite"] and not diag["embeddings_finite"]
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["step"] == 4
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


def test_atomic_save_leaves_no_temp_files_and_loads_weights_only(tmp_path: Path):
    path = save_checkpoint({"w": torch.ones(3), "step": 3, "name": "x"}, tmp_path / "c.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]
    assert load_checkpoint(path)["step"] == 3
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    from rtsseg.errors import CorruptFileError, MissingDataError


    with pytest.raises(CorruptFileError, match="bad.pt"):
        load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(MissingDataError):
        load_checkpoint(tmp_path / "none.pt")
