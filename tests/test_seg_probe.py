"""Linear segmentation probe head; evaluation at the label's resolution."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from rtsseg.seg.metrics import ConfusionMeter
from rtsseg.seg.probe import LinearSegHead, evaluate_segmentation, predict_masks


def test_head_shapes_and_linearity():
    head = LinearSegHead(8, 5).eval()
    y = head(torch.randn(2, 8, 3, 4))
    assert y.shape == (2, 5, 3, 4)
    with pytest.raises(ValueError):
        head(torch.randn(2, 7, 3, 4))
    # in eval mode the BN-then-1x1-conv probe is affine: f(a + b) - f(b) = f(a) - f(0)
    a, b, z = torch.randn(1, 8, 2, 2), torch.randn(1, 8, 2, 2), torch.zeros(1, 8, 2, 2)
    assert torch.allclose(head(a + b) - head(b), head(a) - head(z), atol=1e-5)


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

