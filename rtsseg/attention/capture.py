"""Capture per-head attention maps with forward hooks: one probability map per head over the token grid.

Every supported attention module (timm ``Attention`` in ViT, timm ``WindowAttention`` in Swin, our BoTNet
``MHSA``) passes its post-softmax attention through ``attn_drop`` when ``fused_attn`` is False. Capturing
sets ``fused_attn = False`` on the captured module only, inside a context manager, hooks ``attn_drop`` (its
input is the attention [B*, heads, N, N]; dropout is the identity in eval mode), and restores everything
afterwards, so model outputs are unchanged.

Queries -- the one definition used everywhere (``query=None`` picks the default of the family):
    "cls"       ViT only (default for ViT): the CLS token's row over the patch tokens, ``attn[:, :, 0, 1:]``
                as in DINO, renormalised over the patches (the CLS-to-CLS weight is dropped).
    "received"  default for backbones without a CLS token (Swin, BoTNet): the attention each patch token
                *receives*, averaged over all patch queries -- mean_i attn[i, j] -- then renormalised over
                the grid. For Swin the mean is taken inside each window (keys only see their window) and
                the windows are put back on the image grid (cyclic shift undone, padding cropped). ViT:
                patch queries and patch keys only.
    (row, col)  one patch token as the query: its attention row on the grid (for Swin, zero outside its
                window), renormalised over the grid.
Every map sums to 1 over the grid.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Union

import torch
from torch import nn

Query = Union[str, tuple[int, int], None]


def _module(backbone: nn.Module, name: str) -> nn.Module:
    modules = dict(backbone.named_modules())
    if name not in modules:
        raise KeyError(f"no module {name!r} in {type(backbone).__name__}; attention layers: "
                       f"{getattr(backbone, 'attention_layers', lambda: [])()}")
    return modules[name]


def resolve_layer(backbone: nn.Module, layer: str | int | None) -> str:
    """``None`` -> last attention layer, int -> index into ``backbone.attention_layers()``, str -> as is."""
    layers = backbone.attention_layers()
    if not layers:
        raise ValueError(f"backbone {getattr(backbone, 'name', type(backbone).__name__)!r} (family "
                         f"{getattr(backbone, 'family', '?')!r}) has no attention layers; use a ViT, Swin or BoTNet")
    if layer is None:
        return layers[-1]
    if isinstance(layer, int):
        return layers[layer]
    if layer not in layers:
        raise KeyError(f"{layer!r} is not an attention layer; choose one of {layers}")
    return layer


@contextmanager
def unfused_attention(module: nn.Module) -> Iterator[None]:
    """Set ``module.fused_attn = False`` inside the block, restore it afterwards."""
    old = module.fused_attn
    module.fused_attn = False
    try:
        yield
    finally:
        module.fused_attn = old


@torch.no_grad()
def capture_attention_weights(backbone: nn.Module, x: torch.Tensor, layer: str | int | None = None
                              ) -> dict[str, object]:
    """Run ``backbone(x)`` once and return the raw attention of ``layer``.

    Returns dict(attn [B*, heads, N, N] float (rows sum to 1), output (the backbone's output), layer,
    grid (h, w) of the tokens the attention ran on, and for Swin: window (wh, ww), shift (sh, sw)).
    For Swin, B* = B * windows in timm's window_partition order (batch-major).
    """
    name = resolve_layer(backbone, layer)
    attn_module = _module(backbone, name)
    record: dict[str, object] = {"layer": name}

    def on_attn(_m: nn.Module, args: tuple, _out: object) -> None:
        record["attn"] = args[0].detach()

    def on_input(_m: nn.Module, args: tuple) -> None:
        record["input_shape"] = tuple(args[0].shape)

    family = getattr(backbone, "family", "")
    parent = _module(backbone, name.rsplit(".", 1)[0]) if family == "swin" else attn_module
    handles = [attn_module.attn_drop.register_forward_hook(on_attn), parent.register_forward_pre_hook(on_input)]
    try:
        with unfused_attention(attn_module):
            record["output"] = backbone(x)
    finally:
        for h in handles:
            h.remove()
    if "attn" not in record:
        raise RuntimeError(f"layer {name!r} did not run its unfused attention path")
    shape = record.pop("input_shape")
    if family == "swin":  # block input [B, H, W, C]
        record["grid"] = (shape[1], shape[2])
        record["window"] = tuple(parent.window_size)
        record["shift"] = tuple(parent.shift_size)
    elif family == "botnet":  # MHSA input [B, C, H, W]
        record["grid"] = (shape[2], shape[3])
    else:  # ViT Attention input [B, prefix + h*w, C]
        h, w = backbone.grid_size(x)
        record["grid"] = (h, w)
        record["num_prefix_tokens"] = shape[1] - h * w
    return record


def capture_attention(backbone: nn.Module, x: torch.Tensor, layer: str | int | None = None,
                      query: Query = None) -> torch.Tensor:
    """Per-head attention maps of ``layer`` (default: the last) for images ``x`` [B,3,H,W] (normalised).

    Returns [B, heads, h, w], each map summing to 1 over the token grid (see the module docstring for
    the ``query`` definitions; None -> "cls" for ViT, "received" otherwise).
    """
    rec = capture_attention_weights(backbone, x, layer)
    return maps_from_record(backbone, rec, x.shape[0], query)


def maps_from_record(backbone: nn.Module, rec: dict, batch: int, query: Query = None) -> torch.Tensor:
    """A record of :func:`capture_attention_weights` (or :class:`AttentionRecorder`) -> maps [B, heads, h, w]."""
    family = getattr(backbone, "family", "")
    if query is None:
        query = "cls" if family == "vit" else "received"
    attn: torch.Tensor = rec["attn"]
    if family == "swin":
        return swin_maps(attn, batch, rec["grid"], rec["window"], rec["shift"], query)
    prefix = rec.get("num_prefix_tokens", 0)
    return grid_maps(attn, rec["grid"], prefix, query)


class AttentionRecorder:
    """Differentiable capture for training with an attention loss (``rtsseg.attention.supervision``).

    ``with AttentionRecorder(backbone, layer) as rec: out = backbone(x); loss = f(rec.maps)``: inside the
    block the recorded module runs its unfused path (``fused_attn = False`` on that module only; every other
    module keeps its fused kernel), a hook keeps its post-softmax attention *with* its graph (the input of
    ``attn_drop``, i.e. before attention dropout), and ``rec.maps`` turns the last forward's attention into
    maps [B, heads, h, w] (each summing to 1; ``query`` as in :func:`capture_attention`) that gradients flow
    through. Works in train and eval mode; in eval mode the maps equal :func:`capture_attention`'s. Hooks
    and the flag are restored on exit. Only the last forward inside the block is kept.
    """

    def __init__(self, backbone: nn.Module, layer: str | int | None = None, query: Query = None) -> None:
        self.backbone = backbone
        self.layer = resolve_layer(backbone, layer)
        self.query = query
        self.module = _module(backbone, self.layer)
        self.record: dict[str, object] = {}
        self._handles: list = []
        self._old_fused: object = None

    def __enter__(self) -> "AttentionRecorder":
        family = getattr(self.backbone, "family", "")
        parent = _module(self.backbone, self.layer.rsplit(".", 1)[0]) if family == "swin" else self.module
        rec = self.record

        def on_attn(_m: nn.Module, args: tuple, _out: object) -> None:
            rec["attn"] = args[0]  # [B*, heads, N, N], keeps the graph

        def on_parent(_m: nn.Module, args: tuple) -> None:
            shape = tuple(args[0].shape)
            rec["shape"] = shape
            if family == "swin":  # block input [B, H, W, C]
                rec.update(grid=(shape[1], shape[2]), window=tuple(parent.window_size),
                           shift=tuple(parent.shift_size), batch=shape[0])
            elif family == "botnet":  # MHSA input [B, C, H, W]
                rec.update(grid=(shape[2], shape[3]), batch=shape[0])

        def on_image(_m: nn.Module, args: tuple) -> None:  # ViT patch embedding input [B, 3, H, W]
            rec.update(grid=self.backbone.grid_size(args[0]), batch=args[0].shape[0])

        self._old_fused = getattr(self.module, "fused_attn", False)
        self.module.fused_attn = False
        self._handles = [self.module.attn_drop.register_forward_hook(on_attn),
                         parent.register_forward_pre_hook(on_parent)]
        if family == "vit":  # hooked on the patch embedding, so forward() and forward_features() both work
            self._handles.append(self.backbone.model.patch_embed.register_forward_pre_hook(on_image))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self.module.fused_attn = self._old_fused

    @property
    def maps(self) -> torch.Tensor:
        """[B, heads, h, w] of the last forward, differentiable."""
        if "attn" not in self.record:
            raise RuntimeError(f"no attention recorded for {self.layer!r}: run backbone(x) inside the `with` block")
        rec = dict(self.record)
        if getattr(self.backbone, "family", "") == "vit":
            h, w = rec["grid"]
            rec["num_prefix_tokens"] = rec["shape"][1] - h * w  # ViT Attention input [B, prefix + h*w, C]
        return maps_from_record(self.backbone, rec, rec["batch"], self.query)


def _renormalise(maps: torch.Tensor) -> torch.Tensor:
    """[..., h, w] -> each map divided by its sum."""
    return maps / maps.sum(dim=(-2, -1), keepdim=True).clamp_min(torch.finfo(maps.dtype).tiny)


def grid_maps(attn: torch.Tensor, grid: tuple[int, int], num_prefix_tokens: int, query: Query) -> torch.Tensor:
    """Global attention [B, heads, P+N, P+N] (P prefix tokens, N = h*w patches) -> maps [B, heads, h, w]."""
    h, w = grid
    b, n_heads = attn.shape[:2]
    p = num_prefix_tokens
    patches = attn[:, :, :, p:]  # keys: patches only, [B, heads, P+N, N]
    if query == "cls":
        if p == 0:
            raise ValueError("query='cls' needs a CLS token; this backbone has none (use 'received' or (row, col))")
        rows = patches[:, :, 0]  # [B, heads, N]
    elif query == "received":
        rows = patches[:, :, p:].mean(dim=2)  # mean over patch queries, [B, heads, N]
    elif isinstance(query, tuple) and len(query) == 2:
        r, c = _check_query(query, grid)
        rows = patches[:, :, p + r * w + c]
    else:
        raise ValueError(f"query must be 'cls', 'received' or (row, col); got {query!r}")
    return _renormalise(rows.reshape(b, n_heads, h, w))


def _check_query(query: tuple[int, int], grid: tuple[int, int]) -> tuple[int, int]:
    r, c = int(query[0]), int(query[1])
    if not (0 <= r < grid[0] and 0 <= c < grid[1]):
        raise ValueError(f"query {query} is outside the token grid {grid}")
    return r, c


def window_token_index(grid: tuple[int, int], window: tuple[int, int], shift: tuple[int, int],
                       device: torch.device | None = None) -> torch.Tensor:
    """Original flat grid index of every window token, following timm's Swin block: cyclic shift by
    -shift, zero padding to a multiple of the window, ``window_partition``. Returns [windows, wh*ww] long,
    -1 for padding tokens."""
    h, w = grid
    idx = torch.arange(h * w, device=device).reshape(h, w)
    if any(shift):
        idx = torch.roll(idx, shifts=(-shift[0], -shift[1]), dims=(0, 1))
    pad_h, pad_w = (-h) % window[0], (-w) % window[1]
    idx = torch.nn.functional.pad(idx, (0, pad_w, 0, pad_h), value=-1)
    hp, wp = idx.shape
    idx = idx.reshape(hp // window[0], window[0], wp // window[1], window[1]).permute(0, 2, 1, 3)
    return idx.reshape(-1, window[0] * window[1])  # [nW, N]


def swin_maps(attn: torch.Tensor, batch: int, grid: tuple[int, int], window: tuple[int, int],
              shift: tuple[int, int], query: Query) -> torch.Tensor:
    """Window attention [B*nW, heads, N, N] -> full-grid maps [B, heads, h, w] (shift undone, padding cropped)."""
    h, w = grid
    index = window_token_index(grid, window, shift, attn.device)  # [nW, N]
    n_win, n_tok = index.shape
    n_heads = attn.shape[1]
    attn = attn.reshape(batch, n_win, n_heads, n_tok, n_tok)
    if query == "received":
        valid = (index >= 0).to(attn.dtype)  # padding tokens are no queries
        rows = (attn * valid[None, :, None, :, None]).sum(dim=3) / valid.sum(dim=1).clamp_min(1)[None, :, None, None]
    elif isinstance(query, tuple) and len(query) == 2:
        r, c = _check_query(query, grid)
        win, tok = (index == r * w + c).nonzero()[0].tolist()
        rows = torch.zeros(batch, n_win, n_heads, n_tok, dtype=attn.dtype, device=attn.device)
        rows[:, win] = attn[:, win, :, tok]
    elif query == "cls":
        raise ValueError("query='cls' needs a CLS token; Swin has none (use 'received' or (row, col))")
    else:
        raise ValueError(f"query must be 'received' or (row, col); got {query!r}")
    # rows [B, nW, heads, N] -> scatter onto the grid
    keep = index.reshape(-1) >= 0
    target = index.reshape(-1)[keep]  # [h*w] original positions
    values = rows.permute(0, 2, 1, 3).reshape(batch, n_heads, n_win * n_tok)[:, :, keep]
    maps = torch.zeros(batch, n_heads, h * w, dtype=attn.dtype, device=attn.device)
    maps.scatter_(2, target.expand(batch, n_heads, -1), values)
    return _renormalise(maps.reshape(batch, n_heads, h, w))
