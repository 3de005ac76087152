"""The one interface every backbone follows: feature map, pooled embedding, stages, attention.

A ``Backbone`` wraps a timm model in ``self.model`` (so state_dict keys read ``model.<timm key>``) and adds:

    forward_features(x [B,3,H,W] float, normalised) -> [B,C,h,w]   (last-stage feature map)
    forward(x [B,3,H,W]) -> [B,C]                                  (pooled: CLS for ViT, global average otherwise)
    normalize(x uint8 [B,3,H,W] or float in [0,1]) -> float normalised with ``mean``/``std``
    prepare(x uint8 [B,3,H,W], size) -> float normalised [B,3,size,size]  (the one input path: resize + normalise)

Multi-stage features (the segmentation decoders' input):

    stage_layers(blocks=None) -> list[str]      modules whose outputs are the intermediate stages, finest first
    stages(x, blocks=None) -> list[[B,C_s,h_s,w_s]]   one ``forward_features``: intermediate stages + the last

Attention -- why here: each model knows where its attention probabilities live and how its tokens lie on the
image, so ``rtsseg.attention`` and ``rtsseg.seg.affinity`` read any backbone through these methods alone
(DINO's ``get_last_selfattention`` is the pattern) and a new backbone edits only its own file:

    attention_layers() -> list[str]             attention modules, first to last; [] = no attention (CNN)
    attention(x, layer=None) -> [B*, heads, Nq, Nk]   post-softmax rows of one forward, graph kept
    attention_record(x, layer=None) -> AttentionRecord    the same plus its ``AttentionLayout`` and the output
    record_attention(layer=None) -> context manager yielding an ``AttentionRecord`` that every forward inside
                                  fills (with gradient), whatever entry point (``forward``, ``forward_features``)
    token_grid(x | (H, W) | H, layer=None) -> (h, w)    the layer's token grid for that input size
    num_prefix_tokens, default_query            tokens before the grid (ViT CLS: 1); "cls" or "received"
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Union

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

FAMILIES = ("resnet", "botnet", "swin", "vit")

ImageSize = Union[torch.Tensor, int, tuple[int, int]]


@dataclass(frozen=True)
class AttentionLayout:
    """Where the rows and columns of a recorded attention tensor lie on the token grid.

    Global attention (``window is None``): attn ``[B, heads, P + h*w, P + h*w]``; the first ``prefix`` = P
    tokens (ViT's CLS) are not on the grid, the others are the grid tokens in row-major order.
    Windowed attention (``window = (wh, ww)``, Swin): attn ``[B * nW, heads, wh*ww, wh*ww]``, batch-major; the
    grid is cyclically shifted by ``-shift``, zero-padded at the bottom/right to whole windows and cut into
    nW windows in row-major window order, tokens row-major inside each window (timm's ``window_partition``);
    padding tokens are not on the grid (``rtsseg.attention.capture.window_token_index`` maps every window
    token to its grid index). Keys only see their own window.
    """

    grid: tuple[int, int]  # (h, w) of the tokens the attention ran on
    batch: int  # B, images
    prefix: int = 0  # tokens before the grid tokens (global attention only)
    window: tuple[int, int] | None = None
    shift: tuple[int, int] = (0, 0)


@dataclass
class AttentionRecord:
    """What ``Backbone.record_attention`` fills in during a forward (the last forward wins)."""

    layer: str  # module name (``attention_layers()``)
    attn: torch.Tensor | None = None  # [B*, heads, Nq, Nk] post-softmax (before attention dropout), graph kept
    layout: AttentionLayout | None = None
    output: object = None  # the backbone's output, set by ``Backbone.attention_record``


def image_hw(x: ImageSize) -> tuple[int, int]:
    """Images ``[.., H, W]``, ``(H, W)`` or ``H`` (square) -> ``(H, W)``."""
    if isinstance(x, torch.Tensor):
        return int(x.shape[-2]), int(x.shape[-1])
    if isinstance(x, int):
        return x, x
    return int(x[0]), int(x[1])


@contextmanager
def unfused_attention(module: nn.Module) -> Iterator[None]:
    """Set ``module.fused_attn = False`` inside the block (only this module), restore it afterwards."""
    old = getattr(module, "fused_attn", False)
    module.fused_attn = False
    try:
        yield
    finally:
        module.fused_attn = old


@contextmanager
def hooks(*handles) -> Iterator[None]:
    """Remove the given hook handles on exit."""
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def attn_drop_probabilities(module: nn.Module, on_probs) -> Iterator[None]:
    """The convention of timm's ``Attention`` / ``WindowAttention`` and our BoTNet ``MHSA``: with
    ``fused_attn = False`` the post-softmax attention ``[B*, heads, N, N]`` is the input of ``attn_drop``.
    Inside the block that flag is off on ``module`` only (every other module keeps its fused kernel) and
    ``on_probs(attn)`` receives that input, graph kept (dropout comes after, identity in eval mode)."""
    handle = module.attn_drop.register_forward_hook(lambda _m, args, _out: on_probs(args[0]))
    with unfused_attention(module), hooks(handle):
        yield


class Backbone(nn.Module):
    """Base class: subclasses set ``family``, ``embed_dim``, ``model`` and implement ``forward_features``."""

    family: str = ""
    # memory format the trainers should put the model and its input in (``model.to(memory_format=...)``,
    # ``x.contiguous(memory_format=...)``); convolutional backbones prefer channels-last, also on CPU
    # (botnet_small BT step, 1 core, fp32: +21 % images/s, benchmarks/NOTES.md)
    memory_format: torch.memory_format = torch.contiguous_format
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __init__(self, name: str, embed_dim: int) -> None:
        super().__init__()
        self.name = name
        self.embed_dim = embed_dim

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # [B,3,H,W] -> [B,C,h,w]
        raise NotImplementedError(f"{type(self).__name__} must implement forward_features")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled embedding ``[B, embed_dim]``: global average of the feature map (ViT overrides with CLS)."""
        return self.forward_features(x).mean(dim=(2, 3))

    # ------------------------------------------------------------------ multi-stage features
    def stage_layers(self, blocks: list[int] | None = None) -> list[str]:
        """Module names whose outputs are the intermediate stages, finest first (the last stage is
        ``forward_features``). ``blocks``: the taps of a single-grid backbone (ViT block indices); hierarchical
        backbones ignore it. Default: none (one stage)."""
        return []

    def stage_map(self, output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Output of a ``stage_layers`` module for images ``x`` -> ``[B, C, h, w]`` (default: already that)."""
        return output

    def stages(self, x: torch.Tensor, blocks: list[int] | None = None) -> list[torch.Tensor]:
        """One ``forward_features(x)``: ``[stage_map(output of each stage_layers module), forward_features]``,
        each ``[B, C_s, h_s, w_s]``, finest first. Attention recorded around it comes from the same forward."""
        names = self.stage_layers(blocks)
        outs: dict[str, torch.Tensor] = {}

        def keep(name: str):
            def hook(_m, _args, out):
                outs[name] = out
            return hook

        with hooks(*[self.get_submodule(n).register_forward_hook(keep(n)) for n in names]):
            last = self.forward_features(x)  # [B, C, h, w]
        return [self.stage_map(outs[n], x) for n in names] + [last]

    # ------------------------------------------------------------------ attention
    default_query: str = "received"  # the map of a head: "cls" (CLS row, ViT) or "received" (mean over queries)

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the grid tokens in the attention (ViT: CLS); 0 by default."""
        return 0

    def attention_layers(self) -> list[str]:
        """Module names (``self.named_modules()``) of the attention layers, first to last; [] for a CNN."""
        return []

    def resolve_attention_layer(self, layer: str | int | None = None) -> str:
        """``None`` -> last attention layer, int -> index into ``attention_layers()``, str -> checked as is."""
        layers = self.attention_layers()
        if not layers:
            raise ValueError(f"backbone {self.name!r} ({type(self).__name__}) has no attention layers "
                             "(attention_layers() is empty); use a ViT, Swin or BoTNet")
        if layer is None:
            return layers[-1]
        if isinstance(layer, int):
            return layers[layer]
        if layer not in layers:
            raise KeyError(f"{layer!r} is not an attention layer; choose one of {layers}")
        return layer

    def token_grid(self, x: ImageSize, layer: str | int | None = None) -> tuple[int, int]:
        """Token grid (h, w) of attention ``layer`` (default: the last) for images ``x`` [B,3,H,W], (H, W) or H."""
        self.resolve_attention_layer(layer)  # a CNN says "no attention layers"
        raise NotImplementedError(f"{type(self).__name__} must implement token_grid")

    @contextmanager
    def record_attention(self, layer: str | int | None = None) -> Iterator[AttentionRecord]:
        """Inside the block every forward of this backbone (any entry point) stores the post-softmax attention
        of ``layer`` (default: the last) *with* its graph, and its layout, in the yielded record. Hooks and
        flags are restored on exit; outputs are unchanged."""
        record = AttentionRecord(self.resolve_attention_layer(layer))
        with self._recording(record):
            yield record

    def _recording(self, record: AttentionRecord):
        """Context manager that makes forwards fill ``record.attn`` and ``record.layout`` (per model)."""
        raise NotImplementedError(f"{type(self).__name__} lists attention layers but does not implement _recording")

    def attention_record(self, x: torch.Tensor, layer: str | int | None = None) -> AttentionRecord:
        """Run ``self(x)`` once inside ``record_attention``: the record with ``attn``, ``layout`` and ``output``.
        Nothing is detached: under ``torch.no_grad`` there is no graph, otherwise gradients flow (train mode)."""
        with self.record_attention(layer) as record:
            record.output = self(x)
        if record.attn is None:
            raise RuntimeError(f"layer {record.layer!r} did not run its unfused attention path")
        return record

    def attention(self, x: torch.Tensor, layer: str | int | None = None) -> torch.Tensor:
        """Post-softmax attention ``[B*, heads, Nq, Nk]`` of ``layer`` (default: the last) for images ``x``;
        ``attention_record`` also gives its ``AttentionLayout`` (B* = B, or B * windows)."""
        return self.attention_record(x, layer).attn

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 [.., 3, H, W] (0..255) or float in [0, 1] -> float normalised with ImageNet mean/std."""
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        mean = torch.tensor(self.mean, device=x.device).view(3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(3, 1, 1)
        return (x - mean) / std

    def prepare(self, x: torch.Tensor, size: int | tuple[int, int] | None = None) -> torch.Tensor:
        """The one input path from stored images to the model: uint8 ``[B,3,H,W]`` (or float in [0, 1]) ->
        float ``[B,3,size,size]`` normalised with ``mean``/``std``.

        The resize (bilinear, antialiased, clamped to [0, 1]) happens only when ``size`` differs from the
        images' own size, so images already at the model's resolution pass through unchanged.
        """
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()  # [B,3,H,W] in [0,1]
        if size is not None:
            size = (size, size) if isinstance(size, int) else tuple(size)
            if tuple(x.shape[-2:]) != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
        return self.normalize(x)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of ``normalize``: x * std + mean, clamped to [0, 1] (float)."""
        mean = torch.tensor(self.mean, device=x.device).view(3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(3, 1, 1)
        return (x * std + mean).clamp(0.0, 1.0)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, family={self.family!r}, embed_dim={self.embed_dim}"
