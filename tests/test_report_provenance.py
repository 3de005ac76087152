"""Results keep their two-level headers through save/read; the commit is marked dirty exactly when sources differ."""

from __future__ import annotations

import subprocess

import numpy as np
import pandas as pd

from rtsseg import report


def test_results_keep_multiindex(tmp_path, monkeypatch):
    monkeypatch.setenv("RTSSEG_RUNS", str(tmp_path / "runs"))
    cols = pd.MultiIndex.from_product([["best head", "mIoU"], ["random", "barlow twins"]], names=["metric", "init"])
    idx = pd.Index(["vit_tiny", "botnet"], name="backbone")
    table = pd.DataFrame([["1.0 ± 0.1 (n=2)", "2.0 (n=1)", 3.5, np.nan], ["a", "b", 4.0, 5.25]], index=idx, columns=cols)
    report.save_results("smoke", "attention", table)
    back = report.read_results("smoke")["attention"]
    pd.testing.assert_frame_equal(back, table, check_dtype=False)
    assert back.columns.nlevels == 2 and list(back.columns.names) == ["metric", "init"]
    assert "backbone" not in back.index  # the CSV round trip used to add a spurious "backbone NaN" row
    assert not any("Unnamed" in str(c) or ".1" in str(c) for c in back.columns.to_flat_index())


def test_results_multiindex_rows(tmp_path, monkeypatch):
    monkeypatch.setenv("RTSSEG_RUNS", str(tmp_path / "runs"))
    idx = pd.MultiIndex.from_tuples([("tin", "vit"), ("camvid", "vit")], names=["ground truth", "backbone"])
    table = pd.DataFrame({"bt − random": ["1.0 ± 0.5 (n=3)", "-0.2 ± 0.1 (n=3)"]}, index=idx)
    report.save_results("smoke", "deltas", table)
    pd.testing.assert_frame_equal(report.read_results("smoke")["deltas"], table)


def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"})


def test_git_commit_dirty_exactly_when_sources_change(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "rtsseg").mkdir(parents=True)
    (repo / "rtsseg" / "a.py").write_text("x = 1\n")
    (repo / ".gitignore").write_text("runs/\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "c")
    monkeypatch.setattr(report, "REPO_ROOT", repo)
    clean = report._git_commit()
    assert "+dirty" not in clean and len(clean) == 12
    (repo / "book" / "cpu").mkdir(parents=True)  # outputs written during a profile run: still clean
    (repo / "book" / "cpu" / "02.ipynb").write_text("{}")
    (repo / "runs").mkdir()
    (repo / "runs" / "ckpt.pt").write_text("")
    assert report._git_commit() == clean
    (repo / "requirements.txt").write_text("torch\n")  # a new untracked source outside rtsseg/: dirty
    assert report._git_commit() == clean + "+dirty"
    (repo / "requirements.txt").unlink()
    (repo / "rtsseg" / "a.py").write_text("x = 2\n")  # a modified tracked source: dirty
    assert report._git_commit() == clean + "+dirty"


def test_git_commit_outside_a_checkout(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "REPO_ROOT", tmp_path)  # not a git repository: pip's record, else "unknown"
    monkeypatch.setattr(report, "_installed_commit", lambda: "0123456789ab")
    assert report._git_commit() == "0123456789ab"
