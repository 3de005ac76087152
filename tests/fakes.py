"""The one fake backbone of the tests: a real ``rtsseg.models.Backbone`` subclass (so ``normalize``,
``prepare`` and ``forward`` are the package's own), small enough for a test to compute by hand.

``FakeBackbone(embed_dim, stride)``: a patchify convolution ``[B,3,H,W] -> [B,embed_dim,H/s,W/s]``, with
optional BatchNorm (to see eval mode kept) and dropout (to see eval mode used).
``FakeBackbone(mean_colour=True)``: features = the normalised image + 10, so the pooled embedding is the
mean colour shifted away from 0 (cosine similarity still tells colours apart); it separates the synthetic
colour classes of :func:`rtsseg.ssl.train.synthetic_dataset` perfectly.
"""

from __future__ import annotations

import torch
from torch import nn

from rtsseg.models.backbone import Backbone


class FakeBackbone(Backbone):
    family = "fake"
    mean = (0.5, 0.5, 0.5)
    std = (0.25, 0.25, 0.25)

    def __init__(self, embed_dim: int = 8, stride: int = 2, batchnorm: bool = False, dropout: float = 0.0,
                 mean_colour: bool = False) -> None:
        super().__init__("fake", 3 if mean_colour else embed_dim)
        self.mean_colour = mean_colour
        self.proj = nn.Identity() if mean_colour else nn.Conv2d(3, embed_dim, stride, stride)
        self.bn = nn.BatchNorm2d(embed_dim) if batchnorm else nn.Identity()
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # [B,3,H,W] -> [B,C,H/s,W/s]
        if self.mean_colour:
            return x + 10.0
        return self.drop(self.bn(self.proj(x)))
