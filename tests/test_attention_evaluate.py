"""Dataset-level attention scores: best head is chosen on dataset means, not per image."""

from __future__ import annotations

import pytest
import torch

from rtsseg.attention import evaluate
from rtsseg.attention.evaluate import attention_scores
from rtsseg.attention.groundtruth import center_square


class _Fixed(torch.nn.Module):
    """Stands in for a backbone: normalize is the identity, eval/train work."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def normalize(self, x):
        return x.float()


def test_best_head_is_the_best_dataset_mean(monkeypatch):
    # 2 images, 2 heads on a 2x2 grid; ground truth = top-left quarter of a 4x4 label.
    maps = torch.zeros(2, 2, 2, 2)
    maps[:, 0, 0, 0] = 1.0  # head 0 always on the object
    maps[0, 1, 0, 0] = 1.0  # head 1: on the object for image 0 only
    maps[1, 1, 1, 1] = 1.0
    monkeypatch.setattr(evaluate, "capture_attention", lambda b, x, layer: maps[: len(x)])
    gts = torch.zeros(2, 4, 4, dtype=torch.bool)
    gts[:, :2, :2] = True
    s = attention_scores(_Fixed(), torch.zeros(2, 3, 4, 4, dtype=torch.uint8), gts, progress=False)
    assert s.per_head_jaccard == pytest.approx([1.0, 0.5])
    assert s.best_head == 0 and s.best_head_jaccard == pytest.approx(1.0)
    assert s.mean_head_jaccard == pytest.approx(0.75)
    assert s.mass_in_gt == pytest.approx(0.75)  # head mean: 1.0 in image 0, 0.5 in image 1
    assert s.gt_area == pytest.approx(0.25)


def test_attention_scores_checks_counts():
    with pytest.raises(ValueError, match="2 images but 1"):
        attention_scores(_Fixed(), torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(1, 4, 4, dtype=torch.bool))


def test_center_square_keeps_mask_resolution():
    image = torch.arange(3 * 6 * 8, dtype=torch.uint8).reshape(3, 6, 8)
    mask = torch.arange(48).reshape(6, 8)
    img, m = center_square(image, mask, 3)
    assert img.shape == (3, 3, 3) and img.dtype == torch.uint8
    assert torch.equal(m, mask[:, 1:7])
