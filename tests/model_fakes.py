"""The shared fake backbones of the tests: a few-thousand-parameter conv net (``tiny_test``) and a tiny ViT-like
net with a CLS token and position embeddings (``tiny_vit_test``).

Registered with :func:`register_fakes` (in-process tests), or named ``model_fakes:TinyBackbone`` on a command
line with ``tests/`` on ``PYTHONPATH`` (subprocess and torchrun tests, see :func:`subprocess_env`).

Same interface as ``rtsseg.models.Backbone`` where the trainer needs it: ``.embed_dim``, ``.mean``,
``.std``, ``forward(x [B, 3, H, W]) -> [B, embed_dim]``. No BatchNorm, so a DDP run and a single
process see exactly the same function of the global batch.
"""

from __future__ import annotations

import torch
from torch import nn

from rtsseg.ssl.augment import IMAGENET_MEAN, IMAGENET_STD


class TinyBackbone(nn.Module):
    family = "tiny"

    def __init__(self, embed_dim: int = 16, width: int = 8, img_size: int | None = None) -> None:  # any size
        super().__init__()
        self.embed_dim = embed_dim
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, embed_dim, 3, stride=2, padding=1), nn.ReLU(inplace=True),
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # [B, 3, H, W] -> [B, D, H/4, W/4]
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 3, H, W] -> [B, D]
        return self.forward_features(x).mean(dim=(2, 3))


class TinyViT(nn.Module):
    """Patch embedding + CLS token + position embeddings + one linear mixer; ``forward`` returns the CLS output.

    Enough to check what the optimiser does with ``cls_token`` / ``pos_embed`` (no BatchNorm)."""

    family = "vit"

    def __init__(self, embed_dim: int = 16, patch: int = 8, grid: int = 4, img_size: int | None = None) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD
        self.patch_embed = nn.Conv2d(3, embed_dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, embed_dim) * 1e-6)  # timm's init
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + grid * grid, embed_dim) * 0.02)
        self.norm = nn.LayerNorm(embed_dim)
        self.mix = nn.Linear(embed_dim, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 3, H, W] -> [B, D]
        t = self.patch_embed(x).flatten(2).transpose(1, 2)  # [B, N, D]
        t = torch.cat([self.cls_token.expand(len(t), -1, -1), t], 1)
        t = t + self.pos_embed[:, : t.shape[1]]
        t = t + self.mix(self.norm(t)).mean(1, keepdim=True)  # every token sees the mean
        return t[:, 0]


def register_fakes() -> None:
    """``tiny_test`` and ``tiny_vit_test`` in :func:`rtsseg.models.build_backbone` (profile "test")."""
    from rtsseg.models import register_backbone

    register_backbone("tiny_test", TinyBackbone)
    register_backbone("tiny_vit_test", TinyViT)


def subprocess_env(env: dict | None = None) -> dict:
    """Environment for a child python that must import ``model_fakes`` (and this checkout's rtsseg)."""
    import os
    from pathlib import Path

    env = dict(os.environ if env is None else env)
    here = Path(__file__).resolve().parent
    env["PYTHONPATH"] = os.pathsep.join([str(here), str(here.parent), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env
