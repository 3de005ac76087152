"""Small-scale results are reported with their spread over seeds."""

from __future__ import annotations

import math
from collections.abc import Sequence


def mean_std(values: Sequence[float], decimals: int = 1) -> str:
    """``"m ± s (n=k)"`` with the sample standard deviation; a single value is reported as ``"m (n=1)"``."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("mean_std of no values")
    m = sum(vals) / len(vals)
    if len(vals) == 1:
        return f"{m:.{decimals}f} (n=1)"
    s = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))
    return f"{m:.{decimals}f} ± {s:.{decimals}f} (n={len(vals)})"


def seed_table(rows, index: str | list[str], columns: str | list[str], value: str, scale: float = 100.0,
               decimals: int = 1):
    """Pivot long records (one row per run: index keys, column keys, ``seed``, ``value``) into a table of
    ``mean ± std (n)`` strings over seeds, ``value × scale``. A run counted twice for one cell raises."""
    import pandas as pd

    df = pd.DataFrame(list(rows)) if not isinstance(rows, pd.DataFrame) else rows
    idx = [index] if isinstance(index, str) else list(index)
    col = [columns] if isinstance(columns, str) else list(columns)
    dup = df.duplicated(subset=[*idx, *col, "seed"], keep=False)
    if dup.any():
        raise ValueError(f"several runs for one (cell, seed):\n{df.loc[dup]}")
    cells = df.groupby([*idx, *col], sort=False)[value].apply(lambda v: mean_std([x * scale for x in v], decimals))
    return cells.unstack(col)
