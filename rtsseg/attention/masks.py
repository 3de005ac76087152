"""DINO-style masks from attention maps, and their agreement with ground-truth regions.

mass_mask keeps, per map, the smallest set of tokens holding at least ``mass`` (60 %) of the attention
(DINO ``visualize_attention.py``: sort, cumulative sum, threshold). Masks are upsampled with nearest
neighbour to the ground truth's own resolution (never resize the labels).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def mass_mask(maps: torch.Tensor, mass: float = 0.6) -> torch.Tensor:
    """maps [..., h, w] (non-negative) -> bool [..., h, w]: the smallest set of tokens holding >= ``mass``
    of each map's total (ties broken by sort order)."""
    if not 0.0 < mass <= 1.0:
        raise ValueError(f"mass must be in (0, 1], got {mass}")
    flat = maps.flatten(-2).float()  # [..., h*w]
    val, idx = flat.sort(dim=-1, descending=True)
    val = val / val.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(val.dtype).tiny)
    before = val.cumsum(dim=-1) - val  # mass held by the larger tokens
    keep_sorted = before < mass - 1e-6  # a token is needed while the mass so far is short of the target
    keep = torch.zeros_like(keep_sorted).scatter(-1, idx, keep_sorted)
    return keep.reshape(maps.shape)


def upsample_maps(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """[..., h, w] -> [..., H, W] by nearest neighbour (as DINO); works for float and bool maps."""
    lead = maps.shape[:-2]
    x = maps.reshape(-1, 1, *maps.shape[-2:])
    out = F.interpolate(x.float(), size=tuple(size), mode="nearest")
    out = out.to(maps.dtype) if maps.dtype == torch.bool else out
    return out.reshape(*lead, *size)


def box_mask(box: torch.Tensor | Sequence[float], size: Sequence[int]) -> torch.Tensor:
    """Filled box x0, y0, x1, y1 (pixel indices, inclusive, as Tiny-ImageNet's annotations) -> bool [H, W];
    ``box`` [..., 4] gives [..., H, W]. A NaN coordinate (unknown box) raises ValueError."""
    box = torch.as_tensor(box, dtype=torch.float32)
    if box.shape[-1] != 4:
        raise ValueError(f"box must have 4 coordinates x0,y0,x1,y1, got shape {tuple(box.shape)}")
    if torch.isnan(box).any():
        raise ValueError("box has NaN coordinates (no box known for this image); skip it explicitly")
    h, w = int(size[0]), int(size[1])
    ys = torch.arange(h, dtype=torch.float32).view(h, 1)
    xs = torch.arange(w, dtype=torch.float32).view(1, w)
    x0, y0, x1, y1 = (box[..., i, None, None] for i in range(4))
    return (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)


def class_mask(labels: torch.Tensor, class_ids: Sequence[int]) -> torch.Tensor:
    """int64 label map [..., H, W] -> bool [..., H, W]: pixels whose label is in ``class_ids`` (e.g. CamVid
    ``THINGS``); ignore pixels (255) are False."""
    return torch.isin(labels, torch.as_tensor(list(class_ids), dtype=labels.dtype, device=labels.device))


def jaccard(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """|pred & gt| / |pred | gt| over the last two dims; pred bool [..., H, W], gt bool broadcastable.
    NaN where the union is empty (no prediction and no ground truth)."""
    inter = (pred & gt).flatten(-2).sum(-1).float()
    union = (pred | gt).flatten(-2).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.full_like(union, float("nan")))


def mass_in_mask(maps: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Fraction of each map's attention inside ``gt``: maps [..., H, W] >= 0, gt bool [..., H, W] at the
    same resolution (upsample the maps first) -> [...]."""
    if maps.shape[-2:] != gt.shape[-2:]:
        raise ValueError(f"maps {tuple(maps.shape[-2:])} and gt {tuple(gt.shape[-2:])} differ in size; "
                         "use upsample_maps(maps, gt.shape[-2:]) first")
    total = maps.flatten(-2).sum(-1)
    inside = (maps * gt).flatten(-2).sum(-1)
    return inside / total.clamp_min(torch.finfo(maps.dtype).tiny)


def head_scores(maps: torch.Tensor, gt: torch.Tensor, image_size: Sequence[int] | None = None,
                mass: float = 0.6) -> dict[str, torch.Tensor]:
    """Scores of per-head maps against a ground-truth region.

    maps [B, heads, h, w] (or [heads, h, w]); gt bool [B, H, W] (or [H, W]) at the label's resolution;
    image_size: the pixel region (H', W') <= (H, W) the token grid covers, top-left aligned (when the image
    was cropped to a multiple of the patch size, DINO-style); default the full gt. The masks and maps are
    nearest-upsampled to that region and gt is cropped to it.

    Returns dict of tensors: jaccard [B, heads], best_jaccard [B], best_head [B], mean_jaccard [B],
    mass_in_gt [B] (of the head-mean map), mass_in_gt_heads [B, heads].
    """
    squeeze = maps.dim() == 3
    if squeeze:
        maps, gt = maps[None], gt[None] if gt.dim() == 2 else gt
    if gt.dim() == 2:
        gt = gt.expand(maps.shape[0], -1, -1)
    size = tuple(image_size) if image_size is not None else tuple(gt.shape[-2:])
    if size[0] > gt.shape[-2] or size[1] > gt.shape[-1]:
        raise ValueError(f"image_size {size} is larger than the ground truth {tuple(gt.shape[-2:])}")
    gt = gt[..., : size[0], : size[1]].bool()[:, None]  # [B, 1, H', W']
    masks = upsample_maps(mass_mask(maps, mass), size)  # [B, heads, H', W']
    up = upsample_maps(maps.float(), size)
    jac = jaccard(masks, gt)  # [B, heads]
    best = torch.nan_to_num(jac, nan=-1.0).max(dim=1)
    out = {
        "jaccard": jac,
        "best_jaccard": torch.where(best.values < 0, torch.nan, best.values),
        "best_head": best.indices,
        "mean_jaccard": jac.mean(dim=1),
        "mass_in_gt": mass_in_mask(up.mean(dim=1), gt[:, 0]),
        "mass_in_gt_heads": mass_in_mask(up, gt),
    }
    return {k: v[0] for k, v in out.items()} if squeeze else out
