"""ViT backbones from timm (ViT-S/16, ViT-S/8, and a small ViT for 64 px images).

The timm ``VisionTransformer`` is used as is (no re-implementation); this wrapper only exposes the patch
grid as a feature map and the CLS token as the pooled embedding, as DINO does.
"""

from __future__ import annotations

import timm
import torch
from timm.models.vision_transformer import VisionTransformer

from rtsseg.models.backbone import Backbone


class ViTBackbone(Backbone):
    """Wraps a timm ``VisionTransformer`` (``num_classes=0``).

    forward_features: tokens after the final norm, prefix tokens dropped, reshaped to [B, C, H/p, W/p].
    forward: CLS token after the final norm, [B, C] (DINO's embedding).
    """

    family = "vit"

    def __init__(self, name: str, model: VisionTransformer) -> None:
        super().__init__(name, model.embed_dim)
        self.model = model
        self.patch_size: int = model.patch_embed.patch_size[0]

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """[B,3,H,W] -> [B, prefix + h*w, C] after the final norm."""
        return self.model.forward_features(x)

    def grid_size(self, x: torch.Tensor) -> tuple[int, int]:
        """Patch grid (h, w) for an input [B,3,H,W]."""
        return x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.grid_size(x)
        t = self.tokens(x)[:, self.model.num_prefix_tokens:]  # [B, h*w, C]
        return t.transpose(1, 2).reshape(t.shape[0], -1, h, w)  # [B, C, h, w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tokens(x)[:, 0]  # CLS, [B, C]

    def attention_layers(self) -> list[str]:
        return [f"model.blocks.{i}.attn" for i in range(len(self.model.blocks))]


def create_vit(name: str, timm_name: str, pretrained_tag: str | None = None, img_size: int = 224,
               **kwargs) -> ViTBackbone:
    """A timm ViT by name (``vit_small_patch16_224``), with ``dynamic_img_size`` so any input size works."""
    full = f"{timm_name}.{pretrained_tag}" if pretrained_tag else timm_name
    model = timm.create_model(full, pretrained=pretrained_tag is not None, num_classes=0, img_size=img_size,
                              dynamic_img_size=True, **kwargs)
    return ViTBackbone(name, model)


def create_vit_small64(name: str = "vit_small64", img_size: int = 64, patch_size: int = 8, embed_dim: int = 192,
                       depth: int = 6, num_heads: int = 6, **kwargs) -> ViTBackbone:
    """Small ViT for 64 px images: patch 8 -> 8x8 tokens + CLS; defaults give about 2.7 M parameters."""
    model = VisionTransformer(img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth,
                              num_heads=num_heads, num_classes=0, dynamic_img_size=True, **kwargs)
    return ViTBackbone(name, model)
