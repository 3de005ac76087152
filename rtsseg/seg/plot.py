"""Segmentation figures: image | ground truth | prediction, coloured with a class palette; the paired
differences of the decoder ablation."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Patch

#: CamVid 11-class colours of the SegNet tutorial (Sky, Building, Pole, Road, Pavement, Tree, SignSymbol,
#: Fence, Car, Pedestrian, Bicyclist), uint8 [11, 3]; void pixels are drawn black.
CAMVID_PALETTE = np.array(
    [
        [128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [60, 40, 222], [128, 128, 0],
        [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0], [0, 128, 192],
    ],
    dtype=np.uint8,
)
VOID_COLOR = (0, 0, 0)


def colorize(mask: torch.Tensor | np.ndarray, palette: np.ndarray, void_color: Sequence[int] = VOID_COLOR) -> np.ndarray:
    """Class ids ``[H,W]`` -> RGB uint8 ``[H,W,3]``; ids outside the palette (void, 255) get ``void_color``."""
    mask = np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask).astype(np.int64)
    palette = np.asarray(palette, dtype=np.uint8)
    out = np.empty((*mask.shape, 3), dtype=np.uint8)
    out[:] = np.asarray(void_color, dtype=np.uint8)
    valid = (mask >= 0) & (mask < len(palette))
    out[valid] = palette[mask[valid]]
    return out


def _to_hwc(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """uint8 ``[3,H,W]`` (or float in [0,1]) -> ``[H,W,3]`` for imshow."""
    image = torch.as_tensor(image).detach().cpu()
    if image.dtype != torch.uint8:
        image = (image.float().clamp(0, 1) * 255).round().to(torch.uint8)
    return image.permute(1, 2, 0).numpy()


def plot_predictions(
    images: torch.Tensor,  # uint8 [B,3,h,w]
    masks: torch.Tensor,  # int [B,H,W], 255 = void
    preds: torch.Tensor,  # int [B,H,W]
    class_names: Sequence[str],
    palette: np.ndarray = CAMVID_PALETTE,
    titles: Sequence[str] = ("image", "ground truth", "prediction"),
    tile: float = 3.0,
) -> plt.Figure:
    """One row per image: the image, its label and the prediction, with a legend of the classes.

    Images may be at the network's resolution and masks at their own; each panel spans the same box.
    """
    if not (len(images) == len(masks) == len(preds)):
        raise ValueError(f"{len(images)} images, {len(masks)} masks, {len(preds)} predictions")
    if len(palette) < len(class_names):
        raise ValueError(f"palette has {len(palette)} colours for {len(class_names)} classes")
    n = len(images)
    h, w = masks.shape[-2:]
    fig, axes = plt.subplots(n, 3, figsize=(3 * tile * w / h, n * tile + 0.8), squeeze=False)  # tile: row height (in)
    for i in range(n):
        panels = (_to_hwc(images[i]), colorize(masks[i], palette), colorize(preds[i], palette))
        for j, panel in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(panel, extent=(0, w, h, 0), interpolation="nearest")
            ax.set_axis_off()
            if i == 0:
                ax.set_title(titles[j])
    handles = [Patch(color=np.asarray(palette[k]) / 255, label=name) for k, name in enumerate(class_names)]
    handles.append(Patch(color=np.asarray(VOID_COLOR) / 255, label="void"))
    # the legend at the rc font size (>= 10 pt in the book), below the panels
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), frameon=False, handlelength=1.0,
               columnspacing=1.0)
    fig.tight_layout(rect=(0, 0.6 / (n * tile + 0.8), 1, 1), h_pad=0.3, w_pad=0.3)
    return fig


def default_palette(num_classes: int) -> np.ndarray:
    """``[num_classes, 3]`` uint8 distinct colours (matplotlib's tab20, then hsv) for data sets without their own."""
    cmap = plt.get_cmap("tab20" if num_classes <= 20 else "hsv", num_classes)
    return (np.array([cmap(i)[:3] for i in range(num_classes)]) * 255).round().astype(np.uint8)


def plot_paired_differences(diffs, comparison: str = "comparison", cell: Sequence[str] = ("backbone", "init"),
                            group: str = "init", value: str = "difference", scale: float = 100.0, width: float = 8.0,
                            legend_title: str | None = None) -> plt.Figure:
    """One row per comparison (e.g. ``attn_all − control``), and within it one line per cell (``cell``, e.g.
    backbone × init): every seed's paired difference as a dot, coloured by ``group``, and the cell's mean with its
    95 % Student-t interval over its seeds (:func:`rtsseg.stats.t_interval`; a single seed: its dot and mean,
    no bar), and the zero line. No mean over all pairs: the cells differ in level and spread, so each has its
    own interval (the pooled answer is the mean of cell means, in the chapter's text).

    ``diffs``: a DataFrame with columns ``comparison``, the ``cell`` keys and ``value`` (fractions, shown ×
    ``scale``; :func:`rtsseg.seg.experiment.all_pairs`). Why a dot per seed: with 1-5 seeds per cell the reader
    sees the spread and any outlier behind the interval.
    """
    from rtsseg.stats import t_interval

    if not len(diffs):
        raise ValueError("plot_paired_differences: no pairs to plot")
    cell = list(cell)
    rows = list(dict.fromkeys(diffs[comparison]))
    groups = list(dict.fromkeys(diffs[group]))
    colors = plt.get_cmap("tab10")
    ticks, labels, y = [], [], 0.0
    lines = sum(len(diffs[diffs[comparison] == r].groupby(cell, sort=False)) for r in rows)
    fig, ax = plt.subplots(figsize=(width, 0.28 * lines + 0.3 * len(rows) + 1.6))
    seen: set = set()
    for name in rows:
        d = diffs[diffs[comparison] == name]
        top = y
        for key, c in d.groupby(cell, sort=False):
            key = key if isinstance(key, tuple) else (key,)
            g = groups.index(c[group].iloc[0])
            v = c[value].to_numpy() * scale
            iv = t_interval(v.tolist())
            color = colors(g % 10)
            jitter = (np.arange(len(v)) - (len(v) - 1) / 2) * 0.05
            ax.scatter(v, y + jitter, color=color, s=18, alpha=0.8, zorder=3,
                       label=groups[g] if groups[g] not in seen else None)
            seen.add(groups[g])
            if iv.has_interval:
                ax.errorbar(iv.mean, y, xerr=[[iv.mean - iv.lo], [iv.hi - iv.mean]], fmt="none", ecolor=color,
                            elinewidth=2, capsize=3, zorder=4)
            ax.plot([iv.mean], [y], marker="|", color="black", markersize=10, mew=2, zorder=5)
            ticks.append(y)
            labels.append(" / ".join(str(k) for k in key))
            y += 1
        ax.text(1.0, (top + y - 1) / 2, f" {name}", transform=ax.get_yaxis_transform(), va="center", ha="left")
        if name != rows[-1]:
            ax.axhline(y - 0.5, color="0.85", lw=0.8)
        y += 0.3
    ax.axvline(0, color="0.5", lw=1, ls="--")
    ax.set_yticks(ticks, labels)
    ax.set_ylim(y - 0.3 - 0.5, -0.5)
    ax.set_xlabel("mIoU difference (points)")
    # the legend below the axes, inside the figure: the saved figure stays ``width`` inches wide
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=min(len(groups), 5), frameon=False,
               title=legend_title or group)
    fig.tight_layout(rect=(0, 0.6 / fig.get_figheight(), 0.8, 1))
    return fig
