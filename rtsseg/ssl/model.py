"""Backbone + projector + loss in one module, so that DDP wraps a single forward over both views
(as facebookresearch/barlowtwins does): ``model(y1, y2) -> dict(loss, on_diag, off_diag, c, z1)``.

A backbone without batch normalisation (ViT, Swin: LayerNorm only) treats every sample on its own, so
it runs once on the two views concatenated (larger matrix products, one pass; DINO's multi-crop wrapper
does the same); a backbone with BatchNorm runs once per view, as in the official code, so that its batch
statistics are per view. The projector (BatchNorm) always runs per view.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rtsseg.ssl.loss import BarlowTwinsLoss
from rtsseg.ssl.projector import Projector


class BarlowTwins(nn.Module):
    def __init__(self, backbone: nn.Module, projector_dims: Sequence[int] = (8192, 8192, 8192), lambd: float = 0.0051):
        super().__init__()
        self.backbone = backbone
        self.projector = Projector(backbone.embed_dim, projector_dims)
        self.criterion = BarlowTwinsLoss(lambd)
        self.concat_views = not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in backbone.modules())

    def forward(self, y1: torch.Tensor, y2: torch.Tensor) -> dict[str, torch.Tensor]:
        """y1, y2: normalised views [n, 3, S, S] (local batch). Loss terms are over the global batch."""
        if self.concat_views and y1.shape == y2.shape:
            h1, h2 = self.backbone(torch.cat([y1, y2])).chunk(2)  # [n, E] each
        else:
            h1, h2 = self.backbone(y1), self.backbone(y2)
        z1, z2 = self.projector(h1), self.projector(h2)  # [n, D] each
        out = self.criterion.terms(z1, z2)
        out["z1"] = z1.detach()
        return out
