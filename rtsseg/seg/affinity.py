"""Multi-stage features and full token-to-token attention of a backbone, in one forward pass.

The attention-aware decoder (:mod:`rtsseg.seg.decoders`) needs three things from the backbone:

    stages    [B, C_s, h_s, w_s] for s = 1..S, finest first, the last one = ``forward_features`` (SegFormer-style
              inputs). Hierarchical backbones give their stages (Swin: ``model.layers[i]``; ResNet/BoTNet:
              ``layer1..layer4``); a ViT has one grid, so several blocks are taken (``vit_blocks``).
    affinity  [B, heads, N, N] of the LAST attention layer on its token grid (h, w), N = h*w, every row a
              probability over the N patch keys:
                ViT     the patch-to-patch block of the last block's attention, rows renormalised (the CLS key
                        dropped);
                Swin    the last block's window attention put back on the full grid: A[i, j] = window attention
                        when i and j share a window (cyclic shift undone, padding dropped), 0 otherwise;
                BoTNet  the last MHSA's attention (already all-to-all).
    maps      [B, heads, h, w] per-head maps with :mod:`rtsseg.attention.capture`'s default query (CLS for
              ViT, "received" otherwise), each summing to 1 -- the same maps the attention chapter studies.

Hooks follow ``capture_attention_weights``: the attention module is switched to its unfused path inside a
context manager and ``attn_drop``'s input (the post-softmax attention) is recorded; outputs are unchanged.
With ``grad=True`` nothing is detached, so a fine-tuned backbone gets gradients through features and
attention (for the attention-supervision loss on the backbone's heads).
"""

from __future__ import annotations

from contextlib import ExitStack, nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from rtsseg.attention.capture import (
    _module,
    grid_maps,
    resolve_layer,
    swin_maps,
    unfused_attention,
    window_token_index,
)


@dataclass
class BackboneOutputs:
    stages: list[torch.Tensor]  # each [B, C_s, h_s, w_s], finest first; stages[-1] = forward_features
    affinity: torch.Tensor  # [B, heads, N, N], rows sum to 1, N = grid[0] * grid[1]
    maps: torch.Tensor  # [B, heads, h, w], each map sums to 1
    grid: tuple[int, int]  # (h, w) of the attention's token grid


def default_vit_blocks(depth: int) -> list[int]:
    """Indices of the intermediate ViT blocks used as extra "stages": ~1/4, 1/2, 3/4 of the depth (the last
    block enters through ``forward_features``, after the final norm), as DPT/ViTDet do with 4 taps."""
    return sorted({max(0, min(depth - 2, round(depth * k / 4) - 1)) for k in (1, 2, 3)})


def stage_modules(backbone: nn.Module, vit_blocks: list[int] | None = None) -> list[str]:
    """Module names whose outputs are the intermediate stages (the last stage is ``forward_features``)."""
    family = getattr(backbone, "family", "")
    if family == "vit":
        blocks = vit_blocks if vit_blocks is not None else default_vit_blocks(len(backbone.model.blocks))
        return [f"model.blocks.{i}" for i in blocks]
    if family == "swin":
        return [f"model.layers.{i}" for i in range(len(backbone.model.layers) - 1)]
    if family in ("resnet", "botnet"):
        return ["model.layer1", "model.layer2", "model.layer3"]
    raise ValueError(f"no multi-stage features for backbone family {family!r}; use a ViT, Swin, ResNet or BoTNet")


def swin_full_affinity(attn: torch.Tensor, batch: int, grid: tuple[int, int], window: tuple[int, int],
                       shift: tuple[int, int]) -> torch.Tensor:
    """Window attention [B*nW, heads, T, T] -> block-sparse [B, heads, N, N] on the original grid.

    A[b, h, i, j] = attention of token i to token j inside their common window (timm's cyclic shift and
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


def backbone_outputs(backbone: nn.Module, x: torch.Tensor, vit_blocks: list[int] | None = None,
                     grad: bool = False) -> BackboneOutputs:
    """One forward of ``backbone`` on normalised images ``x`` [B,3,H,W]: stages, affinity and maps.

    ``grad=False`` runs under ``torch.no_grad`` (frozen backbone, cached features).
    """
    family = getattr(backbone, "family", "")
    layer = resolve_layer(backbone, None)  # the last attention layer
    attn_module = _module(backbone, layer)
    names = stage_modules(backbone, vit_blocks)
    record: dict[str, object] = {}
    outs: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(_m, _a, out):
            outs[name] = out
        return hook

    def on_attn(_m, args, _out):
        record["attn"] = args[0]

    def on_input(_m, args):
        record["input_shape"] = tuple(args[0].shape)

    parent = _module(backbone, layer.rsplit(".", 1)[0]) if family == "swin" else attn_module
    handles = [_module(backbone, n).register_forward_hook(keep(n)) for n in names]
    handles += [attn_module.attn_drop.register_forward_hook(on_attn), parent.register_forward_pre_hook(on_input)]
    try:
        with ExitStack() as stack:
            stack.enter_context(torch.no_grad() if not grad else nullcontext())
            stack.enter_context(unfused_attention(attn_module))
            last = backbone.forward_features(x)  # [B, C, h, w]
    finally:
        for hd in handles:
            hd.remove()
    if "attn" not in record:
        raise RuntimeError(f"layer {layer!r} did not run its unfused attention path")
    attn: torch.Tensor = record["attn"].float()
    shape = record["input_shape"]
    b = x.shape[0]
    stages = []
    for n in names:
        o = outs[n]
        if family == "vit":  # [B, P + h*w, C] -> [B, C, h, w]
            gh, gw = backbone.grid_size(x)
            o = o[:, backbone.model.num_prefix_tokens:].transpose(1, 2).reshape(b, -1, gh, gw)
        elif family == "swin":  # [B, h, w, C]
            o = o.permute(0, 3, 1, 2)
        stages.append(o)
    stages.append(last)
    if family == "swin":
        grid, window, shift = (shape[1], shape[2]), tuple(parent.window_size), tuple(parent.shift_size)
        affinity = swin_full_affinity(attn, b, grid, window, shift)
        maps = swin_maps(attn, b, grid, window, shift, "received")
    elif family == "botnet":
        grid = (shape[2], shape[3])
        affinity = attn
        maps = grid_maps(attn, grid, 0, "received")
    else:
        grid = backbone.grid_size(x)
        prefix = shape[1] - grid[0] * grid[1]
        patches = attn[:, :, prefix:, prefix:]  # [B, heads, N, N]
        affinity = patches / patches.sum(-1, keepdim=True).clamp_min(torch.finfo(patches.dtype).tiny)
        maps = grid_maps(attn, grid, prefix, "cls")
    return BackboneOutputs(stages=stages, affinity=affinity, maps=maps, grid=tuple(grid))
