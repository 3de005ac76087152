"""The one interface every backbone follows: feature map, pooled embedding, attention layers.

A ``Backbone`` wraps a timm model in ``self.model`` (so state_dict keys read ``model.<timm key>``) and adds:

    forward_features(x [B,3,H,W] float, normalised) -> [B,C,h,w]   (last-stage feature map)
    forward(x [B,3,H,W]) -> [B,C]                                  (pooled: CLS for ViT, global average otherwise)
    attention_layers() -> list[str]                                (names of the attention modules, first to last)
    normalize(x uint8 [B,3,H,W] or float in [0,1]) -> float normalised with ``mean``/``std``
    prepare(x uint8 [B,3,H,W], size) -> float normalised [B,3,size,size]  (the one input path: resize + normalise)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

FAMILIES = ("resnet", "botnet", "swin", "vit")


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

    def attention_layers(self) -> list[str]:
        """Module names (``self.named_modules()``) of the attention layers, first to last; [] for a CNN."""
        return []

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
