"""BoTNet (Srinivas et al. 2021): a ResNet whose layer4 3x3 convolutions become multi-head self-attention.

``to_botnet(resnet)`` deep-copies a ResNet backbone (timm ResNet-50 or the narrow ``resnet_small``) and swaps
``layer4.<i>.conv2`` (the 3x3 convolution; BN, ReLU, 1x1 convolutions and shortcut stay) for ``MHSA``: 4 heads,
content-content logits q.k plus content-position logits q.r with 2-D relative position embeddings
(r = r_h[dy] + r_w[dx], one table per axis, as in the paper's relative_logits). In the stride-2 first block
the attention runs at the input resolution and is followed by 2x2 average pooling, as in the paper. Every
other tensor is copied unchanged from the source ResNet.

The relative tables are built for the feature size given by ``img_size``; another input size interpolates
them linearly to the new number of offsets (like Swin's bias-table resampling).
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from rtsseg.models.backbone import (AttentionLayout, AttentionRecord, Backbone, ImageSize, attn_drop_probabilities,
                                    hooks, image_hw)
from rtsseg.models.resnet import ResNetBackbone, create_resnet_small


def _resize_table(table: torch.Tensor, length: int) -> torch.Tensor:
    """[2S-1, d] -> [length, d], linear interpolation over the offsets."""
    if table.shape[0] == length:
        return table
    return F.interpolate(table.t()[None], size=length, mode="linear", align_corners=True)[0].t()


class RelPosEmb2d(nn.Module):
    """2-D relative position logits: logits[(y,x),(y',x')] = q_(y,x) . (r_h[y'-y] + r_w[x'-x])."""

    def __init__(self, feat_size: tuple[int, int], head_dim: int) -> None:
        super().__init__()
        h, w = feat_size
        self.feat_size = (h, w)
        self.rel_h = nn.Parameter(torch.randn(2 * h - 1, head_dim) * head_dim ** -0.5)  # [2H-1, d]
        self.rel_w = nn.Parameter(torch.randn(2 * w - 1, head_dim) * head_dim ** -0.5)  # [2W-1, d]

    def forward(self, q: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """q [B, heads, H*W, d] -> position logits [B, heads, H*W, H*W] (query rows, key columns)."""
        b, n, _, d = q.shape
        h, w = size
        rel_h = _resize_table(self.rel_h, 2 * h - 1)
        rel_w = _resize_table(self.rel_w, 2 * w - 1)
        ar_h = torch.arange(h, device=q.device)
        ar_w = torch.arange(w, device=q.device)
        r_h = rel_h[ar_h[None, :] - ar_h[:, None] + h - 1]  # [H query, H key, d]
        r_w = rel_w[ar_w[None, :] - ar_w[:, None] + w - 1]  # [W query, W key, d]
        q = q.reshape(b, n, h, w, d)
        l_h = torch.einsum("bnyxd,ykd->bnyxk", q, r_h)  # [B, n, H, W, H key]
        l_w = torch.einsum("bnyxd,xkd->bnyxk", q, r_w)  # [B, n, H, W, W key]
        logits = l_h[..., :, None] + l_w[..., None, :]  # [B, n, H, W, H key, W key]
        return logits.reshape(b, n, h * w, h * w)


class MHSA(nn.Module):
    """BoTNet all-to-all multi-head self-attention on a feature map, [B, C, H, W] -> [B, C, H/s, W/s].

    attn = softmax((q k^T + q r^T) / sqrt(d)); out = attn v; then 2x2 average pooling if ``stride == 2``.
    ``attn_drop`` (p = 0) receives the attention probabilities [B, heads, HW, HW] when ``fused_attn`` is
    False: ``rtsseg.attention.capture`` hooks it, as it does timm's attention modules.
    """

    def __init__(self, dim: int, feat_size: tuple[int, int], num_heads: int = 4, stride: int = 1) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"MHSA: dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.stride = stride
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.fused_attn = False
        self.qkv = nn.Conv2d(dim, 3 * dim, kernel_size=1, bias=False)
        nn.init.trunc_normal_(self.qkv.weight, std=dim ** -0.5)
        self.pos_embed = RelPosEmb2d(feat_size, self.head_dim)
        self.attn_drop = nn.Dropout(0.0)
        self.pool = nn.AvgPool2d(2, 2) if stride == 2 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(x).reshape(b, 3, self.num_heads, self.head_dim, h * w).transpose(-1, -2)
        q, k, v = qkv.unbind(1)  # each [B, heads, HW, d]
        pos = self.pos_embed(q * self.scale, (h, w))  # [B, heads, HW, HW]
        if self.fused_attn:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=pos)
        else:
            attn = (q * self.scale) @ k.transpose(-1, -2) + pos  # [B, heads, HW, HW]
            attn = self.attn_drop(attn.softmax(dim=-1))
            out = attn @ v  # [B, heads, HW, d]
        out = out.transpose(-1, -2).reshape(b, c, h, w)
        return self.pool(out)


class BoTNetBackbone(ResNetBackbone):
    """A ResNet backbone whose layer4 uses MHSA; attention layers are ``model.layer4.<i>.conv2``.

    Attention is global over the feature map entering each MHSA (no prefix tokens); the default map of a
    head is the attention each position receives. ``feature_stride`` is layer4's input stride (the stem and
    layers 1-3, each stride-2 step rounding up), measured once when not given.
    """

    family = "botnet"

    def __init__(self, name: str, model: nn.Module, feature_stride: int | None = None) -> None:
        super().__init__(name, model)
        if feature_stride is None:  # exact for strides dividing 256 (ResNet-50: 16, resnet_small: 4)
            feature_stride = 256 // _layer4_input_size(model, 256)[0]
        self.feature_stride = int(feature_stride)

    def attention_layers(self) -> list[str]:
        return [f"model.layer4.{i}.conv2" for i in range(len(self.model.layer4))]

    def token_grid(self, x: ImageSize, layer: str | int | None = None) -> tuple[int, int]:
        """layer4's input grid (ceil of H / stride), halved (floor: 2x2 average pooling) after each stride-2 MHSA."""
        index = self.attention_layers().index(self.resolve_attention_layer(layer))
        hh, ww = image_hw(x)
        h, w = math.ceil(hh / self.feature_stride), math.ceil(ww / self.feature_stride)
        for block in self.model.layer4[:index]:
            if block.conv2.stride == 2:
                h, w = h // 2, w // 2
        return h, w

    @contextmanager
    def _recording(self, record: AttentionRecord) -> Iterator[None]:
        """``MHSA`` (unfused: ``attn_drop`` input [B, heads, H*W, H*W]); grid and batch from its input [B, C, H, W]."""
        module = self.get_submodule(record.layer)
        seen: dict[str, tuple] = {}

        def on_input(_m, args) -> None:
            seen["shape"] = tuple(args[0].shape)  # [B, C, H, W]

        def on_probs(attn: torch.Tensor) -> None:
            b, _, h, w = seen["shape"]
            record.attn = attn
            record.layout = AttentionLayout(grid=(h, w), batch=b)

        with hooks(module.register_forward_pre_hook(on_input)), attn_drop_probabilities(module, on_probs):
            yield


