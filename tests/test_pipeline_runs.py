"""The run side of the pipeline: fail fast with one line and status 2, the profile lock, running/ vs failed/,
--force, stale chapters and where each profile's book goes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types

import nbformat
import pytest

from rtsseg import cli, pipeline
from rtsseg.pipeline import RunRefused
from rtsseg.profiles import PROFILES, STEPS, Step


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("RTSSEG_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


def _main(capsys, *argv):
    code = cli.main(list(argv))
    err = capsys.readouterr().err
    return code, err


def test_gpu_profile_without_cuda_refuses_with_the_fix(runs, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, err = _main(capsys, "run", "--profile", "gpu", "--no-book")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "no CUDA" in err and "--profile cpu" in err and "--allow-cpu" in err
    with pytest.raises(RunRefused, match="unknown profile"):
        pipeline.preflight("laptop")
    pipeline.preflight("gpu", allow_cpu=True)  # the explicit override passes


def test_unknown_step_and_zero_epochs_are_one_line_errors(runs, capsys):
    code, err = _main(capsys, "run", "--profile", "smoke", "--step", "99", "--no-book")
    assert pipeline._resolve("2") == pipeline._resolve("02") == "02_pretrain_barlow_twins"
    assert code == 2 and "unknown step '99'" in err and "01_data" in err and err.count("\n") == 1
    code, err = _main(capsys, "run", "--profile", "smoke", "--step", "02", "-p", "epochs=0", "--no-book")
    assert code == 2 and "epochs=0 must be at least 1" in err and err.count("\n") == 1
    code, err = _main(capsys, "run", "--profile", "smoke", "--step", "02", "-p", "epochs=-3", "--no-book")
    assert code == 2 and "epochs=-3" in err


def test_unwritable_runs_folder_is_named(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("RTSSEG_RUNS", str(blocker / "runs"))  # a folder below a file cannot be created
    code, err = _main(capsys, "run", "--profile", "smoke", "--step", "01", "--no-book")
    assert code == 2 and f"cannot write to {blocker / 'runs'}" in err and "RTSSEG_RUNS" in err
    if os.getuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        with pytest.raises(RunRefused, match="cannot write to"):
            pipeline.check_writable(ro)


def test_cli_choices_follow_profiles(monkeypatch):
    monkeypatch.setitem(PROFILES, "gpu-short", PROFILES["gpu"])
    args = cli.build_parser().parse_args(["run", "--profile", "gpu-short", "--force", "--allow-cpu", "--step", "02"])
    assert args.profile == "gpu-short" and args.force and args.allow_cpu and args.step == ["02"]
    assert pipeline.needs_cuda("gpu-short") and not pipeline.needs_cuda("cpu")
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["run", "--profile", "laptop"])


@pytest.mark.slow
def test_second_run_of_a_profile_fails_at_once_naming_the_first(runs, capsys):
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys, time
            from rtsseg.pipeline import profile_lock
            with profile_lock("smoke"):
                print("locked", flush=True)
                sys.stdin.readline()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=os.environ.copy(),
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunRefused, match=rf"another run \(pid {holder.pid}\) is using .*smoke/.lock"):
            with pipeline.profile_lock("smoke"):
                pass
        code, err = _main(capsys, "run", "--profile", "smoke", "--step", "01", "--no-book")
        assert code == 2 and f"another run (pid {holder.pid})" in err
        with pipeline.profile_lock("cpu"):  # other profiles are free
            pass
    finally:
        holder.communicate("\n", timeout=30)
    with pipeline.profile_lock("smoke"):  # released when the first run ends
        pass


def _fake_step(tmp_path, monkeypatch, body: str) -> Step:
    src = tmp_path / "nb" / "s.py"
    src.parent.mkdir(exist_ok=True)
    src.write_text('# %% tags=["parameters"]\nprofile = "cpu"\n\n# %%\n' + body + "\n")
    monkeypatch.setattr(Step, "source", property(lambda self: src))
    monkeypatch.setitem(PROFILES["smoke"], "s", {})
    monkeypatch.setattr(pipeline, "executed_notebook", lambda profile, name: tmp_path / "book" / profile / f"{name}.ipynb")
    return Step("s")


@pytest.mark.slow
def test_a_running_step_is_under_running_and_only_a_failed_one_under_failed(runs, tmp_path, monkeypatch):
    check = (
        "import os, pathlib\n"
        "smoke = pathlib.Path(os.environ['RTSSEG_RUNS']) / 'smoke'\n"
        "assert (smoke / 'running' / 's.ipynb').is_file(), list(smoke.rglob('*'))\n"
        "assert not (smoke / 'failed').exists()\n"
        "if os.environ.get('FAIL_NOW'): raise ValueError('planted failure')"
    )
    step = _fake_step(tmp_path, monkeypatch, check)
    result, _ = pipeline.run_step("smoke", step)
    assert result.status == "ran" and result.output.is_file()
    assert not (runs / "smoke" / "running" / "s.ipynb").exists()
    monkeypatch.setenv("FAIL_NOW", "1")
    with pytest.raises(pipeline.StepFailed, match="planted failure"):
        pipeline.run_step("smoke", step, force=True)
    assert (runs / "smoke" / "failed" / "s.ipynb").is_file() and not (runs / "smoke" / "running" / "s.ipynb").exists()


@pytest.mark.slow
def test_the_parameters_table_and_run_record_show_every_value_the_step_ran_with(runs, tmp_path, monkeypatch):
    step = _fake_step(tmp_path, monkeypatch, "x = 1")
    src = step.source.read_text().replace('profile = "cpu"\n', 'profile = "cpu"\nlr = 0.002\nseeds = [0, 1]\n')
    step.source.write_text(src)
    monkeypatch.setitem(PROFILES["smoke"], "s", {"seeds": [0]})
    result, _ = pipeline.run_step("smoke", step)
    nb = nbformat.read(result.output, as_version=4)
    table = next(c.source for c in nb.cells if "parameters-table" in c.metadata.get("tags", []))
    assert "| `lr` | `0.002` |" in table  # a default the profile does not set
    assert "| `seeds` | `[0]` |" in table and "[0, 1]" not in table  # the profile's value, not the default
    meta = nb.metadata["rtsseg"]
    assert meta["params"] == {"profile": "smoke", "lr": 0.002, "seeds": [0]}
    assert meta["injected"] == {"profile": "smoke", "seeds": [0]}


def test_force_clears_the_steps_runs_inside_the_runs_folder_only(runs, tmp_path, monkeypatch):
    inside = runs / "smoke" / "pretrain"
    (inside / "vit_seed0").mkdir(parents=True)
    (inside / "vit_seed0" / "checkpoint.pt").write_text("x")
    fake = types.ModuleType("rtsseg.experiments")
    fake.step_run_parents = lambda profile, step: [inside, runs / "smoke" / "absent"] if step.startswith("02") else []
    monkeypatch.setitem(sys.modules, "rtsseg.experiments", fake)
    assert pipeline.clear_step_runs("smoke", "02_pretrain_barlow_twins") == [inside]
    assert not inside.exists() and (runs / "smoke").is_dir()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    fake.step_run_parents = lambda profile, step: [outside]
    with pytest.raises(RunRefused, match="outside"):
        pipeline.clear_step_runs("smoke", "02_pretrain_barlow_twins")
    assert outside.is_dir()


def _executed(path, fingerprint, end, upstream=None):
    nb = nbformat.v4.new_notebook()
    nb.metadata["papermill"] = {"end_time": end}
    nb.metadata["rtsseg"] = {"fingerprint": fingerprint, **({"upstream": upstream} if upstream is not None else {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def test_book_refuses_chapters_older_than_their_upstream(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "executed_notebook", lambda profile, name: tmp_path / profile / f"{name}.ipynb")
    for i, s in enumerate(STEPS):
        _executed(tmp_path / "p" / f"{s.name}.ipynb", f"fp{s.name[:2]}", f"2026-01-01T00:{10 + i}:00",
                  {d: f"fp{d[:2]}" for d in s.depends})
    assert pipeline.stale_chapters("p") == []
    # step 02 rerun later with another result: 05, 06, 07, 08 were computed from the old one
    _executed(tmp_path / "p" / "02_pretrain_barlow_twins.ipynb", "fpNEW", "2026-01-01T01:00:00")
    stale = {c for c, dep, _ in pipeline.stale_chapters("p")}
    assert stale == {"05_attention_maps", "06_embeddings", "07_segmentation", "08_findings"}
    with pytest.raises(RunRefused, match=r"older than .* Fix: rtsseg run --profile p --step 05 --step 06 --step 07 --step 08"):
        pipeline.build_book("p")
    # notebooks without recorded upstream fingerprints: compared by when they finished
    _executed(tmp_path / "q" / "01_data.ipynb", "a", "2026-01-01T00:30:00")
    _executed(tmp_path / "q" / "08_findings.ipynb", "b", "2026-01-01T00:20:00")
    assert [c for c, _, _ in pipeline.stale_chapters("q")] == ["08_findings"]
    with pytest.raises(RunRefused, match=r"no executed notebook .* Fix: rtsseg run --profile q --step 02 --step 03"):
        pipeline.build_book("q")


def test_only_the_cpu_book_goes_to_book_build(runs):
    assert pipeline.book_output("cpu") == pipeline.BOOK
    assert pipeline.book_output("smoke") == runs / "smoke" / "book"


def test_training_seconds_sum_the_histories_of_the_runs_a_chapter_names(runs):
    """A training chapter that loads runs finished under the same identity runs in seconds; the time those runs
    took to train (the last wall_s of each history, resumes included) is what the compute budget shows beside it."""
    from rtsseg.experiments import run_parent

    for (init, backbone, seed), walls in {("barlow twins", "vit_small64", 0): [0.0, 600.5, 1200.0],
                                          ("attention-supervised", "vit_small64", 1): [5.0, 300.0]}.items():
        folder = run_parent("cpu", init, backbone, seed) / "abc123"
        folder.mkdir(parents=True)
        (folder / "history.csv").write_text("epoch,step,wall_s\n" + "".join(f"{i},{i},{w}\n" for i, w in enumerate(walls)))
    trained = {"barlow twins/vit_small64/0": "abc123", "attention-supervised/vit_small64/1": "abc123"}
    assert pipeline.training_seconds("cpu", trained) == 1500.0
    with pytest.raises(FileNotFoundError, match="supervised/vit_small64/0 has no history. Fix: train it again"):
        pipeline.training_seconds("cpu", {"supervised/vit_small64/0": "gone"})
