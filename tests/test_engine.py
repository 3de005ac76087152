"""The one training engine (rtsseg.ssl.engine.fit): a toy fourth method (tests/toy_method.py) trains through it,
resumes bit for bit after SIGKILL, trains the same under 2 DDP processes as under 1; for every method a changed
identity trains a new run and an unchanged one skips; the registry and the command line."""

from __future__ import annotations

import csv
import dataclasses
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from model_fakes import register_fakes, subprocess_env
from rtsseg.checkpoint import load_checkpoint
from rtsseg.ssl.engine import NonFiniteLossError, fit, main
from rtsseg.ssl.method import Method, method_class, register_method
from toy_method import ToyConfig, ToyMethod

register_fakes()


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_toy_method_trains_through_fit_and_logs_what_it_ran(tmp_path):
    torch.set_num_threads(1)
    run = fit(ToyConfig(run_parent=str(tmp_path)), "toy")
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["step"] == 12 and state["method"] == "toy" and state["steps_per_epoch"] == 6  # 48 / 8, 2 epochs
    steps, hist = _rows(run / "steps.csv"), _rows(run / "history.csv")
    assert [int(r["step"]) for r in steps] == list(range(1, 13)) and [r["epoch"] for r in hist] == ["0", "1", "2"]
    for h in hist[1:]:  # the epoch mean of steps.csv, recomputed by hand
        losses = [float(r["loss"]) for r in steps if r["epoch"] == h["epoch"]]
        assert float(h["train_loss"]) == pytest.approx(sum(losses) / len(losses))
    assert float(hist[2]["mse"]) < 0.5 * float(hist[0]["mse"])  # least squares by SGD does descend
    w = torch.nn.Linear(5, 1)
    w.load_state_dict(state["backbone"])  # the state the method saved, under the checkpoint's "backbone"


_KILLED = "import sys, toy_method as t; from rtsseg.ssl.engine import fit; " \
          "fit(t.ToyConfig(run_parent=sys.argv[1], fault_at_step=9, save_every_steps=4), 'toy')"


@pytest.mark.slow
def test_toy_killed_run_resumes_to_identical_weights(tmp_path):
    proc = subprocess.run([sys.executable, "-c", _KILLED, str(tmp_path / "k")], capture_output=True, text=True,
                          timeout=120, env=subprocess_env())
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    (killed,) = [p.parent for p in (tmp_path / "k").glob("*/checkpoint.pt")]
    assert load_checkpoint(killed / "checkpoint.pt")["step"] == 8 and len(_rows(killed / "steps.csv")) == 9
    assert fit(ToyConfig(run_parent=str(tmp_path / "k")), "toy") == killed
    straight = fit(ToyConfig(run_parent=str(tmp_path / "s")), "toy")
    a, b = load_checkpoint(straight / "checkpoint.pt"), load_checkpoint(killed / "checkpoint.pt")
    assert all(torch.equal(a["backbone"][k], b["backbone"][k]) for k in a["backbone"])
    assert all(torch.equal(a["optimizer"]["state"][k]["momentum_buffer"], v["momentum_buffer"])
               for k, v in b["optimizer"]["state"].items())
    assert (straight / "steps.csv").read_text() == (killed / "steps.csv").read_text()
    strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]  # noqa: E731
    assert strip(_rows(straight / "history.csv")) == strip(_rows(killed / "history.csv"))


