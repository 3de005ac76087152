"""Per-head attention maps: one probability map per head over the token grid, for any backbone.

The backbone exposes its attention (``rtsseg.models.backbone.Backbone``: ``record_attention``,
``attention_record``, ``default_query``); its ``AttentionLayout`` says how the recorded ``[B*, heads, Nq, Nk]``
lies on the token grid -- global attention with ``prefix`` tokens before the grid, or windows with a cyclic
shift -- and this module turns that into maps without knowing which model produced it. Recording switches
the fused kernel off on the recorded module only and restores it, so model outputs are unchanged.

Queries -- the one definition used everywhere (``query=None`` picks the backbone's ``default_query``):
    "cls"       needs a prefix (CLS) token (ViT's default): the CLS token's row over the patch tokens,
                ``attn[:, :, 0, P:]`` as in DINO, renormalised over the patches (the CLS-to-CLS weight dropped).
    "received"  the default without a CLS token (Swin, BoTNet): the attention each grid token *receives*,
                averaged over all grid queries -- mean_i attn[i, j] -- then renormalised over the grid. With
                windows the mean is taken inside each window (keys only see their window) and the windows are
                put back on the image grid (cyclic shift undone, padding cropped). Prefix tokens are neither
                queries nor keys.
    (row, col)  one grid token as the query: its attention row on the grid (windows: zero outside its
                window), renormalised over the grid.
Every map sums to 1 over the grid.
"""

from __future__ import annotations

from typing import Union

import torch
from torch import nn

from rtsseg.models.backbone import AttentionLayout, AttentionRecord, unfused_attention

Query = Union[str, tuple[int, int], None]

__all__ = ["AttentionRecorder", "capture_attention", "capture_attention_weights", "unfused_attention",
           "maps_from_record", "layout_maps", "grid_maps", "window_maps", "swin_maps", "window_token_index",
           "resolve_layer"]


def _module(backbone: nn.Module, name: str) -> nn.Module:
    modules = dict(backbone.named_modules())
    if name not in modules:
        raise KeyError(f"no module {name!r} in {type(backbone).__name__}; attention layers: "
                       f"{getattr(backbone, 'attention_layers', lambda: [])()}")
    return modules[name]


def resolve_layer(backbone: nn.Module, layer: str | int | None) -> str:
    """``None`` -> last attention layer, int -> index into ``backbone.attention_layers()``, str -> as is."""
    return backbone.resolve_attention_layer(layer)


def _record_dict(rec: AttentionRecord) -> dict[str, object]:
    layout = rec.layout
    out: dict[str, object] = {"layer": rec.layer, "attn": rec.attn.detach(), "output": rec.output,
                              "layout": layout, "grid": tuple(layout.grid), "batch": layout.batch,
                              "num_prefix_tokens": layout.prefix}
    if layout.window is not None:
        out.update(window=tuple(layout.window), shift=tuple(layout.shift))
    return out


@torch.no_grad()
def capture_attention_weights(backbone: nn.Module, x: torch.Tensor, layer: str | int | None = None
                              ) -> dict[str, object]:
    """Run ``backbone(x)`` once and return the raw attention of ``layer``.

    Returns dict(attn [B*, heads, N, N] float (rows sum to 1), output (the backbone's output), layer,
    layout (``AttentionLayout``), grid (h, w) of the tokens the attention ran on, batch, num_prefix_tokens,
    and for windowed attention: window (wh, ww), shift (sh, sw)); then B* = B * windows, batch-major.
    """
    return _record_dict(backbone.attention_record(x, layer))


def capture_attention(backbone: nn.Module, x: torch.Tensor, layer: str | int | None = None,
                      query: Query = None) -> torch.Tensor:
    """Per-head attention maps of ``layer`` (default: the last) for images ``x`` [B,3,H,W] (normalised).

    Returns [B, heads, h, w], each map summing to 1 over the token grid (see the module docstring for
    the ``query`` definitions; None -> the backbone's ``default_query``).
    """
    rec = capture_attention_weights(backbone, x, layer)
    return maps_from_record(backbone, rec, x.shape[0], query)


def _layout_of(rec: dict | AttentionRecord, batch: int | None) -> tuple[torch.Tensor, AttentionLayout]:
    """(attn, layout) of a record: an ``AttentionRecord`` or a :func:`capture_attention_weights` dict."""
    if isinstance(rec, AttentionRecord):
        return rec.attn, rec.layout
    if rec.get("layout") is not None:
        return rec["attn"], rec["layout"]
    layout = AttentionLayout(grid=tuple(rec["grid"]), batch=batch if batch is not None else rec["batch"],
                             prefix=rec.get("num_prefix_tokens", 0), window=rec.get("window"),
                             shift=tuple(rec.get("shift", (0, 0))))
    return rec["attn"], layout


