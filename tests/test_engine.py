"""The one training engine (rtsseg.ssl.engine.fit): a toy fourth method (tests/toy_method.py) trains through it,
resumes bit for bit after SIGKILL, trains the same under 2 DDP processes as under 1; for every method a changed
identity trains a new run and an unchanged one skips, and reading steps back every 4 steps (sync_every_steps)
logs and trains exactly what reading every step does; a non-finite loss is reported at its step; a compiled run
(real inductor on the CPU) trains close to the eager one with the same checkpoint keys and resumes; the registry
and the command line."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
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
from rtsseg.ssl.method import COMPILE_MODES, Method, method_class, register_method
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


# a child python trains _configs(parent)[name] with the JSON overrides (fault_at_step among them) and is SIGKILLed
_KILLED = """
import dataclasses, json, sys
from pathlib import Path
import test_engine as t
name, overrides = sys.argv[2], json.loads(sys.argv[3])
t._fit(name, dataclasses.replace(t._configs(Path(sys.argv[1]))[name][0], **overrides))
"""


def _killed_run(parent: Path, name: str, **overrides) -> Path:
    """The run folder of ``name``'s tiny config with ``overrides`` trained in a child process until its fault hook."""
    proc = subprocess.run([sys.executable, "-c", _KILLED, str(parent), name, json.dumps(overrides)],
                          capture_output=True, text=True, timeout=300, env=subprocess_env())
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    (killed,) = [p.parent for p in parent.glob("*/checkpoint.pt")]
    return killed


@pytest.mark.slow
@pytest.mark.parametrize("sync", [1, 4])
def test_toy_killed_run_resumes_to_identical_weights(tmp_path, sync):
    killed = _killed_run(tmp_path / "k", "toy", fault_at_step=9, save_every_steps=4, sync_every_steps=sync)
    # read back every 4 steps: step 9 was pending when the process died (a crash loses it; the resume redoes it)
    rows_at_kill = 9 if sync == 1 else 8
    assert load_checkpoint(killed / "checkpoint.pt")["step"] == 8 and len(_rows(killed / "steps.csv")) == rows_at_kill
    assert fit(ToyConfig(run_parent=str(tmp_path / "k"), sync_every_steps=sync), "toy") == killed
    straight = fit(ToyConfig(run_parent=str(tmp_path / "s")), "toy")  # read back every step
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
def _fit(name: str, cfg) -> Path:
    """``fit`` with method ``name``; the supervised ones on :func:`test_ssl_supervised.tiny_data`."""
    from test_ssl_supervised import tiny_data

    cls = method_class(name)
    return fit(cfg, cls.for_config(cfg, tiny_data()) if "supervised" in name else cls)


@pytest.fixture
def fake_attention(monkeypatch):
    """The attention-supervised control with the fake recorder and box loss of test_ssl_supervised."""
    import rtsseg.ssl.attention_supervised as att
    from test_ssl_supervised import _FakeRecorder, _fake_box_loss

    monkeypatch.setattr(att, "_attention_parts", lambda: (_FakeRecorder, _fake_box_loss, _fake_box_loss))


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
def test_changed_identity_trains_a_new_run_and_an_unchanged_rerun_skips(tmp_path, fake_attention, capsys, name):
    torch.set_num_threads(1)
    cfg, knob, value = _configs(tmp_path)[name]
    first = _fit(name, cfg)
    assert load_checkpoint(first / "checkpoint.pt")["method"] == name
    stamp, steps = (first / "checkpoint.pt").stat().st_mtime_ns, (first / "steps.csv").read_text()
    capsys.readouterr()
    # operational knobs only: the same run, finished
    assert _fit(name, dataclasses.replace(cfg, progress=True, save_every_steps=1, sync_every_steps=3)) == first
    assert (first / "checkpoint.pt").stat().st_mtime_ns == stamp and (first / "steps.csv").read_text() == steps
    assert "finished run" in capsys.readouterr().err
    second = _fit(name, dataclasses.replace(cfg, **{knob: value}))
    assert second != first and load_checkpoint(second / "checkpoint.pt")["config"][knob] == value
    assert _rows(second / "steps.csv")[0]["step"] == "1"  # trained from scratch, not resumed


