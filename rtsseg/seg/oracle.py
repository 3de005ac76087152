"""Oracle attention: what the decoders would gain from attention that *does* locate the objects.

Why: "attention-aware decoder − same-capacity control" on a real backbone's attention is near 0; that cannot
tell "the backbone's attention carries nothing the decoder can use" from "the decoder cannot use attention".
The oracle replaces the backbone's attention by one built from the label mask at the token grid -- the
best attention a token grid can have -- and degraded copies at known signal-to-noise ratios. A decoder whose
gain over the control is not above 0 even with the clean oracle cannot answer the question.

Token classes (masks [B, H0, W0], 255 = void, area-averaged onto the grid (h, w) as in
:func:`rtsseg.seg.decoders.token_class_fractions`): token i's class c_i is the majority *non-void* class of its
cell; a cell with no labelled pixel is a **void token**.

    affinity  A[b, h, i, j] = 1 / |{j : c_j = c_i}|  if c_j = c_i  else 0           [B, H, N, N], rows sum to 1
              (the same for every head; a void token attends only to itself, so propagation along A leaves
              it unchanged, and no labelled row ever attends to a void token)
    maps      head h shows the classes C_h = {c : c mod H = h}: M[b, h] = share of C_h in each cell,
              normalised to sum 1 (uniform when no class of C_h is in the image)    [B, H, h, w]

Degradation (:func:`degrade`), as :func:`rtsseg.attention.evaluate.planted_maps`: every row (a map over the N
tokens) is blurred with a Gaussian of ``blur_sigma`` tokens on the grid, standardised to s (zero mean, unit std
over the row) and replaced by softmax(temperature · (snr · s + ε)), ε ~ N(0, 1) per entry: ``snr`` is the ratio
of the signal's std to the noise's; snr = inf returns the clean oracle unchanged, snr = 0 pure noise near uniform.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from rtsseg.seg.decoders import token_class_fractions
from rtsseg.seg.train import OutputStore

VOID_TOKEN = -1


def class_fractions(masks: torch.Tensor, num_classes: int, grid: Sequence[int], ignore_index: int = 255
                    ) -> torch.Tensor:
    """:func:`rtsseg.seg.decoders.token_class_fractions` [B, K, h, w], by counting (``bincount``) when the
    grid divides the mask (every cell the same pixels, as for CamVid's 360x480 on 12x16): ~50x faster than
    pooling a one-hot [B, K, H0, W0], which matters when every image of a split is converted."""
    b, hh, ww = masks.shape
    h, w = int(grid[0]), int(grid[1])
    if hh % h or ww % w:
        return token_class_fractions(masks.long(), num_classes, (h, w), ignore_index)
    rows = torch.arange(hh, device=masks.device) // (hh // h)
    cols = torch.arange(ww, device=masks.device) // (ww // w)
    cell = (rows[:, None] * w + cols[None, :]).reshape(-1)  # [H0*W0]
    m = masks.long().reshape(b, -1)  # [B, H0*W0]
    valid = m != ignore_index
    idx = (torch.arange(b, device=masks.device)[:, None] * (h * w) + cell[None]) * num_classes + m.clamp(0, num_classes - 1)
    counts = torch.bincount(idx[valid], minlength=b * h * w * num_classes).float()
    counts = counts.reshape(b, h * w, num_classes).transpose(1, 2)  # [B, K, N]
    return (counts / ((hh // h) * (ww // w))).reshape(b, num_classes, h, w)


def token_classes(masks: torch.Tensor, grid: Sequence[int], num_classes: int, ignore_index: int = 255
                  ) -> torch.Tensor:
    """Majority non-void class of each token cell, ``VOID_TOKEN`` (-1) for a cell without labelled pixels:
    masks [B, H0, W0] -> int64 [B, N], N = h*w (row-major over the grid)."""
    frac = class_fractions(masks, num_classes, grid, ignore_index).flatten(2)  # [B, K, N]
    share, cls = frac.max(1)  # [B, N]
    return torch.where(share > 0, cls, torch.full_like(cls, VOID_TOKEN))


def oracle_affinity(masks: torch.Tensor, grid: Sequence[int], heads: int, num_classes: int = 11,
                    ignore_index: int = 255) -> torch.Tensor:
    """Token-to-token oracle: row i uniform over the tokens of token i's class (module docstring), the same for
    every head; a void token's row is itself only. masks [B, H0, W0] -> float32 [B, heads, N, N]."""
    cls = token_classes(masks, grid, num_classes, ignore_index)  # [B, N]
    n = cls.shape[1]
    same = (cls[:, :, None] == cls[:, None, :]) & (cls[:, :, None] != VOID_TOKEN)  # [B, N, N]
    eye = torch.eye(n, dtype=torch.bool, device=cls.device)
    same = same | (eye & (cls[:, :, None] == VOID_TOKEN))  # void token: attends to itself
    a = same.float()
    a = a / a.sum(-1, keepdim=True)  # every row has >= 1 entry (its own token)
    return a[:, None].expand(-1, heads, -1, -1).contiguous()


def head_classes(heads: int, num_classes: int) -> list[list[int]]:
    """The classes head h shows in :func:`oracle_maps`: ``[c for c in range(K) if c % heads == h]``."""
    return [[c for c in range(num_classes) if c % heads == h] for h in range(heads)]


def oracle_maps(masks: torch.Tensor, grid: Sequence[int], heads: int, num_classes: int = 11,
                ignore_index: int = 255) -> torch.Tensor:
    """Per-head oracle maps: head h = the share of its classes (:func:`head_classes`) in each token cell,
    normalised to sum 1, uniform where the image holds none of them. masks [B, H0, W0] -> float32 [B, heads, h, w]."""
    frac = class_fractions(masks, num_classes, grid, ignore_index)  # [B, K, h, w]
    m = torch.stack([frac[:, cs].sum(1) if cs else torch.zeros_like(frac[:, 0])
                     for cs in head_classes(heads, num_classes)], 1)  # [B, heads, h, w]
    total = m.flatten(2).sum(-1)[..., None, None]  # [B, heads, 1, 1]
    uniform = torch.full_like(m, 1.0 / (m.shape[-2] * m.shape[-1]))
    return torch.where(total > 0, m / total.clamp_min(1e-12), uniform)


def _blur_rows(x: torch.Tensor, grid: Sequence[int], sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (replicate padding) of rows over the grid: [M, h*w] -> [M, h*w]."""
    h, w = int(grid[0]), int(grid[1])
    r = max(1, math.ceil(3 * sigma))
    pos = torch.arange(-r, r + 1, dtype=torch.float32, device=x.device)
    k1 = torch.exp(-0.5 * (pos / sigma) ** 2)
    k1 = k1 / k1.sum()
    s = x.float().reshape(-1, 1, h, w)
    s = F.conv2d(F.pad(s, (r, r, 0, 0), mode="replicate"), k1.view(1, 1, 1, -1))
    s = F.conv2d(F.pad(s, (0, 0, r, r), mode="replicate"), k1.view(1, 1, -1, 1))
    return s.reshape(x.shape[0], h * w)


def degrade(att: torch.Tensor, snr: float, generator: torch.Generator | None = None,
            grid: Sequence[int] | None = None, blur_sigma: float = 1.0, temperature: float = 0.05) -> torch.Tensor:
    """The oracle at signal-to-noise ratio ``snr`` (module docstring). ``att`` is maps [B, H, h, w] (``grid``
    None: the last two dims are the grid) or an affinity [B, H, N, N] (``grid`` = (h, w), N = h*w: every row
    is a map over the grid). Returns float32 of ``att``'s shape, every row / map summing to 1; ``snr = inf``
    returns ``att`` itself (as float32)."""
    if math.isinf(snr) and snr > 0:
        return att.float()
    if snr < 0:
        raise ValueError(f"degrade: snr must be >= 0 (or inf for the clean oracle), got {snr}")
    shape = att.shape
    if grid is None:  # maps: one row per [h, w]
        grid = tuple(shape[-2:])
    elif shape[-1] != grid[0] * grid[1]:
        raise ValueError(f"degrade: rows of {tuple(shape)} do not cover the grid {tuple(grid)}; pass grid=(h, w) "
                         f"with h*w = the affinity's N")
    rows = att.reshape(-1, grid[0] * grid[1])  # [M, N]
    s = _blur_rows(rows, grid, blur_sigma)
    s = (s - s.mean(-1, keepdim=True)) / s.std(-1, keepdim=True).clamp_min(1e-6)
    noise = torch.randn(s.shape, generator=generator).to(s.device)
    return torch.softmax(temperature * (snr * s + noise), -1).reshape(shape)


def same_class_mass(affinity: torch.Tensor, masks: torch.Tensor, grid: Sequence[int], num_classes: int = 11,
                    ignore_index: int = 255) -> float:
    """Mean over labelled query tokens (and heads) of the attention mass on the tokens of the query's class:
    1 for the clean oracle, its class's token share for uniform attention. affinity [B, H, N, N]."""
    cls = token_classes(masks, grid, num_classes, ignore_index)  # [B, N]
    same = ((cls[:, :, None] == cls[:, None, :]) & (cls[:, :, None] != VOID_TOKEN)).float()  # [B, N, N]
    mass = (affinity.float() * same[:, None]).sum(-1)  # [B, H, N]
    keep = (cls != VOID_TOKEN)[:, None].expand_as(mass)
    return float(mass[keep].mean())


def oracle_store(store: OutputStore, num_classes: int, snr: float = math.inf, seed: int = 0,
                 blur_sigma: float = 1.0, ignore_index: int = 255) -> OutputStore:
    """``store`` with its affinity and maps replaced by the oracle's at ``snr`` (the same frozen stages and
    masks, the same layouts and dtypes: affinity [H, N, N] float16, maps [H, h, w] float32 per image; the
    identity gains ``oracle = {snr, seed, blur_sigma}``). The noise is drawn from ``seed``, so a store is
    reproducible and its degradation independent of the decoder's seed."""
    generator = torch.Generator().manual_seed(seed)
    out = OutputStore(stages=store.stages, masks=store.masks,
                      identity={**store.identity, "oracle": {"snr": snr, "seed": seed, "blur_sigma": blur_sigma}})
    for i in range(len(store)):
        heads, h, w = store.maps[i].shape
        m = store.masks[i][None].long()  # [1, H0, W0]
        a = degrade(oracle_affinity(m, (h, w), heads, num_classes, ignore_index), snr, generator, (h, w),
                    blur_sigma)  # [1, heads, N, N]
        p = degrade(oracle_maps(m, (h, w), heads, num_classes, ignore_index), snr, generator, None, blur_sigma)
        out.affinity.append(a[0].half())
        out.maps.append(p[0].float())
    return out
