"""DINO-style figures: image, head mean, overlay, and per head the attention map and its 60%-mass mask."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from rtsseg.attention.masks import mass_mask, upsample_maps


def to_uint8_image(x: torch.Tensor, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
                   ) -> torch.Tensor:
    """uint8 [3,H,W] as is; a normalised float image is de-normalised as x * std + mean (not mean * x + std)."""
    if x.dtype == torch.uint8:
        return x
    if mean is None or std is None:
        raise ValueError("a float image needs the mean and std it was normalised with (backbone.mean/.std)")
    m = torch.tensor(mean).view(3, 1, 1)
    s = torch.tensor(std).view(3, 1, 1)
    return ((x.float().cpu() * s + m).clamp(0, 1) * 255).round().to(torch.uint8)


def plot_attention_heads(image: torch.Tensor, maps: torch.Tensor, masks: torch.Tensor | None = None,
                         title: str | None = None, mass: float = 0.6) -> Figure:
    """Figure for one image: row 1 image, head-mean map, overlay, union of head masks; row 2 per-head maps;
    row 3 per-head ``mass`` masks on the image.

    image uint8 [3, H, W]; maps [heads, h, w]; masks bool [heads, h, w] (default ``mass_mask(maps, mass)``).
    """
    if image.dtype != torch.uint8 or image.dim() != 3:
        raise ValueError("image must be uint8 [3, H, W]; use to_uint8_image(x, backbone.mean, backbone.std)")
    maps = maps.detach().float().cpu()
    n_heads = maps.shape[0]
    masks = mass_mask(maps, mass) if masks is None else masks.cpu()
    size = image.shape[-2:]
    img = image.permute(1, 2, 0).cpu().numpy()
    up = upsample_maps(maps, size).numpy()  # [heads, H, W]
    up_masks = upsample_maps(masks, size).numpy()
    mean_map = up.mean(axis=0)
    cols = max(4, n_heads)
    fig, axes = plt.subplots(3, cols, figsize=(2.0 * cols, 6.3), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    axes[0, 0].imshow(img)
    axes[0, 0].set_title("image", fontsize=8)
    axes[0, 1].imshow(mean_map, cmap="inferno")
    axes[0, 1].set_title("head mean", fontsize=8)
    axes[0, 2].imshow(img)
    axes[0, 2].imshow(mean_map, cmap="jet", alpha=0.5)
    axes[0, 2].set_title("overlay", fontsize=8)
    axes[0, 3].imshow(img)
    axes[0, 3].imshow(up_masks.any(axis=0), cmap="gray", alpha=0.5)
    axes[0, 3].set_title(f"union of {int(mass * 100)}% masks", fontsize=8)
    for i in range(n_heads):
        axes[1, i].imshow(up[i], cmap="inferno")
        axes[1, i].set_title(f"head {i}", fontsize=8)
        axes[2, i].imshow(img)
        axes[2, i].imshow(up_masks[i], cmap="gray", alpha=0.6)
        axes[2, i].set_title(f"head {i}: {int(mass * 100)}% mass", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_attention_grid(images: torch.Tensor, maps: dict[str, torch.Tensor], gts: torch.Tensor | None = None,
                        title: str | None = None, vmax: float | None = None, panel: float = 1.5,
                        fontsize: float = 11) -> Figure:
    """One figure comparing initialisations on the same images, on **one shared colour scale**.

    images uint8 [C, 3, H, W] (the C columns, e.g. 8); maps {row name: [C, h, w]} (e.g. the head-mean map of
    each initialisation, each summing to 1); gts optional bool [C, Hg, Wg] drawn as a contour. Row 0 shows
    the images; every other row one initialisation's maps, nearest-upsampled to the image. Maps are shown as
    attention relative to a uniform map (value × h·w: 1 = uniform, 4 = four times the uniform density), on
    one colour scale from 0 to ``vmax`` (default: the 99th percentile over all panels) with one colour bar.
    Fonts are ``fontsize`` pt (>= 10) at the figure's size.
    """
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError("images must be uint8 [C, 3, H, W]; use to_uint8_image(x, backbone.mean, backbone.std)")
    if fontsize < 10:
        raise ValueError(f"fontsize {fontsize} < 10 pt is unreadable in the book (issue 11)")
    n_cols = images.shape[0]
    size = images.shape[-2:]
    rel = {}
    for name, m in maps.items():
        m = m.detach().float().cpu()
        if m.dim() != 3 or m.shape[0] != n_cols:
            raise ValueError(f"maps[{name!r}] must be [{n_cols}, h, w], got {tuple(m.shape)}")
        m = m / m.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12) * m.shape[-2] * m.shape[-1]
        rel[name] = upsample_maps(m, size).numpy()  # [C, H, W]
    if vmax is None:
        import numpy as np

        vmax = float(np.percentile(np.concatenate([r.ravel() for r in rel.values()]), 99)) if rel else 1.0
    rows = 1 + len(rel)
    fig, axes = plt.subplots(rows, n_cols, figsize=(panel * n_cols + 1.2, panel * rows + 0.6), squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    gt_up = None
    if gts is not None:
        gt_up = upsample_maps(gts.bool().cpu(), size).numpy()
    im = None
    for c in range(n_cols):
        axes[0, c].imshow(images[c].permute(1, 2, 0).cpu().numpy())
        if gt_up is not None:
            axes[0, c].contour(gt_up[c].astype(float), levels=[0.5], colors="yellow", linewidths=1.2)
        for r, (name, m) in enumerate(rel.items(), start=1):
            im = axes[r, c].imshow(m[c], cmap="inferno", vmin=0.0, vmax=vmax, interpolation="nearest")
            if gt_up is not None:
                axes[r, c].contour(gt_up[c].astype(float), levels=[0.5], colors="cyan", linewidths=0.8)
    axes[0, 0].set_ylabel("image", fontsize=fontsize)
    for r, name in enumerate(rel, start=1):
        axes[r, 0].set_ylabel(name, fontsize=fontsize)
    if title:
        fig.suptitle(title, fontsize=fontsize + 1)
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    if im is not None:
        cax = fig.add_axes((0.91, 0.1, 0.015, 0.75))
        bar = fig.colorbar(im, cax=cax)
        bar.set_label("attention / uniform", fontsize=fontsize)
        bar.ax.tick_params(labelsize=fontsize)
    return fig


def plot_head_masks(image: torch.Tensor, maps: dict[str, torch.Tensor], gt: torch.Tensor | None = None,
                    mass: float = 0.6, panel: float = 1.1, fontsize: float = 10, title: str | None = None) -> Figure:
    """DINO's figure for one image: one row per initialisation, the image in column 0, then per head the image
    with that head's map overlaid and its ``mass`` (60 %)-mass mask outlined.

    image uint8 [3, H, W]; maps {row name: [heads, h, w]} (each head sums to 1; rows may differ in heads);
    gt optional bool [Hg, Wg], outlined in column 0.
    """
    if image.dtype != torch.uint8 or image.dim() != 3:
        raise ValueError("image must be uint8 [3, H, W]; use to_uint8_image(x, backbone.mean, backbone.std)")
    if fontsize < 10:
        raise ValueError(f"fontsize {fontsize} < 10 pt is unreadable in the book")
    if not maps:
        raise ValueError("plot_head_masks: no maps to show")
    size = image.shape[-2:]
    img = image.permute(1, 2, 0).cpu().numpy()
    n_heads = max(m.shape[0] for m in maps.values())
    rows = len(maps)
    fig, axes = plt.subplots(rows, 1 + n_heads, figsize=(panel * (1 + n_heads), panel * rows + 0.5), squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
    gt_up = None if gt is None else upsample_maps(gt.bool().cpu()[None], size)[0].numpy().astype(float)
    for r, (name, m) in enumerate(maps.items()):
        m = m.detach().float().cpu()
        up = upsample_maps(m, size).numpy()  # [heads, H, W]
        masks = upsample_maps(mass_mask(m[None], mass)[0], size).numpy().astype(float)  # [heads, H, W]
        axes[r, 0].imshow(img)
        if gt_up is not None:
            axes[r, 0].contour(gt_up, levels=[0.5], colors="yellow", linewidths=1.0)
        axes[r, 0].set_ylabel(name, fontsize=fontsize)
        for k in range(m.shape[0]):
            ax = axes[r, 1 + k]
            ax.imshow(img)
            ax.imshow(up[k], cmap="inferno", alpha=0.55, interpolation="nearest")
            ax.contour(masks[k], levels=[0.5], colors="cyan", linewidths=1.0)
            if r == 0:
                ax.set_title(f"head {k}", fontsize=fontsize)
    if title:
        fig.suptitle(title, fontsize=fontsize + 1)
    fig.tight_layout()
    return fig


def plot_head_excess(per_head: dict[str, "object"], metric: str = "object-specific AUROC excess",
                     fontsize: float = 10, reference: float | None = None) -> Figure:
    """The distribution of per-head object-specific scores per initialisation: one column of points per
    initialisation (every head of every seed), a bar at their median, a dashed line at 0 (an image-independent
    map) and, when given, a dotted line at ``reference`` (e.g. planted maps).

    per_head {initialisation: array [seeds, heads]}."""
    import numpy as np

    if not per_head:
        raise ValueError("plot_head_excess: no initialisation to show")
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(per_head) + 1.5), 3.2))
    rng = np.random.default_rng(0)
    for i, (name, v) in enumerate(per_head.items()):
        v = np.asarray(v, dtype=float).ravel()
        ax.scatter(i + rng.uniform(-0.15, 0.15, v.size), v, s=14, alpha=0.8)
        ax.hlines(np.median(v), i - 0.3, i + 0.3, colors="black", linewidths=1.5)
    ax.axhline(0.0, color="grey", linestyle="--", linewidth=1, label="image-independent map (0)")
    if reference is not None:
        ax.axhline(reference, color="tab:green", linestyle=":", linewidth=1.2, label=f"planted maps ({reference:+.2f})")
    ax.set_xticks(range(len(per_head)))
    ax.set_xticklabels([n.replace(" ", "\n", 1) for n in per_head], fontsize=fontsize)
    ax.set_ylabel(metric, fontsize=fontsize)
    ax.tick_params(labelsize=fontsize)
    ax.legend(fontsize=fontsize, loc="best", frameon=False)
    fig.tight_layout()
    return fig