class _Reached(Exception):
    """Stops the probe forward once layer4's input is seen."""


@torch.no_grad()
def _layer4_input_size(model: nn.Module, img_size: int) -> tuple[int, int]:
    """Spatial size of layer4's input for a square ``img_size`` image (one dummy forward up to layer4, eval mode)."""
    seen: list[tuple[int, int]] = []

    def reached(_m, args) -> None:
        seen.append(tuple(args[0].shape[-2:]))
        raise _Reached

    handle = model.layer4.register_forward_pre_hook(reached)
    was_training = model.training
    try:
        model.eval()
        model.forward_features(torch.zeros(1, 3, img_size, img_size))
    except _Reached:
        pass
    finally:
        handle.remove()
        model.train(was_training)
    return seen[0]


def to_botnet(source: ResNetBackbone, name: str, img_size: int, num_heads: int = 4) -> BoTNetBackbone:
    """Copy ``source`` and replace layer4's 3x3 convolutions by MHSA sized for ``img_size`` inputs."""
    model = copy.deepcopy(source.model)
    h, w = _layer4_input_size(model, img_size)
    for block in model.layer4:
        stride = block.conv2.stride[0]
        if block.conv2.kernel_size != (3, 3) or stride not in (1, 2):
            raise ValueError(f"to_botnet: expected a 3x3 conv2 with stride 1 or 2, got {block.conv2}")
        block.conv2 = MHSA(block.conv2.in_channels, (h, w), num_heads=num_heads, stride=stride)
        h, w = h // stride, w // stride
    return BoTNetBackbone(name, model)


def create_botnet50(name: str = "botnet50", source: ResNetBackbone | None = None, img_size: int = 224,
                    num_heads: int = 4) -> BoTNetBackbone:
    """BoTNet-50 from a ResNet-50 backbone (random if ``source`` is None); 224 px -> MHSA at 14x14 then 7x7."""
    if source is None:
        from rtsseg.models.resnet import create_resnet50
        source = create_resnet50()
    return to_botnet(source, name, img_size, num_heads)


def create_botnet_small(name: str = "botnet_small", img_size: int = 64, num_heads: int = 4,
                        **kwargs) -> BoTNetBackbone:
    """BoTNet built from ``resnet_small`` (same code path as BoTNet-50): 64 px -> MHSA at 16x16 then 8x8."""
    return to_botnet(create_resnet_small(**kwargs), name, img_size, num_heads)


__all__ = ["MHSA", "RelPosEmb2d", "BoTNetBackbone", "to_botnet", "create_botnet50", "create_botnet_small",
           "Backbone"]
