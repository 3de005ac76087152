"""Multi-stage features and full token-to-token attention of a backbone, in one forward pass.

The attention-aware decoder (:mod:`rtsseg.seg.decoders`) needs three things from the backbone:

    stages    [B, C_s, h_s, w_s] for s = 1..S, finest first, the last one = ``forward_features`` (SegFormer-style
              inputs): ``Backbone.stages`` (hierarchical backbones give their stages; a single-grid backbone,
              a ViT, taps several blocks, ``vit_blocks``).
    affinity  [B, heads, N, N] of the LAST attention layer on its token grid (h, w), N = h*w, every row a
              probability over the N grid keys, read from the recorded ``AttentionLayout``:
                global attention    the grid-to-grid block, rows renormalised when prefix tokens (a CLS key)
                                    are dropped; without prefix tokens the attention as recorded;
                windowed attention  put back on the full grid: A[i, j] = window attention when i and j share a
                                    window (cyclic shift undone, padding dropped), 0 otherwise.
    maps      [B, heads, h, w] per-head maps with the backbone's ``default_query`` (CLS row for ViT,
              "received" otherwise), each summing to 1 -- the same maps the attention chapter studies.

The attention is recorded by the backbone (``Backbone.record_attention``) around the same forward that gives
the stages, so outputs are unchanged. With ``grad=True`` nothing is detached, so a fine-tuned backbone gets
gradients through features and attention (for the attention-supervision loss on the backbone's heads).
"""

from __future__ import annotations

from contextlib import ExitStack, nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from rtsseg.attention.capture import layout_maps, window_token_index
from rtsseg.models.backbone import AttentionLayout


@dataclass
class BackboneOutputs:
    stages: list[torch.Tensor]  # each [B, C_s, h_s, w_s], finest first; stages[-1] = forward_features
    affinity: torch.Tensor  # [B, heads, N, N], rows sum to 1, N = grid[0] * grid[1]
    maps: torch.Tensor  # [B, heads, h, w], each map sums to 1
    grid: tuple[int, int]  # (h, w) of the attention's token grid


def stage_modules(backbone: nn.Module, vit_blocks: list[int] | None = None) -> list[str]:
    """Module names whose outputs are the intermediate stages (the last stage is ``forward_features``)."""
    return backbone.stage_layers(vit_blocks)


def swin_full_affinity(attn: torch.Tensor, batch: int, grid: tuple[int, int], window: tuple[int, int],
                       shift: tuple[int, int]) -> torch.Tensor:
    """Window attention [B*nW, heads, T, T] -> block-sparse [B, heads, N, N] on the original grid.

    A[b, h, i, j] = attention of token i to token j inside their common window (the cyclic shift and
    padding undone via ``window_token_index``), 0 across windows; rows renormalised over the real tokens
    (padding keys dropped).
    """
    h, w = grid
    n = h * w
    index = window_token_index(grid, window, shift, attn.device)  # [nW, T]
    n_win, t = index.shape
    heads = attn.shape[1]
    attn = attn.reshape(batch, n_win, heads, t, t).permute(0, 2, 1, 3, 4)  # [B, heads, nW, T, T]
    qi = index[:, :, None].expand(n_win, t, t)
    ki = index[:, None, :].expand(n_win, t, t)
    valid = (qi >= 0) & (ki >= 0)  # [nW, T, T]
    flat = (qi * n + ki)[valid]  # [M]
    values = attn[:, :, valid]  # [B, heads, M]
    full = attn.new_zeros(batch, heads, n * n).scatter(2, flat.expand(batch, heads, -1), values)
    full = full.reshape(batch, heads, n, n)
    return full / full.sum(-1, keepdim=True).clamp_min(torch.finfo(full.dtype).tiny)


window_full_affinity = swin_full_affinity


def layout_affinity(attn: torch.Tensor, layout: AttentionLayout) -> torch.Tensor:
    """Recorded attention [B*, heads, Nq, Nk] and its layout -> [B, heads, N, N] over the grid tokens."""
    if layout.window is not None:
        return swin_full_affinity(attn, layout.batch, layout.grid, layout.window, layout.shift)
    p = layout.prefix
    if not p:
        return attn  # already grid-to-grid, rows sum to 1
    patches = attn[:, :, p:, p:]  # [B, heads, N, N]
    return patches / patches.sum(-1, keepdim=True).clamp_min(torch.finfo(patches.dtype).tiny)


def backbone_outputs(backbone: nn.Module, x: torch.Tensor, vit_blocks: list[int] | None = None,
                     grad: bool = False) -> BackboneOutputs:
    """One forward of ``backbone`` on normalised images ``x`` [B,3,H,W]: stages, affinity and maps.

    ``grad=False`` runs under ``torch.no_grad`` (frozen backbone, cached features).
    """
    with ExitStack() as stack:
        stack.enter_context(torch.no_grad() if not grad else nullcontext())
        record = stack.enter_context(backbone.record_attention())  # the last attention layer
        stages = backbone.stages(x, vit_blocks)
    if record.attn is None:
        raise RuntimeError(f"layer {record.layer!r} did not run its unfused attention path")
    attn = record.attn.float()
    layout = record.layout
    affinity = layout_affinity(attn, layout)
    maps = layout_maps(attn, layout, backbone.default_query)
    return BackboneOutputs(stages=stages, affinity=affinity, maps=maps, grid=tuple(layout.grid))
