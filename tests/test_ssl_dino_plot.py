"""DINO chapter helpers: collapse verdicts, the run summary, the history figure."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import pandas as pd
import pytest

from rtsseg.ssl.dino_plot import collapse_state, plot_dino_history, summarize_dino


def test_collapse_state():
    k = 1024
    assert collapse_state(math.log(k) - 0.01, 0.001, k) == "uniform collapse"
    assert collapse_state(0.01, 0.001, k) == "one-hot collapse"
    assert collapse_state(3.0, 0.5, k) == "no collapse"
    assert collapse_state(math.log(k), 0.5, k) == "no collapse"  # uniform teacher, student still far from it


def _history(acc0, acc1):
    return pd.DataFrame({"epoch": [0, 1], "knn_acc": [acc0, acc1], "loss": [8.0, 7.0], "teacher_entropy": [6.0, 5.0],
                         "kl": [1.0, 0.8]})


def test_summarize_and_plot():
    hs = {0: _history(0.01, 0.05), 1: _history(0.03, 0.07)}
    s = summarize_dino(hs, 4096)
    assert s["knn_before"][0] == pytest.approx(2.0) and s["knn_after"][0] == pytest.approx(6.0)
    assert s["knn_after"][1] == pytest.approx(math.sqrt(2))  # sample std of 5 and 7
    assert s["epochs"] == 1 and s["collapse"] == ["no collapse"] * 2 and s["log_k"] == pytest.approx(math.log(4096))
    fig = plot_dino_history(hs, out_dim=4096, title="t")
    assert len(fig.axes) == 4
    assert all(ax.title.get_fontsize() >= 10 for ax in fig.axes)
