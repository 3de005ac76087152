"""The linear segmentation probe head, and evaluation at the label's own resolution.

The probe is what STEGO and DINO call a linear probe: a 1×1 convolution from the patch features to
class logits, here preceded by an affine-free ``BatchNorm2d`` (as in MAE's linear probing) so that
backbones whose features differ in scale get the same learning rate. BN without affine parameters
followed by a 1×1 conv is still a linear map of the features at test time. It is the
:class:`rtsseg.seg.decoders.LinearDecoder`'s head (trained by :mod:`rtsseg.seg.train`).

Evaluation upsamples the logits (bilinear) to each mask's own resolution before the argmax, the standard
choice (downsampling masks by nearest would throw labels away and score a different task), and keeps one
confusion matrix over the whole split (:mod:`rtsseg.seg.metrics`). Loaders may resize images for the network
while masks stay at native resolution: masks of one batch either share a size (they stack) or come as a list.
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from rtsseg.seg.metrics import ConfusionMeter, SegScores


class LinearSegHead(nn.Module):
    """``BatchNorm2d(affine=False)`` (optional) then a 1×1 conv: features ``[B,C,h,w]`` -> logits ``[B,K,h,w]``."""

    def __init__(self, in_dim: int, num_classes: int, batch_norm: bool = True) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.num_classes = num_classes
        self.bn = nn.BatchNorm2d(in_dim, affine=False) if batch_norm else nn.Identity()
        self.classifier = nn.Conv2d(in_dim, num_classes, kernel_size=1)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:  # [B,C,h,w] -> [B,K,h,w]
        if feats.dim() != 4 or feats.shape[1] != self.in_dim:
            raise ValueError(f"expected features [B,{self.in_dim},h,w], got {tuple(feats.shape)}")
        return self.classifier(self.bn(feats))


def upsample_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling of ``[B,K,h,w]`` logits to the label's ``(H, W)``."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


def _batch_masks(masks: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor]:
    """A batch of masks as a list of equal-size groups: ``[B,H,W]`` stays one group."""
    if isinstance(masks, torch.Tensor):
        if masks.dim() != 3:
            raise ValueError(f"expected masks [B,H,W], got {tuple(masks.shape)}")
        return [masks]
    return [m.unsqueeze(0) for m in masks]


@torch.no_grad()
def predict_masks(model: nn.Module, images: torch.Tensor, size: tuple[int, int], device: str | torch.device = "cpu") -> torch.Tensor:
    """Class ids ``int64 [B,H,W]`` at ``size`` (the labels' resolution) for ``images [B,3,h,w]``."""
    model.eval()
    return upsample_logits(model(images.to(device)), size).argmax(1).cpu()


@torch.no_grad()
def evaluate_segmentation(
    model: nn.Module,
    loader: Iterable,
    num_classes: int,
    device: str | torch.device = "cpu",
    ignore_index: int = 255,
    progress: bool = True,
) -> SegScores:
    """mIoU over the whole split: logits upsampled (bilinear) to each label's own size, one confusion matrix.

    ``model(images)`` must return logits ``[B,K,h,w]`` (e.g. :class:`rtsseg.seg.train.Segmenter`).
    """
    model = model.to(device).eval()
    meter = ConfusionMeter(num_classes, ignore_index)
    for images, masks in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
        logits = model(images.to(device))  # [B,K,h,w]
        if logits.shape[1] != num_classes:
            raise ValueError(f"model gives {logits.shape[1]} classes, expected {num_classes}")
        offset = 0
        for group in _batch_masks(masks):
            part = logits[offset : offset + group.shape[0]]
            pred = upsample_logits(part, group.shape[-2:]).argmax(1)  # [b,H,W]
            meter.update(pred, group.to(pred.device))
            offset += group.shape[0]
        if offset != logits.shape[0]:
            raise ValueError(f"batch has {logits.shape[0]} images but {offset} masks")
    return meter.scores()
