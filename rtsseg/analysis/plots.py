"""Result tables for the book: long records (one row per run and metric) -> a pivoted, rounded table."""

from __future__ import annotations

from typing import Sequence

import pandas as pd


def results_table(
    rows: pd.DataFrame | Sequence[dict],
    index: str | list[str] = "backbone",
    columns: str | list[str] = "pretraining",
    values: str = "value",
    scale: float = 100.0,
    decimals: int = 1,
) -> pd.DataFrame:
    """Pivot ``rows`` to ``index`` × ``columns`` holding ``values`` × ``scale``, rounded to ``decimals``.

    Fractions in [0, 1] become percentages with the default ``scale``. Duplicate (index, column) pairs
    raise (a table cell must come from exactly one run); missing cells stay NaN.
    """
    df = pd.DataFrame(list(rows)) if not isinstance(rows, pd.DataFrame) else rows
    keys = [*([index] if isinstance(index, str) else index), *([columns] if isinstance(columns, str) else columns)]
    missing = [k for k in [*keys, values] if k not in df.columns]
    if missing:
        raise KeyError(f"results have no column(s) {missing}; columns are {list(df.columns)}")
    dup = df.duplicated(subset=keys, keep=False)
    if dup.any():
        raise ValueError(f"several runs for one table cell:\n{df.loc[dup, [*keys, values]]}")
    table = df.pivot(index=index, columns=columns, values=values) * scale
    return table.round(decimals)


def plot_curves(histories: dict, columns: Sequence[str], x: str = "epoch"):
    """One panel per column; one line per (backbone, seed) history DataFrame. Returns the Figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(columns), figsize=(4.5 * len(columns), 3.2), squeeze=False)
    for ax, col in zip(axes[0], columns):
        for key, hist in histories.items():
            label = " seed ".join(str(k) for k in key) if isinstance(key, tuple) else str(key)
            ax.plot(hist[x], hist[col], marker="o", ms=3, label=label)
        ax.set_xlabel(x)
        ax.set_title(col)
        ax.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=7)
    fig.tight_layout()
    return fig
