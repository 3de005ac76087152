"""Spread over seeds, and the results records the summary chapter reads."""

from __future__ import annotations

import pandas as pd
import pytest

from rtsseg import report
from rtsseg.stats import mean_std, seed_table


def test_mean_std_uses_sample_std():
    assert mean_std([1.0, 3.0]) == "2.0 ± 1.4 (n=2)"
    assert mean_std([0.5], decimals=2) == "0.50 (n=1)"
    with pytest.raises(ValueError):
        mean_std([])


def test_seed_table_pivots_and_refuses_duplicates():
    rows = [
        {"backbone": "vit", "init": "bt", "seed": 0, "acc": 0.1},
        {"backbone": "vit", "init": "bt", "seed": 1, "acc": 0.3},
        {"backbone": "vit", "init": "random", "seed": 0, "acc": 0.05},
    ]
    table = seed_table(rows, "backbone", "init", "acc")
    assert table.loc["vit", "bt"] == "20.0 ± 14.1 (n=2)"
    assert table.loc["vit", "random"] == "5.0 (n=1)"
    with pytest.raises(ValueError, match="several runs"):
        seed_table(rows + [rows[0]], "backbone", "init", "acc")


def test_results_roundtrip(tmp_path, monkeypatch):
    monkeypatch.setenv("RTSSEG_RUNS", str(tmp_path / "runs"))
    report.save_results("smoke", "t", pd.DataFrame({"a": [1.5]}, index=["x"]))
    assert report.read_results("smoke")["t"].loc["x", "a"] == 1.5


def test_notebook_params_rejects_bad_values():
    from rtsseg.params import NotebookParameterError

    ns = {"profile": "cpu", "data_root": None, "seed": 0, "n_examples": 4}
    assert report.notebook_params(ns, "01_data") == ns
    with pytest.raises(NotebookParameterError, match="n_examples"):
        report.notebook_params({**ns, "n_examples": "4"}, "01")
    with pytest.raises(NotebookParameterError, match="profile='laptop'"):
        report.notebook_params({**ns, "profile": "laptop"}, "01")


def test_notebook_params_without_notebook_sources(monkeypatch, tmp_path):
    """Installed from git (Colab), rtsseg has no notebooks/: the run record still gets the parameters it can name."""
    monkeypatch.setattr("rtsseg.profiles.NOTEBOOKS", tmp_path)
    ns = {"profile": "smoke", "data_root": None, "seed": 0, "n_examples": 2, "other": 1}
    assert report.notebook_params(ns, "01_data") == {"data_root": None, "profile": "smoke", "seed": 0, "n_examples": 2}
