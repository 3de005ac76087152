"""Figures for the pretraining and supervised chapters: training history, cross-correlation matrix, augmented pairs,
training curves."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.ticker import MaxNLocator, NullFormatter

from rtsseg.ssl.augment import BarlowTwinsAugment

_PANELS = (
    ("loss", "loss (monitor batch)"),
    ("on_diag", "on-diagonal  Σ(1−C_ii)²"),
    ("off_diag", "off-diagonal  Σ C_ij² (×λ in loss)"),
    ("emb_std", "embedding std (collapse → 0)"),
    ("knn_acc", "k-NN top-1 (val)"),
)


def log_axis_if_wide(ax: plt.Axes, values, decades: float = 1.0) -> bool:
    """Put ``ax``'s y axis on a log scale only where ``values`` span at least ``decades`` decades.

    Why: a log axis over less than a decade (a loss going 146 -> 132 in one epoch) holds no major tick, so it
    renders with no tick labels at all; a linear axis reads better there. Returns whether the axis went log."""
    v = np.concatenate([np.asarray(x, dtype=float).ravel() for x in values]) if len(values) else np.array([])
    v = v[np.isfinite(v) & (v > 0)]
    if v.size == 0 or np.log10(v.max() / v.min()) < decades:
        return False
    ax.set_yscale("log")
    ax.yaxis.set_minor_formatter(NullFormatter())  # no crowded 1.45×10² minor labels
    return True


def plot_history(history: pd.DataFrame | Mapping[object, pd.DataFrame], title: str | None = None,
                 width: float = 8.0) -> plt.Figure:
    """One panel per monitored quantity against epoch, two panels per row, ``width`` inches wide (the book's
    page width: fonts stay at their rc size, >= 10 pt in the book); ``history`` is one ``history.csv`` frame or
    a mapping label -> frame (e.g. one per seed), drawn as separate lines with one legend in the free slot."""
    runs = {"": history} if isinstance(history, pd.DataFrame) else dict(history)
    if not runs:
        raise ValueError("plot_history needs at least one history")
    ncols = 2
    nrows = -(-len(_PANELS) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, 2.4 * nrows + (0.4 if title else 0.0)), squeeze=False)
    flat = list(axes.flat)
    for ax, (col, label) in zip(flat, _PANELS):
        for name, df in runs.items():
            if col in df:
                y = 100 * df[col] if col == "knn_acc" else df[col]
                ax.plot(df["epoch"], y, marker="o", label=str(name) if name != "" else None)
        ax.set_title(label + (" (%)" if col == "knn_acc" else ""))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if col in ("loss", "off_diag"):
            log_axis_if_wide(ax, [df[col] for df in runs.values() if col in df])
    for ax in flat[len(_PANELS):]:
        ax.axis("off")  # the free slot holds the legend
    if len(runs) > 1:
        handles, labels = flat[0].get_legend_handles_labels()
        (flat[len(_PANELS)] if len(flat) > len(_PANELS) else flat[-1]).legend(handles, labels, title="run",
                                                                            loc="center")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_ccmatrix(c: torch.Tensor | np.ndarray, ax: plt.Axes | None = None, title: str | None = None) -> plt.Axes:
    """Cross-correlation matrix C [d, d] on a diverging scale [-1, 1] (identity = perfect)."""
    c = c.detach().float().cpu().numpy() if isinstance(c, torch.Tensor) else np.asarray(c)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"expected a square matrix, got shape {c.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 3.6))
    im = ax.imshow(c, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(title or f"C ({c.shape[0]}×{c.shape[0]} block)")
    ax.set_xlabel("dimension of z₂")
    ax.set_ylabel("dimension of z₁")
    return ax


def plot_augmented_pairs(images: torch.Tensor, aug: BarlowTwinsAugment, seed: int = 0, n: int | None = None,
                         width: float = 8.0) -> plt.Figure:
    """Rows: original, view 1, view 2 for each uint8 image [B, 3, H, W] (columns); at most ``width`` inches."""
    if images.ndim != 4 or images.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images [B, 3, H, W], got {images.dtype} {tuple(images.shape)}")
    images = images[:n] if n else images
    v1, v2 = aug(images, generator=torch.Generator().manual_seed(seed))
    rows = [images.float() / 255, aug.denormalize(v1), aug.denormalize(v2)]
    names = ["original", "view 1\nblur p=1", "view 2\nblur p=.1\nsolarise p=.2"]
    b = images.shape[0]
    side = min(1.6, (width - 1.3) / b)  # 1.3 in for the row labels
    fig, axes = plt.subplots(3, b, figsize=(1.3 + side * b, 3 * side + 0.3), squeeze=False)
    for r, (row, name) in enumerate(zip(rows, names)):
        for i in range(b):
            ax = axes[r, i]
            ax.imshow(row[i].permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center")
    fig.tight_layout()
    return fig


def plot_training(histories: Mapping[str, pd.DataFrame], columns: list[tuple[str, str, float]],
                  width: float = 8.0) -> plt.Figure:
    """One panel per ``(column, title, scale)`` against epoch, one line per labelled ``history.csv`` frame, at
    most 2 panels per row, ``width`` inches wide; the legend takes the free slot, else a row below the panels
    (the supervised chapter's training curves and its control beside them)."""
    if not histories or not columns:
        raise ValueError("plot_training needs at least one history and one column")
    n = len(columns)
    ncols = min(2, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, 3.0 * nrows + 0.6), squeeze=False)
    for ax, (col, title, scale) in zip(axes.flat, columns):
        for label, h in histories.items():
            ax.plot(h["epoch"], scale * h[col], marker="o", label=label)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_xlim(0.5, max(max(h["epoch"]) for h in histories.values()) + 0.5)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if n < nrows * ncols:  # the free slot holds the legend
        axes.flat[n].legend(handles, labels, loc="center", frameon=False)
        fig.tight_layout()
    else:
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), frameon=False)
        fig.tight_layout(rect=(0, (0.08 + 0.06 * ((len(labels) - 1) // 4)) / nrows, 1, 1))
    return fig
