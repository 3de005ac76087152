"""Swin Transformer backbones from timm (Swin-T/S/B, and a 3-stage Swin for 64 px images).

timm's ``SwinTransformer`` is used as is. ``forward_features`` returns the last stage (after the final norm)
as [B, C, h, w]; the pooled embedding is its global average, as in timm's classifier head. The earlier
stages are the extra "stages" of the segmentation decoders. Attention is window attention: recorded as
``[B * windows, heads, T, T]`` with the block's window and cyclic shift in its ``AttentionLayout``.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import timm
import torch
from timm.models.swin_transformer import SwinTransformer
from torch import nn

from rtsseg.models.backbone import (AttentionLayout, AttentionRecord, Backbone, ImageSize, attn_drop_probabilities,
                                    hooks, image_hw)


class SwinBackbone(Backbone):
    """Wraps a timm ``SwinTransformer`` (``num_classes=0``)."""

    family = "swin"

    def __init__(self, name: str, model: SwinTransformer) -> None:
        super().__init__(name, model.num_features)
        self.model = model

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x).permute(0, 3, 1, 2)  # [B,h,w,C] -> [B,C,h,w]

    def stage_layers(self, blocks: list[int] | None = None) -> list[str]:
        """Every stage but the last (that one is ``forward_features``); ``blocks`` is ignored."""
        return [f"model.layers.{i}" for i in range(len(self.model.layers) - 1)]

    def stage_map(self, output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return output.permute(0, 3, 1, 2)  # [B, h, w, C] -> [B, C, h, w]

    def _blocks(self) -> dict[str, tuple[int, nn.Module]]:
        """Attention layer name -> (stage index, its ``SwinTransformerBlock``)."""
        return {f"model.layers.{i}.blocks.{j}.attn": (i, block)
                for i, stage in enumerate(self.model.layers) for j, block in enumerate(stage.blocks)}

    def attention_layers(self) -> list[str]:
        return list(self._blocks())

    def token_grid(self, x: ImageSize, layer: str | int | None = None) -> tuple[int, int]:
        """Patch grid, then each stage's patch merging halves it (odd sizes padded first: ceil)."""
        stage, _ = self._blocks()[self.resolve_attention_layer(layer)]
        h, w = self.model.patch_embed.dynamic_feat_size(image_hw(x))
        for s in self.model.layers[: stage + 1]:
            if not isinstance(s.downsample, nn.Identity):
                h, w = math.ceil(h / 2), math.ceil(w / 2)
        return h, w

    @contextmanager
    def _recording(self, record: AttentionRecord) -> Iterator[None]:
        """timm ``WindowAttention`` (unfused: ``attn_drop`` input [B*nW, heads, T, T]); grid and batch from the
        block's input [B, H, W, C], window and shift from the block (timm's cyclic shift, then padding)."""
        _, block = self._blocks()[record.layer]
        seen: dict[str, tuple] = {}

        def on_block(_m, args) -> None:
            seen["shape"] = tuple(args[0].shape)  # [B, H, W, C]

        def on_probs(attn: torch.Tensor) -> None:
            b, h, w, _ = seen["shape"]
            record.attn = attn
            record.layout = AttentionLayout(grid=(h, w), batch=b, window=tuple(block.window_size),
                                            shift=tuple(block.shift_size))

        with hooks(block.register_forward_pre_hook(on_block)), attn_drop_probabilities(block.attn, on_probs):
            yield


def create_swin(name: str, timm_name: str, pretrained_tag: str | None = None, img_size: int = 224,
                **kwargs) -> SwinBackbone:
    """A timm Swin by name (``swin_tiny_patch4_window7_224``); window 7, so 224 px gives a 7x7 last stage."""
    full = f"{timm_name}.{pretrained_tag}" if pretrained_tag else timm_name
    model = timm.create_model(full, pretrained=pretrained_tag is not None, num_classes=0, img_size=img_size,
                              **kwargs)
    return SwinBackbone(name, model)


def create_swin_small64(name: str = "swin_small64", img_size: int = 64, patch_size: int = 2, embed_dim: int = 48,
                        depths: tuple[int, ...] = (1, 1, 3), num_heads: tuple[int, ...] = (2, 3, 6),
                        window_size: int = 8, dynamic_img_size: bool = True, **kwargs) -> SwinBackbone:
    """Small Swin for 64 px: patch 2 -> 32x32, 16x16, 8x8 tokens; the last stage is one global 8x8 window (6 heads); about 1.6 M parameters.

    ``dynamic_img_size`` (timm: pad to whole windows, masks computed per input) lets the segmentation probe feed
    other input sizes, e.g. CamVid at 96x128; at ``img_size`` the outputs equal the fixed-size model's.
    """
    model = SwinTransformer(dynamic_img_size=dynamic_img_size, img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depths=depths,
                            num_heads=num_heads, window_size=window_size, num_classes=0, **kwargs)
    return SwinBackbone(name, model)
