"""A run folder belongs to one configuration: a changed knob retrains in a new folder, an unchanged rerun skips."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from model_fakes import register_fakes
from rtsseg.checkpoint import load_checkpoint
from rtsseg.rundir import latest_run, list_runs
from rtsseg.ssl import method as method_module
from rtsseg.ssl import train as bt
from rtsseg.ssl.train import PretrainConfig, pretrain

register_fakes()


def _cfg(parent: Path, **kw) -> PretrainConfig:
    base = dict(backbone="tiny_test", data="synthetic", synthetic_images=16, batch_size=8, epochs=1,
                projector_dims=(8, 8), warmup_epochs=0, knn_train_per_class=2, knn_val_per_class=1, device="cpu",
                progress=False, num_threads=1, run_parent=str(parent), amp="none")
    return PretrainConfig(**{**base, **kw})


@pytest.mark.slow
def test_changed_knobs_retrain_in_new_folders_and_an_unchanged_rerun_skips(tmp_path: Path, capsys):
    torch.set_num_threads(1)
    first = pretrain(_cfg(tmp_path))
    ckpt = load_checkpoint(first / "checkpoint.pt")
    assert ckpt["step"] == 2 and ckpt["config"]["lambd"] == 0.0051 and ckpt["run_identity"] == first.name
    stamp, steps = (first / "checkpoint.pt").stat().st_mtime_ns, (first / "steps.csv").read_text()

    again = pretrain(_cfg(tmp_path, progress=True, num_threads=2, save_every_steps=1))  # runtime knobs only
    assert again == first and (first / "checkpoint.pt").stat().st_mtime_ns == stamp
    assert (first / "steps.csv").read_text() == steps and "finished run" in capsys.readouterr().err

    changes = dict(lambd=0.01, epochs=2, projector_dims=(16, 8), batch_size=4, seed=1)
    folders = {first}
    for name, value in changes.items():
        run = pretrain(_cfg(tmp_path, **{name: value}))
        state = load_checkpoint(run / "checkpoint.pt")
        assert run not in folders, name  # a new folder: the old run is never resumed
        assert state["config"][name] == (list(value) if isinstance(value, tuple) else value)
        assert int((run / "steps.csv").read_text().splitlines()[1].split(",")[0]) == 1, name  # trained from step 1
        folders.add(run)
        assert latest_run(tmp_path) == run
    index = list_runs(tmp_path)
    assert set(index) == {f.name for f in folders} and all(v["status"] == "done" for v in index.values())


def test_changed_training_code_retrains(tmp_path: Path, monkeypatch):
    torch.set_num_threads(1)
    first = pretrain(_cfg(tmp_path))
    monkeypatch.setattr(method_module, "code_digest", lambda *mods: "edited-source")
    second = pretrain(_cfg(tmp_path))
    assert second != first and load_checkpoint(second / "checkpoint.pt")["code_digest"] == "edited-source"


def test_restart_retrains_the_same_folder(tmp_path: Path):
    torch.set_num_threads(1)
    first = pretrain(_cfg(tmp_path))
    stamp = (first / "checkpoint.pt").stat().st_mtime_ns
    assert pretrain(_cfg(tmp_path, restart=True)) == first
    assert (first / "checkpoint.pt").stat().st_mtime_ns != stamp


def test_bad_config_fails_fast_naming_the_parameter(tmp_path: Path):
    for field, value in (("epochs", 0), ("optimizer", "sgd"), ("amp", "fast"), ("warmup_epochs", -1.0),
                         ("compile", "fast"), ("sync_every_steps", 0)):
        with pytest.raises(ValueError, match=field):
            pretrain(_cfg(tmp_path, **{field: value}))
    assert not any(tmp_path.iterdir())  # nothing written


def test_runtime_fields_are_not_part_of_the_identity():
    cfg = _cfg(Path("/x"))
    ident = cfg.identity()
    assert "run_parent" not in ident and "device" not in ident and "lambd" in ident
    assert set(ident) | set(bt.RUNTIME_FIELDS) == {f.name for f in dataclasses.fields(PretrainConfig)}


@pytest.mark.slow
def test_a_second_trainer_on_a_locked_run_fails_at_once_with_the_pid(tmp_path: Path):
    import os
    import subprocess
    import sys

    from model_fakes import subprocess_env
    from rtsseg.configargs import config_from_args
    from rtsseg.rundir import open_run
    from rtsseg.ssl.engine import run_config

    args = ["barlow-twins", "--backbone", "model_fakes:TinyBackbone", "--data", "synthetic", "--synthetic-images", "16",
            "--batch-size", "8", "--epochs", "1", "--projector-dims", "8", "8", "--device", "cpu", "--no-progress",
            "--run-parent", str(tmp_path)]
    cfg = config_from_args(PretrainConfig, args[1:], "test")
    method = bt.BarlowTwinsMethod(cfg)  # the identity the engine gives this command line's run
    with open_run(method.run_parent(), run_config(method, "cpu"), method.code()) as held:  # this process trains it
        proc = subprocess.run([sys.executable, "-m", "rtsseg.cli", "pretrain", *args], capture_output=True,
                              text=True, timeout=120, env=subprocess_env())
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert f"another run (pid {os.getpid()}) is using {held.path}" in proc.stderr
    assert "Traceback" not in proc.stderr and not (held.path / "checkpoint.pt").exists()