def maps_from_record(backbone: nn.Module, rec: dict | AttentionRecord, batch: int | None = None,
                     query: Query = None) -> torch.Tensor:
    """A record of :func:`capture_attention_weights` (or :class:`AttentionRecorder`) -> maps [B, heads, h, w]."""
    attn, layout = _layout_of(rec, batch)
    return layout_maps(attn, layout, backbone.default_query if query is None else query)


def layout_maps(attn: torch.Tensor, layout: AttentionLayout, query: Query) -> torch.Tensor:
    """Recorded attention [B*, heads, Nq, Nk] and its layout -> maps [B, heads, h, w] for ``query``."""
    if layout.window is not None:
        return window_maps(attn, layout.batch, layout.grid, layout.window, layout.shift, query)
    return grid_maps(attn, layout.grid, layout.prefix, query)


class AttentionRecorder:
    """Differentiable capture for training with an attention loss (``rtsseg.attention.supervision``).

    ``with AttentionRecorder(backbone, layer) as rec: out = backbone(x); loss = f(rec.maps)``: inside the
    block the backbone's ``record_attention`` keeps the recorded module's post-softmax attention *with* its
    graph (before attention dropout; the module runs its unfused path, every other module keeps its fused
    kernel), and ``rec.maps`` turns the last forward's attention into maps [B, heads, h, w] (each summing
    to 1; ``query`` as in :func:`capture_attention`) that gradients flow through. Works in train and eval
    mode and with ``forward`` or ``forward_features``; in eval mode the maps equal :func:`capture_attention`'s.
    Hooks and flags are restored on exit. Only the last forward inside the block is kept.
    """

    def __init__(self, backbone: nn.Module, layer: str | int | None = None, query: Query = None) -> None:
        self.backbone = backbone
        self.layer = backbone.resolve_attention_layer(layer)
        self.query = query
        self.module = _module(backbone, self.layer)
        self.record: AttentionRecord | None = None
        self._context = None

    def __enter__(self) -> "AttentionRecorder":
        self._context = self.backbone.record_attention(self.layer)
        self.record = self._context.__enter__()
        return self

    def __exit__(self, *exc: object) -> bool | None:
        context, self._context = self._context, None
        return context.__exit__(*exc)

    @property
    def maps(self) -> torch.Tensor:
        """[B, heads, h, w] of the last forward, differentiable."""
        if self.record is None or self.record.attn is None:
            raise RuntimeError(f"no attention recorded for {self.layer!r}: run backbone(x) inside the `with` block")
        return maps_from_record(self.backbone, self.record, query=self.query)


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
    """Original flat grid index of every window token of a windowed ``AttentionLayout`` (timm's Swin block):
    cyclic shift by -shift, zero padding to a multiple of the window, ``window_partition``. Returns
    [windows, wh*ww] long, -1 for padding tokens."""
    h, w = grid
    idx = torch.arange(h * w, device=device).reshape(h, w)
    if any(shift):
        idx = torch.roll(idx, shifts=(-shift[0], -shift[1]), dims=(0, 1))
    pad_h, pad_w = (-h) % window[0], (-w) % window[1]
    idx = torch.nn.functional.pad(idx, (0, pad_w, 0, pad_h), value=-1)
    hp, wp = idx.shape
    idx = idx.reshape(hp // window[0], window[0], wp // window[1], window[1]).permute(0, 2, 1, 3)
    return idx.reshape(-1, window[0] * window[1])  # [nW, N]


def window_maps(attn: torch.Tensor, batch: int, grid: tuple[int, int], window: tuple[int, int],
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
        raise ValueError("query='cls' needs a CLS token; windowed attention has none (use 'received' or (row, col))")
    else:
        raise ValueError(f"query must be 'received' or (row, col); got {query!r}")
    # rows [B, nW, heads, N] -> scatter onto the grid
    keep = index.reshape(-1) >= 0
    target = index.reshape(-1)[keep]  # [h*w] original positions
    values = rows.permute(0, 2, 1, 3).reshape(batch, n_heads, n_win * n_tok)[:, :, keep]
    maps = torch.zeros(batch, n_heads, h * w, dtype=attn.dtype, device=attn.device)
    maps.scatter_(2, target.expand(batch, n_heads, -1), values)
    return _renormalise(maps.reshape(batch, n_heads, h, w))


swin_maps = window_maps  # the name before windows were read from the layout
