"""Linear segmentation probe: training on cached frozen features, evaluation at the label's resolution."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from rtsseg.seg.metrics import ConfusionMeter
from rtsseg.seg.probe import (
    FeatureCache,
    FrozenBackboneSegmenter,
    LinearSegHead,
    evaluate_segmentation,
    predict_masks,
    train_probe,
)

# Four classes, four colours at corners of the RGB cube (linearly separable one-vs-rest).
COLOURS = torch.tensor([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=torch.float32)


class TinyBackbone(nn.Module):
    """Stand-in for the Backbone contract: a frozen random patchify conv, stride ``stride``."""

    def __init__(self, embed_dim: int = 8, stride: int = 2) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.mean, self.std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
        self.proj = nn.Conv2d(3, embed_dim, stride, stride)
        self.bn = nn.BatchNorm2d(embed_dim)  # to see that the segmenter keeps it in eval mode

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        return (x - torch.tensor(self.mean).view(3, 1, 1)) / torch.tensor(self.std).view(3, 1, 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # [B,3,H,W] -> [B,C,H/s,W/s]
        return self.bn(self.proj(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).mean((2, 3))


def synthetic_segmentation(n: int, seed: int, image_size: int = 16, mask_size: int = 32):
    """Images ``uint8 [n,3,image_size,image_size]`` of 4×4 coloured blocks; masks ``[n,mask_size,mask_size]``.

    Masks are at a larger resolution than the images (as CamVid masks at 360×480 beside resized images);
    one block in eight is void (255).
    """
    g = torch.Generator().manual_seed(seed)
    blocks = torch.randint(0, 4, (n, 4, 4), generator=g)  # [n,4,4] class per block
    colour = COLOURS[blocks].permute(0, 3, 1, 2)  # [n,3,4,4]
    images = F.interpolate(colour, size=image_size, mode="nearest")
    images = (images + 20 * torch.randn(images.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    masks = F.interpolate(blocks[:, None].float(), size=mask_size, mode="nearest")[:, 0].long()
    void = torch.rand(n, 4, 4, generator=g) < 0.125
    masks[F.interpolate(void[:, None].float(), size=mask_size, mode="nearest")[:, 0].bool()] = 255
    return images, masks


def loader(n: int, seed: int, batch_size: int = 8, **kw) -> DataLoader:
    return DataLoader(TensorDataset(*synthetic_segmentation(n, seed, **kw)), batch_size=batch_size)


def test_head_shapes_and_linearity():
    head = LinearSegHead(8, 5).eval()
    y = head(torch.randn(2, 8, 3, 4))
    assert y.shape == (2, 5, 3, 4)
    with pytest.raises(ValueError):
        head(torch.randn(2, 7, 3, 4))
    # in eval mode the BN-then-1x1-conv probe is affine: f(a + b) - f(b) = f(a) - f(0)
    a, b, z = torch.randn(1, 8, 2, 2), torch.randn(1, 8, 2, 2), torch.zeros(1, 8, 2, 2)
    assert torch.allclose(head(a + b) - head(b), head(a) - head(z), atol=1e-5)


def test_segmenter_keeps_backbone_frozen():
    torch.manual_seed(0)
    model = FrozenBackboneSegmenter(TinyBackbone(), LinearSegHead(8, 4)).train()
    assert not model.backbone.training and model.head.training
    assert not any(p.requires_grad for p in model.backbone.parameters())
    images, _ = synthetic_segmentation(2, 0)
    assert model(images).shape == (2, 4, 8, 8)  # feature resolution (16 px / stride 2)


def test_train_probe_drives_miou_up():
    torch.manual_seed(0)
    backbone = TinyBackbone()
    train, val = loader(32, seed=1), loader(16, seed=2)
    untrained = FrozenBackboneSegmenter(backbone, LinearSegHead(backbone.embed_dim, 4))
    before = evaluate_segmentation(untrained, val, 4, progress=False).miou
    head, history = train_probe(backbone, train, num_classes=4, epochs=30, lr=0.05, progress=False)
    after = evaluate_segmentation(FrozenBackboneSegmenter(backbone, head), val, 4, progress=False)
    assert len(history) == 30 and set(history[0]) == {"epoch", "loss", "lr", "wall_s"}
    assert history[-1]["loss"] < history[0]["loss"]
    assert before < 0.5
    assert after.miou > 0.9, (before, after)


def test_train_probe_uncached_matches_task():
    torch.manual_seed(0)
    backbone = TinyBackbone()
    head, history = train_probe(backbone, loader(32, seed=1), 4, epochs=15, lr=0.05, feature_cache=False,
                                progress=False)
    scores = evaluate_segmentation(FrozenBackboneSegmenter(backbone, head), loader(16, seed=2), 4, progress=False)
    assert scores.miou > 0.85


def test_train_probe_is_deterministic():
    def run():
        torch.manual_seed(123)
        backbone = TinyBackbone()
        head, _ = train_probe(backbone, loader(16, seed=1), 4, epochs=2, lr=0.05, progress=False, seed=3)
        return head.classifier.weight.detach().clone()

    assert torch.equal(run(), run())


class FixedLogits(nn.Module):
    """Logits ``[B,2,2,2]``: the left column says class 0, the right column class 1."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        left = torch.tensor([[1.0, -1.0], [1.0, -1.0]])  # class-0 logit per (row, col)
        return torch.stack([left, -left])[None].expand(images.shape[0], -1, -1, -1)


def test_evaluate_upsamples_to_label_resolution():
    images = torch.zeros(3, 3, 8, 8, dtype=torch.uint8)  # the network sees 8x8
    masks = torch.zeros(3, 12, 20, dtype=torch.long)  # labels at their own 12x20
    masks[:, :, 10:] = 1
    masks[0, 0, 0] = 255
    dl = DataLoader(TensorDataset(images, masks), batch_size=2)
    scores = evaluate_segmentation(FixedLogits(), dl, 2, progress=False)
    assert scores.miou == pytest.approx(1.0) and scores.pixel_accuracy == pytest.approx(1.0)
    # the same as upsampling by hand with bilinear interpolation
    up = F.interpolate(FixedLogits()(images).float(), size=(12, 20), mode="bilinear", align_corners=False)
    meter = ConfusionMeter(2)
    meter.update(up.argmax(1), masks)
    assert meter.scores().miou == pytest.approx(scores.miou)
    assert predict_masks(FixedLogits(), images[:1], (12, 20)).shape == (1, 12, 20)


def test_evaluate_accepts_masks_of_different_sizes_per_image():
    images = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    m1, m2 = torch.zeros(6, 6, dtype=torch.long), torch.zeros(10, 14, dtype=torch.long)
    m1[:, 3:], m2[:, 7:] = 1, 1
    scores = evaluate_segmentation(FixedLogits(), [(images, [m1, m2])], 2, progress=False)
    assert scores.miou == pytest.approx(1.0)
    with pytest.raises(ValueError, match="masks"):
        evaluate_segmentation(FixedLogits(), [(images, [m1])], 2, progress=False)


def test_feature_cache_batches_group_shapes_and_cover_all():
    cache = FeatureCache()
    for i in range(7):
        size = 4 if i % 2 else 6
        cache.feats.append(torch.full((3, size // 2, size // 2), float(i)))
        cache.masks.append(torch.zeros(size, size, dtype=torch.uint8))
    seen = []
    for feats, masks in cache.batches(3, torch.Generator().manual_seed(0)):
        assert feats.shape[0] == masks.shape[0] <= 3 and masks.dtype == torch.long
        seen += feats[:, 0, 0, 0].long().tolist()
    assert sorted(seen) == list(range(7))
