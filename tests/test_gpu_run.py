"""scripts/gpu_run.sh --dry-run: the GPU script end to end on CPU at smoke scale (packs, papermill, shipping)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from rtsseg.config import REPO_ROOT
from rtsseg.profiles import PROFILES, STEPS

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import gpu_run  # noqa: E402


def test_gpu_short_covers_every_step():
    """Its parameters are checked against the notebooks by test_pipeline (every profile)."""
    assert set(PROFILES["gpu-short"]) == {s.name for s in STEPS}
    assert PROFILES["gpu-short"]["02_pretrain_barlow_twins"]["epochs"] >= 100  # the floor for the main run


@pytest.mark.slow
def test_run_capped_kills_the_step_and_its_kernel(tmp_path):
    """A child in a session of its own (as jupyter_client starts a kernel) is killed with the step."""
    pid_file = tmp_path / "pid"
    script = f"import os, subprocess, time; p = subprocess.Popen(['sleep', '60'], start_new_session=True); " \
             f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(60)"
    t0 = time.time()
    rc, wall, timed_out = gpu_run.run_capped([sys.executable, "-c", script], 3)
    assert timed_out and rc == 124 and wall < 40 and time.time() - t0 < 40
    kernel = int(pid_file.read_text())
    time.sleep(0.5)
    state = Path(f"/proc/{kernel}/stat")
    assert not state.exists() or state.read_text().rsplit(")", 1)[1].split()[0] == "Z"  # gone (or a zombie)


@pytest.mark.slow
def test_dry_run_ships_notebooks_and_timings(tmp_path):
    """The smoke profile's first step through the real script: packs, kernel, papermill, $OUT (a step that
    trains takes minutes on 2 shared cores; the pack loaders of the training steps are tested in test_data_pack)."""
    from rtsseg.config import data_root

    source = data_root(must_exist=False)
    if not ((source / "tiny-imagenet-200").is_dir() and (source / "camvid").is_dir()):
        pytest.skip("no shared data to pack (set RTSSEG_DATA)")
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "RTSSEG_RUNS": str(tmp_path / "runs"), "PYTHON": sys.executable,
           "OMP_NUM_THREADS": "2", "MPLBACKEND": "Agg"}
    proc = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "gpu_run.sh"), "--dry-run", "--steps", "01",
                           "--bench-s", "0"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    timings = json.loads((out / "timings.json").read_text())
    assert [t["status"] for t in timings["steps"].values()] == ["ok"]
    assert timings["env"]["data_root"].endswith("dry-run-packs") and "torch" in timings["env"]
    with tarfile.open(out / "notebooks.tar.gz") as tar:
        names = tar.getnames()
    assert "book/smoke/01_data.ipynb" in names and "runs/smoke/done/01_data.json" in names
    with tarfile.open(out / "notebooks.tar.gz") as tar:
        nb = json.load(tar.extractfile("book/smoke/01_data.ipynb"))
    # figures are glued (myst-nb's mime type) or shown inline: either way a PNG must be in the outputs
    figures = [o for c in nb["cells"] for o in c.get("outputs", [])
               if {"image/png", "application/papermill.record/image/png"} & set(o.get("data", {}))]
    assert figures, "figures must render (MPLBACKEND must not be forced to Agg)"
    assert "data root:" in (out / "log.txt").read_text() or "gpu_run: set-up took" in (out / "log.txt").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["env.json", "log.txt", "notebooks.tar.gz", "timings.json"]


def test_cpu_book_shows_the_gpu_edition_once_executed(tmp_path, monkeypatch):
    import yaml

    import rtsseg.pipeline as pipeline

    monkeypatch.setenv("RTSSEG_RUNS", str(tmp_path))
    assert pipeline.toc_for("cpu") == REPO_ROOT / "_toc.yml" or (REPO_ROOT / "book" / "gpu-short").is_dir()
    fake = tmp_path / "nb.ipynb"
    fake.write_text("{}")
    monkeypatch.setattr(pipeline, "executed_notebook", lambda profile, name: fake)
    toc = yaml.safe_load(pipeline.toc_for("cpu").read_text())
    captions = [part["caption"] for part in toc["parts"]]
    assert captions[1].startswith("GPU edition") and captions[-1] == "Project"
    files = [c["file"] for c in toc["parts"][1]["chapters"]]
    assert files == ["book/gpu-short/index"] + [f"book/gpu-short/{s.name}" for s in STEPS]
    assert [c["file"] for c in toc["parts"][0]["chapters"]] == [f"book/cpu/{s.name}" for s in STEPS]


def test_cpu_book_lists_only_the_executed_chapters_of_another_edition(tmp_path, monkeypatch):
    import yaml

    import rtsseg.pipeline as pipeline

    monkeypatch.setenv("RTSSEG_RUNS", str(tmp_path))
    fake = tmp_path / "nb.ipynb"
    fake.write_text("{}")
    ran = {("cpu", s.name) for s in STEPS} | {("gpu-short", "01_data"), ("gpu-short", "05_attention_maps")}
    monkeypatch.setattr(pipeline, "executed_notebook",
                        lambda profile, name: fake if (profile, name) in ran else tmp_path / "absent.ipynb")
    assert pipeline.extra_editions() == ["gpu-short"]
    toc = yaml.safe_load(pipeline.toc_for("cpu").read_text())
    files = [c["file"] for c in toc["parts"][1]["chapters"]]
    assert files == ["book/gpu-short/index", "book/gpu-short/01_data", "book/gpu-short/05_attention_maps"]
    monkeypatch.setattr(pipeline, "executed_notebook", lambda profile, name: fake if profile == "cpu" else
                        tmp_path / "absent.ipynb")
    assert pipeline.extra_editions() == [] and pipeline.toc_for("cpu") == REPO_ROOT / "_toc.yml"


def test_the_result_files_come_back_in_the_archive(tmp_path, monkeypatch):
    """What the CPU needs after a GPU run comes back in the archive: results tables and chapter 5's per-image
    scores (.npz) of runs/<profile>/results, and nothing else from there."""
    import numpy as np

    runs = tmp_path / "runs"
    monkeypatch.setenv("RTSSEG_RUNS", str(runs))
    results = runs / "ship-test" / "results"
    results.mkdir(parents=True)
    (results / "segmentation_camvid_runs.csv").write_text("decoder,mIoU\nlinear,0.2\n")
    np.savez_compressed(results / "attention_per_image.npz", a=np.zeros((3, 2000, 6), np.float16))
    (results / "scratch.txt").write_text("not a result")
    out = tmp_path / "out"
    out.mkdir()
    assert gpu_run.ship_notebooks("ship-test", out) == ["notebooks.tar.gz"]
    with tarfile.open(out / "notebooks.tar.gz") as tar:
        got = tar.getnames()
    assert sorted(got) == ["runs/ship-test/results/attention_per_image.npz",
                           "runs/ship-test/results/segmentation_camvid_runs.csv"]
