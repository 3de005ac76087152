"""A few-thousand-parameter convolutional backbone for tests and smoke runs (``tiny_test``).

A ``rtsseg.models.Backbone`` (``.embed_dim``, ``.mean``, ``.std``, ``prepare``,
``forward(x [B, 3, H, W]) -> [B, embed_dim]``). No BatchNorm, so a DDP run and a single
process see exactly the same function of the global batch.
"""

from __future__ import annotations

import torch
from torch import nn

from rtsseg.models.backbone import Backbone


class TinyBackbone(Backbone):
    family = "tiny"

    def __init__(self, embed_dim: int = 16, width: int = 8) -> None:
        super().__init__("tiny_test", embed_dim)
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, embed_dim, 3, stride=2, padding=1), nn.ReLU(inplace=True),
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # [B, 3, H, W] -> [B, D, H/4, W/4]
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 3, H, W] -> [B, D]
        return self.forward_features(x).mean(dim=(2, 3))
