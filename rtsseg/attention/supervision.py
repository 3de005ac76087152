"""Attention supervision: a loss that pulls chosen heads' attention maps into the object's box (or any mask).

The positive control of the attention chapter (issue 9) and the segmentation issue use it. Exact form::

    mass_{b,k} = sum_t  maps[b, k, t] * m[b, t]          (m: the target's share of token t, in [0, 1])
    loss       = mean over images b with a non-empty target and chosen heads k of  -log(mass_{b,k} + eps)

with eps = 1e-6. For a box, m[b, t] is the fraction of token t's pixel square covered by the box (box pixels
x0..x1, y0..y1 inclusive, as Tiny-ImageNet annotates them), so ``mass`` is exactly the attention mass inside
the box once the map is upsampled by nearest neighbour to pixels -- the same ``mass in ground truth`` the
evaluation reports (``rtsseg.attention.masks.mass_in_mask``).

Why this form and not a cross-entropy to the normalised mask (-sum_t q_t log p_t, q = m / sum m): the
cross-entropy also forces the map to spread *uniformly* over the box and is infinite when any box token gets
no attention, so it fights a head that attends to the discriminative part of the object; -log(mass) is zero
for any map that lies inside the box, whatever its shape there, and penalises only mass outside. It is the
negative log-likelihood of "a token drawn from the map lies in the object", bounded by -log(eps) = 13.8,
with gradient -1/mass on the tokens inside: strong when the map misses the object, vanishing once it is in.
Maps must already be probability maps (each sums to 1, e.g. :class:`rtsseg.attention.capture.AttentionRecorder`).

**A loss no image-independent map can satisfy** (:func:`contrastive_box_attention_loss`). Tiny-ImageNet boxes are
centred and cover half the image: a centre blob already puts most of its mass inside most boxes, so a control
trained with -log(mass) alone learns mostly a centre blob (its object-specific excess, chapter 5, is small). The
contrastive form asks each map to put more mass (per unit area) in *its own* image's box than in the other boxes
of the batch: with r_{b,j} = mass of map b inside box j / area of box j (the mass ratio, 1 = uniform),

    loss = mean over images b and heads k of  -log( r_{b,b} / sum_j r_{b,j} )

(a cross-entropy over the batch's boxes, the true box the target). For a map m that ignores the image,
r_{b,j} = r_j for every b, and the mean over b of -log(r_b / sum_j r_j) is >= log B by the inequality of
arithmetic and geometric means (equality when every r_j is equal): no image-independent map gets below log B,
while a map that follows its object goes towards 0. It is the training-time twin of chapter 5's permutation null.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

EPS = 1e-6


def box_token_mask(boxes: torch.Tensor, image_size: int, grid: Sequence[int]) -> torch.Tensor:
    """Share of every token's pixel square covered by the box.

    boxes float [B, 4] pixel x0, y0, x1, y1 (inclusive) in the ``image_size`` px square input image;
    grid (h, w) tokens -> float [B, h, w] in [0, 1]. Token (i, j) covers pixels [i s, (i+1) s) with
    s = image_size / h (resp. w).
    """
    boxes = torch.as_tensor(boxes, dtype=torch.float32)
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be [B, 4] (x0, y0, x1, y1), got {tuple(boxes.shape)}")
    if torch.isnan(boxes).any():
        raise ValueError("boxes contain NaN (images without a box): leave those images out of the batch")
    h, w = int(grid[0]), int(grid[1])

    def overlap(lo: torch.Tensor, hi: torch.Tensor, n: int) -> torch.Tensor:  # [B] -> [B, n]
        step = image_size / n
        start = torch.arange(n, dtype=torch.float32, device=boxes.device) * step  # [n]
        inter = torch.minimum(hi[:, None] + 1, start + step) - torch.maximum(lo[:, None], start)
        return inter.clamp(0, step) / step

    ox = overlap(boxes[:, 0], boxes[:, 2], w)  # [B, w]
    oy = overlap(boxes[:, 1], boxes[:, 3], h)  # [B, h]
    return oy[:, :, None] * ox[:, None, :]  # [B, h, w]


def mask_attention_loss(maps: torch.Tensor, target_masks: torch.Tensor,
                        heads: Sequence[int] | None = None) -> torch.Tensor:
    """Mean over images and chosen heads of -log(mass of the map inside the target + 1e-6) (module docstring).

    maps [B, heads, h, w], each summing to 1 (differentiable); target_masks float [B, H, W] in [0, 1], at the
    token grid (H, W) = (h, w) or at an integer multiple of it (then averaged to the share of each token);
    heads: the heads to supervise (None: all). Images with an empty target are left out of the mean; a
    batch with none gives 0 (still attached to the graph). Returns a scalar.
    """
    if maps.dim() != 4:
        raise ValueError(f"maps must be [B, heads, h, w], got {tuple(maps.shape)}")
    b, n_heads, h, w = maps.shape
    target = target_masks.to(device=maps.device, dtype=maps.dtype)
    if target.dim() != 3 or target.shape[0] != b:
        raise ValueError(f"target_masks must be [B={b}, H, W], got {tuple(target_masks.shape)}")
    if target.shape[-2:] != (h, w):
        H, W = target.shape[-2:]
        if H % h or W % w:
            raise ValueError(f"target_masks {H}x{W} is not a multiple of the token grid {h}x{w}; "
                             "resample it to the grid first (e.g. box_token_mask)")
        target = F.avg_pool2d(target[:, None], (H // h, W // w))[:, 0]  # [B, h, w] token shares
    if heads is not None:
        heads = list(heads)
        if not heads or min(heads) < 0 or max(heads) >= n_heads:
            raise ValueError(f"heads {heads} must be a non-empty subset of 0..{n_heads - 1}")
        maps = maps[:, heads]
    mass = (maps * target[:, None]).flatten(2).sum(-1)  # [B, k]
    valid = target.flatten(1).sum(-1) > 0  # [B]
    if not valid.any():
        return maps.sum() * 0.0
    return -torch.log(mass[valid] + EPS).mean()


def box_attention_loss(maps: torch.Tensor, boxes: torch.Tensor, image_size: int,
                       heads: Sequence[int] | None = None) -> torch.Tensor:
    """:func:`mask_attention_loss` with the target the boxes' token shares (:func:`box_token_mask`).

    maps [B, heads, h, w] (each sums to 1, differentiable); boxes float [B, 4] pixel x0, y0, x1, y1
    (inclusive) in the ``image_size`` px input image (scale Tiny-ImageNet's 64 px boxes when resizing).
    """
    return mask_attention_loss(maps, box_token_mask(boxes.to(maps.device), image_size, maps.shape[-2:]), heads)


def contrastive_box_attention_loss(maps: torch.Tensor, boxes: torch.Tensor, image_size: int,
                                   heads: Sequence[int] | None = None) -> torch.Tensor:
    """Mean over images and chosen heads of -log(r_bb / sum_j r_bj), r_bj = mass of map b in box j / area of
    box j (module docstring): >= log(B) for any map that ignores the image, -> 0 for maps that follow the object.

    maps [B, heads, h, w] (each sums to 1, differentiable); boxes float [B, 4] pixels x0, y0, x1, y1 (inclusive)
    in the ``image_size`` px input. A batch of one image has no other box to contrast with: 0 (attached).
    """
    if maps.dim() != 4:
        raise ValueError(f"maps must be [B, heads, h, w], got {tuple(maps.shape)}")
    b, n_heads, h, w = maps.shape
    if b < 2:
        return maps.sum() * 0.0
    target = box_token_mask(boxes.to(maps.device), image_size, (h, w)).to(maps.dtype)  # [B, h, w]
    if heads is not None:
        heads = list(heads)
        if not heads or min(heads) < 0 or max(heads) >= n_heads:
            raise ValueError(f"heads {heads} must be a non-empty subset of 0..{n_heads - 1}")
        maps = maps[:, heads]
    area = target.flatten(1).sum(-1) / (h * w)  # [B] share of the image
    mass = torch.einsum("bkt,jt->bkj", maps.flatten(2), target.flatten(1))  # [B, k, B]: map b in box j
    ratio = mass / area.clamp_min(EPS)  # [B, k, B]
    logits = torch.log(ratio + EPS)
    own = torch.arange(b, device=maps.device)
    return -(logits.log_softmax(-1)[own, :, own]).mean()
