"""Linear segmentation probe on a frozen backbone's ``forward_features``.

The probe is what STEGO and DINO call a linear probe: a 1×1 convolution from the patch features to
class logits, here preceded by an affine-free ``BatchNorm2d`` (as in MAE's linear probing) so that
backbones whose features differ in scale get the same learning rate. BN without affine parameters
followed by a 1×1 conv is still a linear map of the features at test time.

Training: the backbone is frozen, so its features are computed once and cached in memory; the head is
trained with cross-entropy (``ignore_index`` dropped) on logits upsampled (bilinear) to each mask's own
resolution, the standard choice (downsampling masks by nearest would throw labels away and score a
different task). Evaluation upsamples the logits the same way before the argmax and keeps one
confusion matrix over the whole split (:mod:`rtsseg.seg.metrics`).

Loaders may resize images for the network while masks stay at native resolution: masks of one batch
must share a size (they stack), different batches may differ.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from rtsseg.schedule import cosine_scheduler
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


class FrozenBackboneSegmenter(nn.Module):
    """Frozen backbone + trainable head. ``forward(images)`` -> logits ``[B,K,h,w]`` at feature resolution.

    ``images`` are what the loaders give: uint8 ``[B,3,H,W]`` (or float in [0, 1]); the backbone's own
    ``normalize`` is applied here. The backbone stays in eval mode (frozen BN statistics, no dropout).
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone.requires_grad_(False).eval()
        self.head = head

    def train(self, mode: bool = True) -> "FrozenBackboneSegmenter":
        super().train(mode)
        self.backbone.eval()
        return self

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:  # [B,3,H,W] -> [B,C,h,w]
        return self.backbone.forward_features(self.backbone.normalize(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # [B,3,H,W] -> [B,K,h,w]
        return self.head(self.features(images))


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


def _mask_dtype(num_classes: int, ignore_index: int) -> torch.dtype:
    return torch.uint8 if max(num_classes - 1, ignore_index) <= 255 and ignore_index >= 0 else torch.int64


@dataclass
class FeatureCache:
    """Frozen features and their masks, one entry per image: ``feats[i] [C,h,w]``, ``masks[i] [H,W]``."""

    feats: list[torch.Tensor] = field(default_factory=list)
    masks: list[torch.Tensor] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.feats)

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """Shuffled minibatches ``(feats [b,C,h,w], masks [b,H,W] int64)``; each batch holds one shape."""
        order = torch.randperm(len(self), generator=generator).tolist()
        buckets: dict[tuple, list[int]] = {}
        for i in order:
            buckets.setdefault((tuple(self.feats[i].shape), tuple(self.masks[i].shape)), []).append(i)
        chunks = [idx[s : s + batch_size] for idx in buckets.values() for s in range(0, len(idx), batch_size)]
        for c in torch.randperm(len(chunks), generator=generator).tolist():
            idx = chunks[c]
            yield torch.stack([self.feats[i] for i in idx]), torch.stack([self.masks[i] for i in idx]).long()


@torch.no_grad()
def cache_features(
    backbone: nn.Module,
    loader: Iterable,
    device: str | torch.device = "cpu",
    num_classes: int = 256,
    ignore_index: int = 255,
    progress: bool = True,
) -> FeatureCache:
    """Run the frozen backbone once over ``loader`` of ``(images uint8 [B,3,H,W], masks [B,H,W])``.

    Features are kept on the CPU in float32; masks in uint8 when the ids fit.
    """
    backbone.eval()
    cache = FeatureCache()
    mdtype = _mask_dtype(num_classes, ignore_index)
    for images, masks in tqdm(loader, desc="features", disable=not progress, leave=False):
        feats = backbone.forward_features(backbone.normalize(images.to(device)))  # [B,C,h,w]
        cache.feats.extend(feats.float().cpu().unbind(0))
        for group in _batch_masks(masks):
            cache.masks.extend(group.to(mdtype).unbind(0))
    if len(cache.feats) != len(cache.masks):
        raise ValueError(f"loader gave {len(cache.feats)} images but {len(cache.masks)} masks")
    if len(cache) == 0:
        raise ValueError("the training loader is empty")
    return cache


def _loader_batches(backbone, loader, device) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """Uncached path (augmenting loaders): features recomputed for every batch."""
    backbone.eval()
    for images, masks in loader:
        with torch.no_grad():
            feats = backbone.forward_features(backbone.normalize(images.to(device)))
        offset = 0
        for group in _batch_masks(masks):
            yield feats[offset : offset + group.shape[0]], group.long()
            offset += group.shape[0]
        if offset != feats.shape[0]:
            raise ValueError(f"batch has {feats.shape[0]} images but {offset} masks")


def seg_loss(logits: torch.Tensor, masks: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Cross-entropy of ``[B,K,h,w]`` logits upsampled to ``masks [B,H,W]``; void pixels dropped."""
    return F.cross_entropy(upsample_logits(logits, masks.shape[-2:]), masks, ignore_index=ignore_index)


def train_probe(
    backbone: nn.Module,
    train_loader: Iterable,
    num_classes: int,
    epochs: int = 10,
    lr: float = 1e-3,
    device: str | torch.device = "cpu",
    ignore_index: int = 255,
    feature_cache: bool = True,
    progress: bool = True,
    batch_size: int | None = None,
    weight_decay: float = 0.0,
    batch_norm: bool = True,
    seed: int = 0,
) -> tuple[LinearSegHead, list[dict]]:
    """Train a :class:`LinearSegHead` on the frozen ``backbone`` (Adam, cosine schedule per step).

    ``train_loader`` yields ``(images uint8 [B,3,H,W], masks int64 [B,H,W])``; masks may be larger than
    the images. ``batch_size`` for the cached features defaults to the loader's. Returns the head (on
    ``device``, eval mode) and a history: one dict per epoch with ``epoch, loss, lr, wall_s``.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    backbone = backbone.to(device).requires_grad_(False).eval()
    head = LinearSegHead(backbone.embed_dim, num_classes, batch_norm=batch_norm).to(device)
    batch_size = batch_size or getattr(train_loader, "batch_size", None) or 8
    cache = cache_features(backbone, train_loader, device, num_classes, ignore_index, progress) if feature_cache else None
    steps_per_epoch = math.ceil(len(cache) / batch_size) if cache is not None else len(train_loader)
    total = epochs * steps_per_epoch
    optimizer = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    factors = cosine_scheduler(1.0, 0.0, total)  # [total] cosine from lr to 0, per step
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: float(factors[min(s, total - 1)]))
    history = []
    for epoch in tqdm(range(epochs), desc="probe", disable=not progress):
        head.train()
        start, loss_sum, n = time.perf_counter(), 0.0, 0
        batches = cache.batches(batch_size, generator) if cache is not None else _loader_batches(backbone, train_loader, device)
        for feats, masks in batches:
            loss = seg_loss(head(feats.to(device)), masks.to(device), ignore_index)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum, n = loss_sum + loss.item(), n + 1
        history.append({"epoch": epoch + 1, "loss": loss_sum / max(n, 1), "lr": scheduler.get_last_lr()[0],
                        "wall_s": time.perf_counter() - start})
    return head.eval(), history


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

    ``model(images)`` must return logits ``[B,K,h,w]`` (e.g. :class:`FrozenBackboneSegmenter`).
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
