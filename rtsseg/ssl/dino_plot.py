"""Figures and the numbers of the DINO pretraining chapter: k-NN curve, loss, collapse monitors.

Collapse monitors as in the DINO paper (Fig. 7): the entropy H(P_t) of the teacher's output distribution
(log K = every image gets the uniform distribution: "uniform" collapse; 0 = one prototype for every image:
"one-hot" collapse) and KL(P_t || P_s) between teacher and student (0 = the student has nothing left to
learn, which both collapses produce).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

_PANELS = (
    ("knn_acc", "k-NN top-1, teacher backbone (%)"),
    ("loss", "DINO loss (monitor crops)"),
    ("teacher_entropy", "teacher entropy H(P_t) (nats)"),
    ("kl", "KL(P_t || P_s) (nats)"),
)


def plot_dino_history(
    histories: pd.DataFrame | Mapping[object, pd.DataFrame], out_dim: int | None = None, title: str | None = None
) -> plt.Figure:
    """One panel per monitored quantity against epoch, one line per run (e.g. seed); ``out_dim`` draws log K
    (uniform collapse) on the entropy panel. Fonts >= 10 pt."""
    runs = {"": histories} if isinstance(histories, pd.DataFrame) else dict(histories)
    if not runs:
        raise ValueError("plot_dino_history needs at least one history")
    nrows = -(-len(_PANELS) // 2)  # two panels per row at the book's 8-inch page width
    fig, axes = plt.subplots(nrows, 2, figsize=(8.0, 2.9 * nrows + (0.4 if title else 0.0)), squeeze=False)
    axes = axes.flatten()
    for ax, (col, label) in zip(axes, _PANELS):
        for name, df in runs.items():
            y = 100 * df[col] if col == "knn_acc" else df[col]
            ax.plot(df["epoch"], y, marker="o", ms=4, label=f"seed {name}" if name != "" else None)
        if col == "teacher_entropy" and out_dim:
            ax.axhline(math.log(out_dim), color="grey", ls="--", lw=1)
            ax.text(0.02, 0.93, f"log K = {math.log(out_dim):.2f}: uniform", transform=ax.transAxes, fontsize=10,
                    va="top", color="grey")
        ax.set_title(label, fontsize=11)
        ax.set_xlabel("epoch", fontsize=10)
        ax.tick_params(labelsize=10)
    if len(runs) > 1:
        axes[0].legend(fontsize=10)
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return fig


def collapse_state(teacher_entropy: float, kl: float, out_dim: int, tol: float = 0.05) -> str:
    """``"uniform collapse"`` when H(P_t) is within ``tol`` x log K of log K and KL < ``tol``; ``"one-hot
    collapse"`` when H(P_t) < ``tol`` x log K and KL < ``tol``; else ``"no collapse"``."""
    log_k = math.log(out_dim)
    if kl < tol and teacher_entropy > (1 - tol) * log_k:
        return "uniform collapse"
    if kl < tol and teacher_entropy < tol * log_k:
        return "one-hot collapse"
    return "no collapse"


def summarize_dino(histories: Mapping[int, pd.DataFrame], out_dim: int) -> dict:
    """Mean and std over runs of the k-NN accuracy (%) before / after, the final monitors and the collapse
    verdicts (one per run)."""
    first = [df.iloc[0] for df in histories.values()]
    last = [df.iloc[-1] for df in histories.values()]

    def ms(values):
        v = np.asarray(values, dtype=float)
        return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan")

    return {
        "n_runs": len(last),
        "epochs": int(last[0]["epoch"]),
        "knn_before": ms([100 * r["knn_acc"] for r in first]),
        "knn_after": ms([100 * r["knn_acc"] for r in last]),
        "teacher_entropy": ms([r["teacher_entropy"] for r in last]),
        "kl": ms([r["kl"] for r in last]),
        "log_k": math.log(out_dim),
        "collapse": [collapse_state(r["teacher_entropy"], r["kl"], out_dim) for r in last],
    }
