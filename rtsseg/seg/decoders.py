"""Segmentation decoders over frozen (or fine-tuned) backbone outputs: linear, MLP, attention-aware, control.

Every decoder has one signature, ``decoder(stages, affinity, maps) -> logits [B, K, h0, w0]`` at the finest
stage's grid, with ``stages`` a list of ``[B, C_s, h_s, w_s]`` (finest first), ``affinity [B, H, N, N]`` the
last attention layer's token-to-token attention on its grid (h, w), N = h*w, rows summing to 1, and
``maps [B, H, h, w]`` the per-head maps (each summing to 1); see :mod:`rtsseg.seg.affinity`. Decoders that do
not use attention ignore the last two arguments. ``decoder.config`` rebuilds it with :func:`build_decoder`.

MLP decoder (SegFormer's all-MLP head, Xie et al. 2021), for stages s = 1..S::

    E_s = up_0( W_s · BN(X_s) )                      1x1 conv C_s -> D, bilinear to the finest grid
    E   = [E_1; ...; E_S]                             [B, S·D, h0, w0]
    Z   = W_cls · ReLU(BN(W_f · E))                   1x1 convs S·D -> F -> K

(BN without affine parameters on the inputs, as in the linear probe, so backbones of any feature scale
share one learning rate.) For a ViT the "stages" are intermediate blocks on one grid.

Attention-aware decoder = the MLP decoder plus three switchable mechanisms:

    (a) maps as channels:  M = up_0(N · maps)   [B, H, h0, w0] (scaled so a uniform map is 1), and the fusion
        reads [E; M]:  W_f · [E; M]  (W_f gains H·F weights).
    (b) propagation along the attention affinity (attention-guided refinement): with the head-mixed affinity
        Ā = Σ_h softmax(β)_h A_h  [B, N, N] and P = pool_(h,w)(Z) the logits averaged onto the attention grid,
            Z' = Z + σ(γ) · up_0(Ā^k P − P)
        i.e. each token's logits move towards the attention-weighted average of the tokens it attends to,
        k steps (random walk of length k), learned head weights β (H) and strength γ (1).
    (c) attention-gated fusion: a per-pixel, per-channel gate computed from the per-head maps,
            G = 2 σ(W_g M + b_g)  [B, S·D, h0, w0],   E' = G ⊙ E
        W_g, b_g start at 0 so G = 1 (the plain MLP decoder) at initialisation.

Control decoder: the MLP decoder with its widths (D, F) chosen so that its parameter count equals the
attention-aware decoder's within 1 % (:func:`matched_control`); it sees no attention. Any gain of the
attention-aware decoder over the control is therefore the attention's, not the extra capacity's.

Names: every decoder of the ablation grid is registered where it is defined (:func:`register_decoder`);
:func:`make_decoder` builds a name, :func:`build_decoder` rebuilds a stored ``config`` whose ``kind`` is a
registered name -- a name read from a checkpoint selects only a registered factory, never code to import.

The attention-supervision loss (:func:`attention_supervision_loss`) acts on Ā of mechanism (b): each query
token whose cell is mostly (> 50 %) one class c is supervised to put its attention on the tokens of class c.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: name -> (factory(in_dims, num_classes, num_heads, k, embed_dim, fuse_dim) -> decoder, the class that rebuilds
#: its ``config``). Filled by :func:`register_decoder` where each decoder is defined; the only list of names.
_REGISTRY: dict[str, tuple[Callable[..., nn.Module], type]] = {}


def register_decoder(name: str, rebuilds: type):
    """timm-style registration: ``@register_decoder("attn_all", MLPDecoder)`` on a factory
    ``(in_dims, num_classes, num_heads, k, embed_dim, fuse_dim) -> nn.Module`` makes ``name`` a decoder of
    :func:`make_decoder` and a kind :func:`build_decoder` (and so ``load_segmenter``) accepts, rebuilt by
    ``rebuilds.from_config``. Why a registry: the names are written once, and a name read from a checkpoint can
    only select one of these factories, never import anything."""
    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"decoder {name!r} is registered twice (rtsseg/seg/decoders.py)")
        _REGISTRY[name] = (factory, rebuilds)
        return factory
    return wrap


def list_decoders() -> list[str]:
    """The registered decoder names, in registration order."""
    return list(_REGISTRY)


def _up(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class LinearDecoder(nn.Module):
    """The linear probe on the last stage: ``BatchNorm2d(affine=False)`` + 1x1 conv (see ``probe.py``)."""

    uses_attention = False

    def __init__(self, in_dims: Sequence[int], num_classes: int, kind: str | None = None) -> None:
        super().__init__()
        from rtsseg.seg.probe import LinearSegHead

        self.config = dict(kind=kind, in_dims=list(in_dims), num_classes=num_classes)
        self.head = LinearSegHead(in_dims[-1], num_classes)

    @classmethod
    def from_config(cls, config: dict) -> "LinearDecoder":
        if set(config) != {"kind", "in_dims", "num_classes"}:  # a stored config holds exactly these
            raise ValueError(f"linear decoder config has keys {sorted(config)}, expected "
                             "['in_dims', 'kind', 'num_classes']")
        return cls(config["in_dims"], config["num_classes"], config["kind"])

    def forward(self, stages: list[torch.Tensor], affinity=None, maps=None) -> torch.Tensor:
        return self.head(stages[-1])  # [B, K, h_S, w_S]


class MLPDecoder(nn.Module):
    """SegFormer-style all-MLP decoder (equations in the module docstring); the attention mechanisms
    (a) ``maps``, (b) ``propagate`` (``k`` steps), (c) ``gate`` are off by default."""

    def __init__(self, in_dims: Sequence[int], num_classes: int, embed_dim: int = 64, fuse_dim: int = 64,
                 num_heads: int = 0, maps: bool = False, propagate: bool = False, gate: bool = False,
                 k: int = 1, kind: str | None = None) -> None:
        super().__init__()
        if (maps or propagate or gate) and num_heads < 1:
            raise ValueError("the attention mechanisms need num_heads >= 1 (the backbone's heads in the last layer)")
        if k < 1:
            raise ValueError(f"propagation steps k must be >= 1, got {k}")
        self.config = dict(kind=kind, in_dims=list(in_dims), num_classes=num_classes, embed_dim=embed_dim,
                           fuse_dim=fuse_dim, num_heads=num_heads, maps=maps, propagate=propagate, gate=gate, k=k)
        self.uses_attention = maps or propagate or gate
        self.maps, self.propagate, self.gate, self.k = maps, propagate, gate, k
        s = len(in_dims)
        self.norms = nn.ModuleList(nn.BatchNorm2d(c, affine=False) for c in in_dims)
        self.embeds = nn.ModuleList(nn.Conv2d(c, embed_dim, 1) for c in in_dims)
        extra = num_heads if maps else 0
        self.fuse = nn.Sequential(nn.Conv2d(s * embed_dim + extra, fuse_dim, 1, bias=False),
                                  nn.BatchNorm2d(fuse_dim), nn.ReLU(inplace=True))
        self.classifier = nn.Conv2d(fuse_dim, num_classes, 1)
        if gate:
            self.gate_conv = nn.Conv2d(num_heads, s * embed_dim, 1)
            nn.init.zeros_(self.gate_conv.weight)
            nn.init.zeros_(self.gate_conv.bias)
        if propagate:
            self.head_logits = nn.Parameter(torch.zeros(num_heads))  # β
            self.strength = nn.Parameter(torch.zeros(()))  # γ, σ(0) = 0.5
        self.last_affinity: torch.Tensor | None = None  # Ā of the last forward, [B, N, N] (for the loss)

    @classmethod
    def from_config(cls, config: dict) -> "MLPDecoder":
        return cls(**config)

    def mixed_affinity(self, affinity: torch.Tensor) -> torch.Tensor:
        """Ā = Σ_h softmax(β)_h A_h: [B, H, N, N] -> [B, N, N], rows still sum to 1."""
        w = self.head_logits.softmax(0)  # [H]
        return torch.einsum("h,bhij->bij", w, affinity.float())

    def forward(self, stages: list[torch.Tensor], affinity: torch.Tensor | None = None,
                maps: torch.Tensor | None = None) -> torch.Tensor:
        if len(stages) != len(self.embeds):
            raise ValueError(f"decoder built for {len(self.embeds)} stages, got {len(stages)}")
        size = stages[0].shape[-2:]
        e = torch.cat([_up(emb(norm(x.float())), size) for x, norm, emb in zip(stages, self.norms, self.embeds)], 1)
        if self.maps or self.gate:
            if maps is None:
                raise ValueError("this decoder reads attention maps: pass maps [B, heads, h, w]")
            n = maps.shape[-2] * maps.shape[-1]
            m = _up(maps.float() * n, size)  # [B, H, h0, w0], 1 = uniform attention
        if self.gate:
            e = e * 2 * torch.sigmoid(self.gate_conv(m))  # [B, S·D, h0, w0]
        if self.maps:
            e = torch.cat([e, m], 1)
        z = self.classifier(self.fuse(e))  # [B, K, h0, w0]
        if self.propagate:
            if affinity is None:
                raise ValueError("this decoder propagates along the attention: pass affinity [B, heads, N, N]")
            b, k_cls = z.shape[:2]
            n = affinity.shape[-1]
            grid = _grid_of(maps, affinity, stages)
            if n != grid[0] * grid[1]:
                raise ValueError(f"affinity over {n} tokens does not match the attention grid {grid}")
            a = self.mixed_affinity(affinity)  # [B, N, N]
            self.last_affinity = a
            p = F.adaptive_avg_pool2d(z, grid).flatten(2).transpose(1, 2)  # [B, N, K]
            r = p
            for _ in range(self.k):
                r = a @ r  # [B, N, K]
            delta = (r - p).transpose(1, 2).reshape(b, k_cls, *grid)
            z = z + torch.sigmoid(self.strength) * _up(delta, size)
        return z


def _grid_of(maps, affinity, stages) -> tuple[int, int]:
    """The attention grid (h, w): from the maps when given, else the last stage's grid if it matches N."""
    if maps is not None:
        return tuple(maps.shape[-2:])
    n = affinity.shape[-1]
    for x in reversed(stages):
        if x.shape[-2] * x.shape[-1] == n:
            return tuple(x.shape[-2:])
    raise ValueError(f"cannot tell the attention grid of N = {n} tokens; pass the maps too")


