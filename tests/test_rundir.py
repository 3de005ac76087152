"""Run folders: identity from (config, code), locks across processes, restart, latest finished run."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from rtsseg.errors import NoRunError, RunLockedError, RunMismatchError
from rtsseg.rundir import code_digest, latest_run, list_runs, open_run, run_identity

REPO = Path(__file__).resolve().parents[1]


def test_identity_follows_config_and_code(tmp_path: Path):
    cfg = {"lambd": 0.0051, "dims": (16, 16), "seed": 0}
    a = run_identity(cfg, "c1")
    assert a == run_identity({"seed": 0, "dims": [16, 16], "lambd": 0.0051}, "c1")  # order, tuple vs list
    assert len(a) == 12 and int(a, 16) >= 0
    assert a != run_identity({**cfg, "lambd": 0.01}, "c1") and a != run_identity(cfg, "c2")


def test_code_digest_covers_the_sources(tmp_path: Path, monkeypatch):
    pkg = tmp_path / "fakepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text("x = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    d1 = code_digest("fakepkg")
    assert d1 == code_digest("fakepkg") and len(d1) == 64
    (pkg / "mod.py").write_text("x = 2\n")
    assert code_digest("fakepkg") != d1
    assert code_digest("rtsseg.sampling") != code_digest("rtsseg.schedule")
    with pytest.raises(ModuleNotFoundError):
        code_digest("rtsseg.no_such_module")


def test_save_load_finish_latest_and_index(tmp_path: Path):
    with pytest.raises(NoRunError, match="rtsseg run"):
        latest_run(tmp_path, "rtsseg run --step 02")
    with open_run(tmp_path, {"a": 1}, "c") as run:
        assert run.load() is None and run.path == tmp_path / run.identity
        run.save({"w": torch.ones(2), "step": 3})
        state = run.load()
        assert state["step"] == 3 and state["run_identity"] == run.identity and state["config"] == {"a": 1}
        run.append_history("h.csv", {"epoch": 0, "loss": 1.0}, ["epoch", "loss"])
        run.append_history("h.csv", {"epoch": 1, "loss": 0.5}, ["epoch", "loss"])
        run.truncate_history("h.csv", lambda r: int(r["epoch"]) < 1)
        assert run.read_history("h.csv") == [{"epoch": "0", "loss": "1.0"}]
        run.finish()
    assert latest_run(tmp_path) == run.path
    assert json.loads((run.path / "config.json").read_text())["config"] == {"a": 1}
    assert list_runs(tmp_path)[run.identity]["status"] == "done"
    with open_run(tmp_path, {"a": 2}, "c") as other:  # a second config: a second folder, still stopped
        assert other.path != run.path
    assert list_runs(tmp_path)[other.identity]["status"] == "stopped"
    assert latest_run(tmp_path) == run.path


def test_foreign_checkpoint_is_never_resumed_and_restart_wipes(tmp_path: Path):
    with open_run(tmp_path, {"a": 1}, "c") as run:
        run.save({"step": 1})
        run.append_history("h.csv", {"x": 1}, ["x"])
    with open_run(tmp_path, {"a": 2}, "c") as other:  # plant run 1's checkpoint into run 2's folder
        (other.path / "checkpoint.pt").write_bytes(run.checkpoint.read_bytes())
        with pytest.raises(RunMismatchError, match="--restart"):
            other.load()
    with open_run(tmp_path, {"a": 1}, "c", restart=True) as again:
        assert again.load() is None and not (again.path / "h.csv").exists()


@pytest.mark.slow
def test_second_process_on_the_same_run_fails_at_once(tmp_path: Path):
    code = textwrap.dedent(f"""
        import sys, time
        from rtsseg.rundir import open_run
        run = open_run({str(tmp_path)!r}, {{"a": 1}}, "c")
        print(run.path, flush=True)
        sys.stdin.readline()  # hold the lock until the test says so
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        path = holder.stdout.readline().strip()
        assert path, "the first process did not open its run"
        second = subprocess.run([sys.executable, "-c", code], cwd=REPO, input="\n", capture_output=True, text=True,
                                timeout=60)
        assert second.returncode != 0
        assert f"another run (pid {holder.pid}) is using {path}" in second.stderr
        with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
            open_run(tmp_path, {"a": 1}, "c")
    finally:
        holder.communicate("\n", timeout=60)
    with open_run(tmp_path, {"a": 1}, "c") as run:  # released when the holder exits
        assert str(run.path) == path


def test_exclusive_folder_lock(tmp_path: Path):
    from rtsseg.rundir import exclusive

    with exclusive(tmp_path / "cpu") as folder:
        with pytest.raises(RunLockedError, match=r"another run \(pid \d+\) is using .*cpu"):
            with exclusive(folder):
                pass
    with exclusive(tmp_path / "cpu"):  # released
        pass
