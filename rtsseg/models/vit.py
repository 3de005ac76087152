"""ViT backbones from timm (ViT-S/16, ViT-S/8, and a small ViT for 64 px images).

The timm ``VisionTransformer`` is used as is (no re-implementation); this wrapper only exposes the patch
grid as a feature map, the CLS token as the pooled embedding and the CLS row as each head's map, as DINO does.
Attention is global over ``num_prefix_tokens`` (CLS) + h*w patch tokens; intermediate blocks are the extra
"stages" of the segmentation decoders.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import timm
import torch
from timm.models.vision_transformer import VisionTransformer

from rtsseg.models.backbone import (AttentionLayout, AttentionRecord, Backbone, ImageSize, attn_drop_probabilities,
                                    hooks, image_hw)


def default_stage_blocks(depth: int) -> list[int]:
    """Indices of the intermediate blocks used as extra "stages": ~1/4, 1/2, 3/4 of the depth (the last
    block enters through ``forward_features``, after the final norm), as DPT/ViTDet do with 4 taps."""
    return sorted({max(0, min(depth - 2, round(depth * k / 4) - 1)) for k in (1, 2, 3)})


class ViTBackbone(Backbone):
    """Wraps a timm ``VisionTransformer`` (``num_classes=0``).

    forward_features: tokens after the final norm, prefix tokens dropped, reshaped to [B, C, H/p, W/p].
    forward: CLS token after the final norm, [B, C] (DINO's embedding).
    """

    family = "vit"
    default_query = "cls"  # DINO: the CLS token's row over the patches

    def __init__(self, name: str, model: VisionTransformer) -> None:
        super().__init__(name, model.embed_dim)
        self.model = model
        self.patch_size: int = model.patch_embed.patch_size[0]

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """[B,3,H,W] -> [B, prefix + h*w, C] after the final norm."""
        return self.model.forward_features(x)

    def grid_size(self, x: ImageSize) -> tuple[int, int]:
        """Patch grid (h, w) for an input [B,3,H,W] (or (H, W), or H)."""
        return tuple(self.model.patch_embed.dynamic_feat_size(image_hw(x)))

    @property
    def num_prefix_tokens(self) -> int:
        return self.model.num_prefix_tokens

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage_map(self.tokens(x), x)  # [B, prefix + h*w, C] -> [B, C, h, w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tokens(x)[:, 0]  # CLS, [B, C]

    def stage_layers(self, blocks: list[int] | None = None) -> list[str]:
        blocks = blocks if blocks is not None else default_stage_blocks(len(self.model.blocks))
        return [f"model.blocks.{i}" for i in blocks]

    def stage_map(self, output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Block output [B, P + h*w, C] -> [B, C, h, w] (prefix tokens dropped)."""
        h, w = self.grid_size(x)
        return output[:, self.num_prefix_tokens:].transpose(1, 2).reshape(output.shape[0], -1, h, w)

    def attention_layers(self) -> list[str]:
        return [f"model.blocks.{i}.attn" for i in range(len(self.model.blocks))]

    def token_grid(self, x: ImageSize, layer: str | int | None = None) -> tuple[int, int]:
        self.resolve_attention_layer(layer)
        return self.grid_size(x)  # every block runs on the patch grid

    @contextmanager
    def _recording(self, record: AttentionRecord) -> Iterator[None]:
        """timm ``Attention`` (unfused: ``attn_drop`` input [B, P + h*w, P + h*w]); the grid comes from the
        image entering the patch embedding, so ``forward`` and ``forward_features`` both work."""
        grid: dict[str, tuple[int, int]] = {}

        def on_image(_m, args) -> None:  # patch embedding input [B, 3, H, W]
            grid["hw"] = self.grid_size(args[0])

        def on_probs(attn: torch.Tensor) -> None:  # [B, heads, P + h*w, P + h*w]
            h, w = grid["hw"]
            record.attn = attn
            record.layout = AttentionLayout(grid=(h, w), batch=attn.shape[0], prefix=attn.shape[-1] - h * w)

        module = self.get_submodule(record.layer)
        with hooks(self.model.patch_embed.register_forward_pre_hook(on_image)), \
                attn_drop_probabilities(module, on_probs):
            yield


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