def _ddp_worker(rank: int, port: int, parent: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    from rtsseg.ssl import distributed as D

    try:
        fit(ToyConfig(run_parent=parent), "toy")
    finally:
        D.cleanup()


@pytest.mark.slow
def test_toy_two_process_ddp_equals_one_process(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(port, str(tmp_path / "ddp")), nprocs=2, join=True)
    one = fit(ToyConfig(run_parent=str(tmp_path / "one")), "toy")
    (two,) = [p.parent for p in (tmp_path / "ddp").glob("*/checkpoint.pt")]
    a, b = load_checkpoint(one / "checkpoint.pt"), load_checkpoint(two / "checkpoint.pt")
    assert b["step"] == 12 and len(b["rng"]) == 2  # every rank's random state
    for k in a["backbone"]:  # rank r took items r, r+2, ... of each global batch; DDP averaged the gradients
        torch.testing.assert_close(b["backbone"][k], a["backbone"][k], atol=1e-6, rtol=1e-5)
    mse = [[float(r["mse"]) for r in _rows(run / "history.csv")] for run in (one, two)]
    assert mse[1] == pytest.approx(mse[0], rel=1e-5)


# ------------------------------------------------------------------------- identity, for every method
def _configs(tmp_path: Path) -> dict:
    from rtsseg.ssl.dino_train import DinoConfig
    from rtsseg.ssl.supervised import SupervisedConfig
    from rtsseg.ssl.train import PretrainConfig

    common = dict(device="cpu", progress=False, num_threads=1, amp="none", epochs=1, run_parent=str(tmp_path))
    ssl = dict(backbone="tiny_test", data="synthetic", synthetic_images=16, batch_size=8, knn_train_per_class=2,
               knn_val_per_class=1, warmup_epochs=0, **common)
    sup = dict(backbone="tiny_test", image_size=16, batch_size=16, warmup_epochs=0, val_per_class=0, **common)
    return {
        "toy": (ToyConfig(run_parent=str(tmp_path)), "lr", 0.05),
        "barlow-twins": (PretrainConfig(projector_dims=(8, 8), **ssl), "lambd", 0.01),
        "dino": (DinoConfig(image_size=32, n_local_crops=1, out_dim=16, hidden_dim=8, bottleneck_dim=8, **ssl),
                 "teacher_temp", 0.05),
        "supervised": (SupervisedConfig(**sup), "lr", 5e-3),
        "attention-supervised": (SupervisedConfig(attn_loss_weight=1.0, **sup), "attn_loss_weight", 2.0),
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", ["toy", "barlow-twins", "dino", "supervised", "attention-supervised"])
def test_changed_identity_trains_a_new_run_and_an_unchanged_rerun_skips(tmp_path, monkeypatch, capsys, name):
    import rtsseg.ssl.attention_supervised as att
    from test_ssl_supervised import _FakeRecorder, _fake_box_loss, tiny_data

    monkeypatch.setattr(att, "_attention_parts", lambda: (_FakeRecorder, _fake_box_loss, _fake_box_loss))
    torch.set_num_threads(1)
    cfg, knob, value = _configs(tmp_path)[name]
    cls = method_class(name)

    def train(c):
        return fit(c, cls.for_config(c, tiny_data()) if "supervised" in name else cls)

    first = train(cfg)
    assert load_checkpoint(first / "checkpoint.pt")["method"] == name
    stamp, steps = (first / "checkpoint.pt").stat().st_mtime_ns, (first / "steps.csv").read_text()
    capsys.readouterr()
    assert train(dataclasses.replace(cfg, progress=True, save_every_steps=1)) == first  # operational knobs only
    assert (first / "checkpoint.pt").stat().st_mtime_ns == stamp and (first / "steps.csv").read_text() == steps
    assert "finished run" in capsys.readouterr().err
    second = train(dataclasses.replace(cfg, **{knob: value}))
    assert second != first and load_checkpoint(second / "checkpoint.pt")["config"][knob] == value
    assert _rows(second / "steps.csv")[0]["step"] == "1"  # trained from scratch, not resumed


# ------------------------------------------------------------------------------ registry, errors, CLI
def test_registry_refuses_a_second_method_of_one_name_and_names_the_known_ones():
    with pytest.raises(ValueError, match="already registered"):
        register_method("toy")(type("Other", (ToyMethod,), {}))
    with pytest.raises(KeyError, match="barlow-twins"):
        method_class("simclr")
    assert method_class("toy") is ToyMethod and issubclass(method_class("dino"), Method)


def test_nonfinite_loss_stops_with_one_error_and_a_diagnostic(tmp_path):
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step"):
        fit(ToyConfig(run_parent=str(tmp_path), lr=1e6), "toy")  # SGD diverges to inf, then NaN
    (diag,) = tmp_path.glob("*/nan_diagnostic.json")
    assert '"parameters_finite"' in diag.read_text()


def test_command_line_names_unknown_methods_in_one_line(capsys):
    assert main(["simclr", "--epochs", "1"], prog="rtsseg pretrain") == 2
    err = capsys.readouterr().err
    assert err.startswith("rtsseg pretrain: error: unknown method 'simclr'") and err.count("\n") == 1
    assert main(["--help"]) == 0 and "barlow-twins" in capsys.readouterr().out
