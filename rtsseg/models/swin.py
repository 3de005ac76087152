"""Swin Transformer backbones from timm (Swin-T/S/B, and a 3-stage Swin for 64 px images).

timm's ``SwinTransformer`` is used as is. ``forward_features`` returns the last stage (after the final norm)
as [B, C, h, w]; the pooled embedding is its global average, as in timm's classifier head.
"""

from __future__ import annotations

import timm
import torch
from timm.models.swin_transformer import SwinTransformer

from rtsseg.models.backbone import Backbone


class SwinBackbone(Backbone):
    """Wraps a timm ``SwinTransformer`` (``num_classes=0``)."""

    family = "swin"

    def __init__(self, name: str, model: SwinTransformer) -> None:
        super().__init__(name, model.num_features)
        self.model = model

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x).permute(0, 3, 1, 2)  # [B,h,w,C] -> [B,C,h,w]

    def attention_layers(self) -> list[str]:
        return [f"model.layers.{i}.blocks.{j}.attn"
                for i, stage in enumerate(self.model.layers) for j in range(len(stage.blocks))]


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
