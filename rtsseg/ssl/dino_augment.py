"""DINO multi-crop on whole batches of tensors (any device): 2 global + N local crops, uint8 in.

Official ``DataAugmentationDINO`` (224 px ImageNet): global crops 224 px, scale (0.4, 1) [(0.14, 1) without
local crops], local crops 96 px, scale (0.05, 0.4); every crop flip + ColorJitter(0.4, 0.4, 0.2, 0.1)
p 0.8 + grayscale p 0.2; blur p 1.0 (global 1), 0.1 (global 2), 0.5 (local); solarisation p 0.2 (global 2).

Scaled to our images (:func:`default_crops`): the global crop is the training resolution (64 px for
Tiny-ImageNet), the local crop 96/224 of it rounded up to a multiple of the ViT patch (64 px: 27.4 -> 32 px,
whole 4 x 4 token grids of patch 8; 224 px with patch 16: exactly the official 96 px). The crop *scales* are fractions of the
image area and stay as published. The per-view operations are
:meth:`rtsseg.ssl.augment.BarlowTwinsAugment.view` (same batched primitives and deviations as Barlow
Twins), so the two methods see identical photometric augmentations; only crops and their number differ.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rtsseg.ssl.augment import IMAGENET_MEAN, IMAGENET_STD, BarlowTwinsAugment


@dataclass(frozen=True)
class CropSpec:
    """Sizes (pixels) and area scales of the global and local crops."""

    global_size: int
    local_size: int
    n_local: int
    global_scale: tuple[float, float]
    local_scale: tuple[float, float]


def default_crops(image_size: int, n_local: int = 6, patch: int = 8) -> CropSpec:
    """DINO's crops scaled to ``image_size``: global = image_size, local = image_size x 96/224 rounded up to a
    multiple of ``patch`` (at least one patch); global scale (0.4, 1) with local crops, (0.14, 1) without."""
    if n_local < 0:
        raise ValueError(f"n_local must be >= 0, got {n_local}")
    local = max(patch, math.ceil(image_size * 96 / 224 / patch - 1e-9) * patch)
    gscale = (0.4, 1.0) if n_local > 0 else (0.14, 1.0)
    return CropSpec(image_size, local, n_local, gscale, (0.05, 0.4))


class DinoMultiCrop:
    """``crops(x uint8 [B, 3, H, W], generator) -> [global1, global2, local_1, ..., local_N]``.

    Globals are float32 [B, 3, G, G], locals [B, 3, L, L], normalised with ``mean``/``std``. All draws come
    from the CPU ``generator`` (per-sample parameters only), in a fixed order, so a (seed, step, rank)
    generator reproduces the crops exactly on any device.
    """

    def __init__(
        self,
        spec: CropSpec,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        blur_sigma: tuple[float, float] = (0.1, 2.0),
    ) -> None:
        self.spec = spec
        self.global_aug = BarlowTwinsAugment(spec.global_size, mean, std, scale=spec.global_scale, blur_sigma=blur_sigma)
        self.local_aug = BarlowTwinsAugment(spec.local_size, mean, std, scale=spec.local_scale, blur_sigma=blur_sigma)

    @property
    def ncrops(self) -> int:
        return 2 + self.spec.n_local

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W], got {tuple(x.shape)}")
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()  # [B, 3, H, W] in [0, 1]
        crops = [
            self.global_aug.view(x, 1.0, 0.0, generator),  # [B, 3, G, G] blur always
            self.global_aug.view(x, 0.1, 0.2, generator),  # blur p 0.1, solarise p 0.2
        ]
        crops += [self.local_aug.view(x, 0.5, 0.0, generator) for _ in range(self.spec.n_local)]  # [B, 3, L, L]
        return crops
