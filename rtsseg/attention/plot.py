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
