"""DINO trainer: a tiny run end to end, exact resume after SIGKILL, checkpoint loadable as backbone weights, FLOPs."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from model_fakes import subprocess_env

from rtsseg.checkpoint import load_checkpoint
from rtsseg.ssl.dino_schedule import momentum_schedule, teacher_momentum_base, teacher_retention
from rtsseg.ssl.dino_train import DinoConfig, pretrain_dino
from rtsseg.ssl.flops import equal_flops_epochs, step_flops
from rtsseg.ssl.engine import main

REPO = Path(__file__).resolve().parents[1]
# 48 images / batch 8 = 6 steps per epoch, 2 epochs; checkpoints every 4 steps and at epoch ends
ARGS = [
    "--backbone", "model_fakes:TinyBackbone", "--data", "synthetic", "--synthetic-images", "48", "--batch-size", "8",
    "--epochs", "2", "--out-dim", "32", "--hidden-dim", "16", "--bottleneck-dim", "8", "--n-local-crops", "2",
    "--image-size", "32", "--warmup-epochs", "1", "--save-every-steps", "4", "--lr", "0.01",
    "--warmup-teacher-temp-epochs", "2", "--warmup-teacher-temp", "0.04", "--teacher-temp", "0.07",
    "--knn-train-per-class", "3", "--knn-val-per-class", "2", "--device", "cpu", "--num-threads", "1",
    "--no-progress", "--amp", "none",
]


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_killed_run_resumes_to_identical_weights(tmp_path: Path):
    torch.set_num_threads(1)
    killed = tmp_path / "killed"
    # step 9 is mid-epoch 2; the last checkpoint is at step 8, so step 9 is lost and redone
    proc = subprocess.run(
        [sys.executable, "-m", "rtsseg.ssl.engine", "dino", *ARGS, "--fault-at-step", "9", "--run-parent", str(killed)],
        cwd=REPO, capture_output=True, text=True, timeout=180, env=subprocess_env(),
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    (folder,) = [p for p in killed.iterdir() if p.is_dir()]
    assert load_checkpoint(folder / "checkpoint.pt")["step"] == 8

    main(["dino", *ARGS, "--run-parent", str(killed)])  # same identity: resumes from step 8 (fault_at_step is operational)
    main(["dino", *ARGS, "--run-parent", str(tmp_path / "straight")])  # uninterrupted reference
    (folder2,) = [p for p in (tmp_path / "straight").iterdir() if p.is_dir()]
    assert folder.name == folder2.name  # run identity: same config and code

    resumed, straight = load_checkpoint(folder / "checkpoint.pt"), load_checkpoint(folder2 / "checkpoint.pt")
    assert resumed["step"] == straight["step"] == 12
    for key in ("student", "teacher", "backbone"):
        for name, tensor in straight[key].items():
            assert torch.equal(resumed[key][name], tensor), (key, name)
    assert torch.equal(resumed["center"], straight["center"])
    for k, v in straight["optimizer"]["state"].items():
        assert torch.equal(resumed["optimizer"]["state"][k]["exp_avg"], v["exp_avg"])
    assert (folder / "steps.csv").read_text() == (folder2 / "steps.csv").read_text()
    hk, hs = _rows(folder / "history.csv"), _rows(folder2 / "history.csv")
    assert [r["epoch"] for r in hs] == ["0", "1", "2"]
    for a, b in zip(hk, hs):
        assert {k: v for k, v in a.items() if k != "wall_s"} == {k: v for k, v in b.items() if k != "wall_s"}
    # the teacher temperature warms up per step over warmup_teacher_temp_epochs (2 epochs = all 12 steps: np.linspace
    # 0.04 -> 0.07 over 12 points); history logs the value of the epoch's last step (indices 5 and 11)
    assert float(hs[1]["teacher_temp"]) == pytest.approx(0.04 + 0.03 * 5 / 11)
    assert float(hs[2]["teacher_temp"]) == pytest.approx(0.07)
    # the teacher momentum rises towards 1 from a base set by the run length (12 steps): <= 5 % of the init left
    base = teacher_momentum_base(12)
    assert base < 0.996 and teacher_retention(momentum_schedule(base, 12)) <= 0.05
    assert float(hs[1]["momentum"]) == pytest.approx(momentum_schedule(base, 12)[5])
    assert base <= float(hs[1]["momentum"]) < float(hs[2]["momentum"]) <= 1.0
    assert straight["config"]["momentum_teacher"] is None
    # the checkpoint's "backbone" is the teacher's backbone
    for name, tensor in straight["backbone"].items():
        assert torch.equal(straight["teacher"]["backbone." + name], tensor)


def test_first_epoch_freezes_last_layer_and_backbone_loads(tmp_path: Path):
    torch.set_num_threads(1)
    cfg = DinoConfig(backbone="vit_small64", data="synthetic", synthetic_images=16, batch_size=8, epochs=1,
                     image_size=32, n_local_crops=1, out_dim=64, hidden_dim=32, bottleneck_dim=16, warmup_epochs=0,
                     knn_train_per_class=2, knn_val_per_class=1, device="cpu", amp="none", progress=False,
                     run_parent=str(tmp_path))
    torch.manual_seed(cfg.seed)
    from rtsseg.ssl.dino_train import build_models

    init_student, _ = build_models(cfg)
    run = pretrain_dino(cfg)
    state = load_checkpoint(run / "checkpoint.pt")
    v = "head.last_layer.parametrizations.weight.original1"
    assert torch.equal(state["student"][v], init_student.state_dict()[v])  # frozen during epoch 1
    assert not torch.equal(state["student"]["head.mlp.0.weight"], init_student.state_dict()["head.mlp.0.weight"])
    from rtsseg.models import build_backbone

    bb = build_backbone("vit_small64", weights=str(run / "checkpoint.pt"))
    for name, t in bb.state_dict().items():
        assert torch.equal(t, state["backbone"][name])
    assert len(_rows(run / "history.csv")) == 2


def test_step_flops_dino_costs_more_with_local_crops():
    from model_fakes import register_fakes

    register_fakes()
    bt = step_flops("tiny_test", "barlow_twins", image_size=32, batch_size=2, projector_dims=(16, 16))
    d0 = step_flops("tiny_test", "dino", image_size=32, batch_size=2, n_local_crops=0, out_dim=32)
    d2 = step_flops("tiny_test", "dino", image_size=32, batch_size=2, n_local_crops=2, out_dim=32)
    assert d2["flops_per_image"] > d0["flops_per_image"] > 0 and bt["flops_per_image"] > 0
    assert d2["n_crops"] == 4 and d2["local_size"] == 16
    assert equal_flops_epochs(10, bt["flops_per_image"], 2 * bt["flops_per_image"]) == pytest.approx(5)
    with pytest.raises(ValueError, match="method"):
        step_flops("tiny_test", "simclr")


def test_config_from_params_uses_fields_only():
    from rtsseg.ssl.dino_train import config_from_params

    cfg = config_from_params({"profile": "cpu", "seeds": [0, 1], "epochs": 3, "local_scale": [0.1, 0.3], "lr": 1},
                             seed=2, run_parent="x")
    assert cfg.epochs == 3 and cfg.local_scale == (0.1, 0.3) and cfg.seed == 2 and cfg.run_parent == "x"
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