# ------------------------------------------------------------------ read back every N steps; compile
def _tensors(state, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint (modules, optimiser state, RNG states), by its path of keys."""
    if isinstance(state, torch.Tensor):
        return {prefix: state}
    items = state.items() if isinstance(state, dict) else enumerate(state) if isinstance(state, list | tuple) else ()
    return {k: v for key, value in items for k, v in _tensors(value, f"{prefix}/{key}").items()}


@pytest.mark.parametrize("name", ["toy", "barlow-twins", "dino", "supervised", "attention-supervised"])
def test_reading_back_every_4_steps_logs_the_same_rows_and_trains_the_same_weights(tmp_path, fake_attention, name):
    torch.set_num_threads(1)
    cfg = dataclasses.replace(_configs(tmp_path / "1")[name][0], epochs=2)  # toy 12 steps, the others 4
    each = _fit(name, cfg)
    every4 = _fit(name, dataclasses.replace(cfg, run_parent=str(tmp_path / "4"), sync_every_steps=4))
    assert every4.name == each.name  # operational: not part of the identity
    assert (every4 / "steps.csv").read_text() == (each / "steps.csv").read_text()  # every value, bit for bit
    strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]  # noqa: E731
    assert strip(_rows(every4 / "history.csv")) == strip(_rows(each / "history.csv"))
    a, b = (_tensors(load_checkpoint(r / "checkpoint.pt")) for r in (each, every4))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class _NaNAtStep(ToyMethod):
    """The toy whose loss at step 6 (0-based: the first of epoch 1) is NaN; the later ones follow."""

    def training_step(self, model, idx, step, ctx):
        loss, scalars = super().training_step(model, idx, step, ctx)
        return loss * float("nan") if step == 6 else loss, scalars


@pytest.mark.parametrize("sync", [1, 4])
def test_nonfinite_loss_is_reported_at_its_step_and_no_checkpoint_covers_it(tmp_path, sync):
    cfg = ToyConfig(run_parent=str(tmp_path), save_every_steps=2, sync_every_steps=sync)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 6 \(epoch 1\)"):
        fit(cfg, _NaNAtStep(cfg))
    (run,) = [p.parent for p in tmp_path.glob("*/nan_diagnostic.json")]
    diag = json.loads((run / "nan_diagnostic.json").read_text())
    assert list(diag) == ["step", "epoch", "loss", "lr", "abs_err", "parameters_finite", "last_checkpoint", "hint"]
    assert diag["step"] == 6 and diag["epoch"] == 1 and math.isnan(diag["loss"]) and math.isfinite(diag["abs_err"])
    # read back every step, step 6 stops before its backward; every 4, at step 7's read-back (step 6 has stepped)
    assert diag["parameters_finite"] is (sync == 1)
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 6  # after steps 0-5: the last save before step 6
    assert [r["step"] for r in _rows(run / "steps.csv")] == [str(i) for i in range(1, 7)]


def _losses(run: Path, steps: int) -> list[float]:
    return [float(r["loss"]) for r in _rows(run / "steps.csv")[:steps]]


@pytest.mark.slow
@pytest.mark.parametrize("name, trained, fault, save", [("toy", "Linear", 9, 4), ("barlow-twins", "BarlowTwins", 3, 2)])
def test_compiled_run_trains_close_to_eager_keeps_checkpoint_keys_and_resumes(tmp_path, monkeypatch, name, trained,
                                                                              fault, save):
    """Real inductor on the CPU. Compiled: the same first-epoch losses to rel 1e-5 (measured: the toy's equal,
    Barlow Twins' within 7e-7), the same checkpoint keys (no _orig_mod.), and a run killed by the fault hook
    resumes to the uninterrupted compiled run bit for bit."""
    torch.set_num_threads(1)
    compiled_modules, compile_ = [], torch.compile
    monkeypatch.setattr(torch, "compile", lambda m, **kw: compiled_modules.append((type(m).__name__, kw))
                        or compile_(m, **kw))
    cfg = dataclasses.replace(_configs(tmp_path / "eager")[name][0], epochs=2, save_every_steps=save)
    eager = _fit(name, cfg)
    killed = _killed_run(tmp_path / "killed", name, epochs=2, save_every_steps=save, compile="default",
                         fault_at_step=fault)
    assert _fit(name, dataclasses.replace(cfg, run_parent=str(tmp_path / "killed"), compile="default")) == killed
    straight = _fit(name, dataclasses.replace(cfg, run_parent=str(tmp_path / "straight"), compile="default"))
    assert compiled_modules == [(trained, {"mode": "default"})] * 2  # the trained module, once per compiled run
    assert straight.name == killed.name != eager.name  # compile is part of the identity
    a, c = load_checkpoint(eager / "checkpoint.pt"), load_checkpoint(straight / "checkpoint.pt")
    per_epoch = a["steps_per_epoch"]
    compiled = _losses(straight, 2 * per_epoch)
    assert all(math.isfinite(v) for v in compiled)
    assert compiled[:per_epoch] == pytest.approx(_losses(eager, per_epoch), rel=1e-5)
    assert _tensors(c).keys() == _tensors(a).keys() and not any("_orig_mod" in k for k in _tensors(c))
    r, s = (_tensors(load_checkpoint(p / "checkpoint.pt")) for p in (killed, straight))
    assert r.keys() == s.keys() and all(torch.equal(r[k], s[k]) for k in s)
    assert (killed / "steps.csv").read_text() == (straight / "steps.csv").read_text()


def test_engine_fields_fail_fast_in_one_line_naming_the_choices(tmp_path, capsys):
    for field, value, says in (("compile", "fast", repr(COMPILE_MODES)), ("sync_every_steps", 0, "integer >= 1")):
        with pytest.raises(ValueError, match=field) as err:
            fit(ToyConfig(run_parent=str(tmp_path), **{field: value}), "toy")
        assert says in str(err.value) and "\n" not in str(err.value)
    assert not any(tmp_path.iterdir())  # nothing written
    assert main(["toy", "--compile", "fast", "--run-parent", str(tmp_path)], prog="rtsseg pretrain") == 1
    assert capsys.readouterr().err == f"rtsseg pretrain: error: compile must be one of {COMPILE_MODES}, got 'fast'\n"


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