def attention_decoder(in_dims: Sequence[int], num_classes: int, num_heads: int, maps: bool = True,
                      propagate: bool = True, gate: bool = True, k: int = 1, embed_dim: int = 64,
                      fuse_dim: int = 64) -> MLPDecoder:
    """The attention-aware decoder with the chosen mechanisms (all three by default)."""
    return MLPDecoder(in_dims, num_classes, embed_dim, fuse_dim, num_heads, maps, propagate, gate, k)


def matched_control(reference: nn.Module, tolerance: float = 0.01) -> MLPDecoder:
    """An MLP decoder without attention whose parameter count is the closest to ``reference``'s over the
    widths (D, F) around the reference's; raises if no pair is within ``tolerance`` (relative)."""
    cfg = reference.config
    target = count_parameters(reference)
    in_dims, k_cls = cfg["in_dims"], cfg["num_classes"]
    s = len(in_dims)

    def params(d: int, f: int) -> int:  # closed form of MLPDecoder(maps/gate/propagate off)
        return sum(c * d + d for c in in_dims) + s * d * f + 2 * f + f * k_cls + k_cls

    d0, f0 = cfg.get("embed_dim", 64), cfg.get("fuse_dim", 64)
    best = min(((abs(params(d, f) - target), d, f) for d in range(d0, 2 * d0 + 1) for f in range(max(1, f0 // 2), 2 * f0 + 1)))
    _, d, f = best
    control = MLPDecoder(in_dims, k_cls, embed_dim=d, fuse_dim=f)
    got = count_parameters(control)
    if abs(got - target) > tolerance * target:
        raise ValueError(f"no control within {tolerance:.0%} of {target} parameters (best {got} at D={d}, F={f})")
    return control


def build_decoder(config: dict) -> nn.Module:
    """Rebuild a decoder from its ``config`` (as stored in checkpoints): ``config["kind"]`` must be a registered
    name (:func:`register_decoder`); anything else is refused with a ``ValueError`` naming the known ones."""
    kind = config.get("kind")
    kind = _STORED_ALIASES.get(kind, kind) if isinstance(kind, str) else kind
    if not isinstance(kind, str) or kind not in _REGISTRY:
        raise ValueError(f"unknown decoder kind {config.get('kind')!r}; choose one of {list_decoders()}")
    return _REGISTRY[kind][1].from_config(dict(config))


def make_decoder(name: str, in_dims: Sequence[int], num_classes: int, num_heads: int, k: int = 1,
                 embed_dim: int = 64, fuse_dim: int = 64) -> nn.Module:
    """The registered decoder ``name`` (:func:`list_decoders`: ``linear``, ``mlp``, ``control`` (matched to
    ``attn_all``), ``attn_maps`` (a), ``attn_prop`` (b), ``attn_gate`` (c), ``attn_all`` (a+b+c)); its
    ``config["kind"]`` is ``name``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown decoder {name!r}; choose one of {', '.join(list_decoders())}")
    dec = _REGISTRY[name][0](in_dims, num_classes, num_heads=num_heads, k=k, embed_dim=embed_dim, fuse_dim=fuse_dim)
    dec.config["kind"] = name
    return dec


@register_decoder("linear", LinearDecoder)
def _linear(in_dims, num_classes, **_) -> LinearDecoder:
    return LinearDecoder(in_dims, num_classes)


@register_decoder("mlp", MLPDecoder)
def _mlp(in_dims, num_classes, embed_dim=64, fuse_dim=64, **_) -> MLPDecoder:
    return MLPDecoder(in_dims, num_classes, embed_dim, fuse_dim)


def _attention(maps: bool, propagate: bool, gate: bool):
    def factory(in_dims, num_classes, num_heads, k=1, embed_dim=64, fuse_dim=64) -> MLPDecoder:
        return attention_decoder(in_dims, num_classes, num_heads, maps, propagate, gate, k, embed_dim, fuse_dim)
    return factory


for _name, _flags in (("attn_maps", (True, False, False)), ("attn_prop", (False, True, False)),
                      ("attn_gate", (False, False, True)), ("attn_all", (True, True, True))):
    register_decoder(_name, MLPDecoder)(_attention(*_flags))


@register_decoder("control", MLPDecoder)
def _control(in_dims, num_classes, num_heads, k=1, embed_dim=64, fuse_dim=64) -> MLPDecoder:
    """:func:`matched_control` of ``attn_all`` with the same widths."""
    return matched_control(make_decoder("attn_all", in_dims, num_classes, num_heads, k, embed_dim, fuse_dim))


#: Kinds written by files of an earlier format (one kind for every attention decoder; their flags are in the
#: config): rebuilt as the registered decoder of the same class.
_STORED_ALIASES = {"attention": "attn_all"}

DECODERS = tuple(list_decoders())


# ---- attention supervision -----------------------------------------------------------------------------------

def token_class_fractions(masks: torch.Tensor, num_classes: int, grid: tuple[int, int],
                          ignore_index: int = 255) -> torch.Tensor:
    """Fraction of each token cell's pixels of each class: masks [B, H, W] -> [B, K, h, w] (void counts
    as no class, so a cell's fractions sum to its non-void share)."""
    valid = masks != ignore_index
    onehot = F.one_hot(torch.where(valid, masks, 0).long(), num_classes).permute(0, 3, 1, 2).float()
    onehot = onehot * valid[:, None].float()  # [B, K, H, W]
    return F.adaptive_avg_pool2d(onehot, grid)


def attention_supervision_targets(fractions: torch.Tensor, min_purity: float = 0.5
                                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query token (i over the grid): its class c_i = argmax of its cell's fractions, kept when the
    fraction exceeds ``min_purity``; its target mask = the fraction of class c_i in every key cell.

    fractions [B, K, h, w] -> (targets [B, N, h, w] in [0, 1], keep [B, N] bool), N = h*w.
    """
    b, k, h, w = fractions.shape
    flat = fractions.flatten(2)  # [B, K, N]
    purity, cls = flat.max(1)  # [B, N]
    # targets[b, i, j] = flat[b, cls[b, i], j]
    targets = flat[torch.arange(b)[:, None], cls]  # [B, N, N]
    return targets.reshape(b, h * w, h, w), purity > min_purity


def attention_supervision_loss(affinity_rows: torch.Tensor, fractions: torch.Tensor,
                               min_purity: float = 0.5) -> torch.Tensor:
    """Auxiliary loss on the decoder's mixed affinity Ā [B, N, N] (rows sum to 1): every pure query token
    (see :func:`attention_supervision_targets`) is one attention map [h, w] whose target is its class's mask,
    scored by ``rtsseg.attention.supervision.mask_attention_loss`` (maps [B*, 1, h, w], targets [B*, h, w]).
    Returns 0 (with a graph) when no token is pure."""
    try:
        from rtsseg.attention.supervision import mask_attention_loss
    except ImportError as err:  # written by the "attn" helper in parallel
        raise ImportError("rtsseg.attention.supervision.mask_attention_loss is not available in this tree; "
                          "merge the attention-supervision branch to use attention_loss_weight > 0") from err
    b, n, _ = affinity_rows.shape
    h, w = fractions.shape[-2:]
    targets, keep = attention_supervision_targets(fractions, min_purity)  # [B, N, h, w], [B, N]
    if not keep.any():
        return affinity_rows.sum() * 0.0
    maps = affinity_rows.reshape(b, n, h, w)[keep][:, None]  # [B*, 1, h, w]
    return mask_attention_loss(maps, targets[keep])
