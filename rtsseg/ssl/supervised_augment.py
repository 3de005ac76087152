"""Batched augmentations of the supervised methods that move object boxes with the pixels (for the attention
loss of the attention-supervised control): RandomResizedCrop + flip, reflect-pad + crop + flip, centre resize.

Random numbers come from a CPU ``torch.Generator`` (results do not depend on the device); images are uint8
``[B,3,H,W]`` (or float in [0,1]); boxes float ``[B,4]`` x0,y0,x1,y1 inclusive pixel indices (NaN: none left).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def _float01(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255 if images.dtype == torch.uint8 else images.float()


def random_resized_crop_flip(
    images: torch.Tensor,  # uint8 [B,3,H,W] (or float in [0,1])
    size: int,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.25, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip_p: float = 0.5,
    boxes: torch.Tensor | None = None,  # float [B,4] x0,y0,x1,y1 inclusive pixel indices of the input
):
    """Batched RandomResizedCrop + horizontal flip -> float in [0, 1] ``[B,3,size,size]`` (bilinear); with
    ``boxes`` also the boxes in output pixels ``[B,4]`` (inclusive indices as Tiny-ImageNet annotates them, and as
    ``rtsseg.attention.supervision`` reads them; clipped to the crop; NaN where nothing is left).

    One ``grid_sample`` per batch; random numbers from ``generator`` (CPU) so results do not depend on the
    device. Unlike torchvision's rejection sampling, a crop side that would exceed the image is clamped."""
    b, _, hin, win = images.shape
    x = _float01(images)
    area = torch.empty(b).uniform_(*scale, generator=generator)  # fraction of the image area
    log_r = torch.empty(b).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    r = log_r.exp()  # width / height
    w = (area * r).sqrt().clamp(max=1.0)  # crop width as a fraction of the image width
    h = (area / r).sqrt().clamp(max=1.0)
    cx = (torch.rand(b, generator=generator) * 2 - 1) * (1 - w)  # crop centre in [-1, 1] coordinates
    cy = (torch.rand(b, generator=generator) * 2 - 1) * (1 - h)
    flip = torch.where(torch.rand(b, generator=generator) < flip_p, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = w * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    grid = F.affine_grid(theta.to(x.device), [b, 3, size, size], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False).clamp(0, 1)
    if boxes is None:
        return out
    # input pixel edge p -> normalised n = 2p/W - 1 -> output u = (n - c) / (w * flip) -> pixel (u + 1) / 2 * size
    bx = _to_edges(boxes)
    nx = bx[:, [0, 2]] * 2 / win - 1  # [B,2]
    ny = bx[:, [1, 3]] * 2 / hin - 1
    ux = (nx - cx[:, None]) / (w * flip)[:, None]
    uy = (ny - cy[:, None]) / h[:, None]
    ux, _ = ux.sort(dim=1)  # a flip swaps left and right
    px = ((ux + 1) / 2 * size).clamp(0, size)
    py = ((uy + 1) / 2 * size).clamp(0, size)
    return out, _from_edges(torch.stack([px[:, 0], py[:, 0], px[:, 1], py[:, 1]], 1))


def pad_crop_flip(
    images: torch.Tensor,  # uint8 [B,3,H,W] (or float in [0,1])
    generator: torch.Generator,
    pad: int = 4,
    flip_p: float = 0.5,
    size: int | None = None,
    boxes: torch.Tensor | None = None,  # float [B,4] x0,y0,x1,y1 inclusive pixel indices
):
    """Reflect-pad ``pad`` px, crop a random H x W window, flip with ``flip_p``; resized to ``size`` if given.
    -> float in [0,1] ``[B,3,S,S]`` (and the transformed boxes ``[B,4]``, NaN where nothing is left)."""
    b, _, hin, win = images.shape
    x = F.pad(_float01(images), (pad, pad, pad, pad), mode="reflect") if pad > 0 else _float01(images)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator)  # crop offsets in the padded image
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    flip = torch.rand(b, generator=generator) < flip_p
    rows = (oy[:, None] + torch.arange(hin)).to(x.device)  # [B,H]
    cols = (ox[:, None] + torch.arange(win)).to(x.device)  # [B,W]
    idx_b = torch.arange(b, device=x.device)[:, None, None]
    out = x.permute(0, 2, 3, 1)[idx_b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # [B,3,H,W]
    out = torch.where(flip.to(x.device)[:, None, None, None], out.flip(-1), out)
    s = size or hin
    if (hin, win) != (s, s):
        out = F.interpolate(out, size=(s, s), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    if boxes is None:
        return out.contiguous()
    bx = _to_edges(boxes)
    bx[:, [0, 2]] = (bx[:, [0, 2]] + pad - ox[:, None]).clamp(0, win)
    bx[:, [1, 3]] = (bx[:, [1, 3]] + pad - oy[:, None]).clamp(0, hin)
    fx = torch.stack([win - bx[:, 2], win - bx[:, 0]], 1)
    bx[:, [0, 2]] = torch.where(flip[:, None], fx, bx[:, [0, 2]])
    bx = bx * torch.tensor([s / win, s / hin, s / win, s / hin])
    return out.contiguous(), _from_edges(bx)


def _to_edges(boxes: torch.Tensor) -> torch.Tensor:
    """Inclusive pixel indices x0,y0,x1,y1 -> pixel edges (x1 + 1, y1 + 1): the geometry the crops act on."""
    return boxes.float().cpu() + torch.tensor([0.0, 0.0, 1.0, 1.0])


def _from_edges(edges: torch.Tensor) -> torch.Tensor:
    """Pixel edges -> inclusive indices; NaN rows where the box has (almost) no pixel left (< 0.5 px wide)."""
    empty = (edges[:, 2] - edges[:, 0] < 0.5) | (edges[:, 3] - edges[:, 1] < 0.5)
    boxes = edges - torch.tensor([0.0, 0.0, 1.0, 1.0])
    boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2])  # a sub-pixel box stays a valid (one-pixel) box
    return torch.where(empty[:, None], torch.full_like(boxes, float("nan")), boxes)


def center_resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``[B,3,H,W]`` -> float in [0,1] ``[B,3,size,size]`` (no augmentation)."""
    x = _float01(images)
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


def _normalize(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if hasattr(backbone, "normalize"):
        return backbone.normalize(x)
    mean = torch.tensor(backbone.mean, device=x.device).view(3, 1, 1)
    std = torch.tensor(backbone.std, device=x.device).view(3, 1, 1)
    return (x - mean) / std


def augment(kind: str, x: torch.Tensor, generator: torch.Generator, size: int, crop_scale=(0.25, 1.0), pad: int = 4,
            boxes: torch.Tensor | None = None):
    """``kind`` "rrc" or "padcrop" -> (float [B,3,S,S] in [0,1], boxes [B,4] in output pixels or None)."""
    if kind == "padcrop":
        out = pad_crop_flip(x, generator, pad, size=size, boxes=boxes)
    else:
        out = random_resized_crop_flip(x, size, generator, crop_scale, boxes=boxes)
    return out if boxes is not None else (out, None)


__all__ = ["random_resized_crop_flip", "pad_crop_flip", "center_resize", "augment"]
