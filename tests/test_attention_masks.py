"""60%-mass masks, boxes, Jaccard, attention mass in the ground truth, figures."""

from __future__ import annotations

import matplotlib
import pytest
import torch

from rtsseg.attention.masks import (box_mask, class_mask, head_scores, jaccard, mass_in_mask, mass_mask,
                                    upsample_maps)
from rtsseg.attention.plot import plot_attention_heads, to_uint8_image


def test_mass_mask_hand_built() -> None:
    m = torch.tensor([[0.5, 0.2], [0.2, 0.1]])
    assert mass_mask(m).tolist() == [[True, True], [False, False]]  # 0.5 + 0.2 >= 0.6
    assert mass_mask(m, 0.5).tolist() == [[True, False], [False, False]]
    assert mass_mask(m * 10, 0.71).tolist() == [[True, True], [True, False]]  # unnormalised input
    assert mass_mask(m, 1.0).all()
    with pytest.raises(ValueError):
        mass_mask(m, 0.0)


def test_mass_mask_batched_shapes() -> None:
    maps = torch.rand(2, 3, 5, 4)
    masks = mass_mask(maps)
    assert masks.shape == maps.shape and masks.dtype == torch.bool
    kept = (maps * masks).flatten(-2).sum(-1) / maps.flatten(-2).sum(-1)
    assert (kept >= 0.6 - 1e-6).all()


def test_box_mask_inclusive_pixels() -> None:
    assert box_mask([1, 0, 2, 1], (3, 4)).int().tolist() == [[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
    assert box_mask(torch.tensor([[0, 0, 63, 63.], [0, 0, 0, 0]]), (64, 64)).flatten(1).sum(1).tolist() == [4096, 1]
    with pytest.raises(ValueError, match="NaN"):
        box_mask([float("nan")] * 4, (4, 4))


def test_jaccard_small_cases() -> None:
    a = torch.tensor([[1, 1], [0, 0]], dtype=torch.bool)
    b = torch.tensor([[1, 0], [1, 0]], dtype=torch.bool)
    assert jaccard(a, b).item() == pytest.approx(1 / 3)
    assert jaccard(a, a).item() == 1.0
    assert torch.isnan(jaccard(torch.zeros(2, 2, dtype=torch.bool), torch.zeros(2, 2, dtype=torch.bool)))
    assert jaccard(torch.stack([a, b]), b).tolist() == pytest.approx([1 / 3, 1.0])


def test_mass_in_mask_and_upsampling() -> None:
    maps = torch.tensor([[0.7, 0.1], [0.1, 0.1]])
    up = upsample_maps(maps, (4, 4))
    assert up[:2, :2].eq(0.7).all() and up.shape == (4, 4)
    gt = box_mask([0, 0, 1, 1], (4, 4))
    assert mass_in_mask(up, gt).item() == pytest.approx(0.7)
    with pytest.raises(ValueError, match="upsample"):
        mass_in_mask(maps, gt)


def test_class_mask_ignores_void() -> None:
    labels = torch.tensor([[0, 5, 255], [7, 5, 1]])
    assert class_mask(labels, [5, 7]).tolist() == [[False, True, False], [True, True, False]]


def test_head_scores_known_answer() -> None:
    maps = torch.zeros(2, 4, 4)  # 2 heads on a 4x4 grid of a 16x16 image
    maps[0] = 0.4 / 12
    maps[0, :2, :2] = 0.15  # head 0: its 60 % mass set is exactly the top-left quarter
    maps[1] = 1 / 16  # head 1: uniform
    gt = box_mask([0, 0, 7, 7], (16, 16))  # the top-left quarter
    s = head_scores(maps, gt)
    assert s["jaccard"][0].item() == pytest.approx(1.0)
    assert s["best_jaccard"].item() == pytest.approx(1.0) and s["best_head"].item() == 0
    assert s["mass_in_gt_heads"].tolist() == pytest.approx([0.6, 0.25])
    assert s["mass_in_gt"].item() == pytest.approx(0.425)
    assert s["mean_jaccard"].item() == pytest.approx((1.0 + s["jaccard"][1].item()) / 2)
    cropped = head_scores(maps[None], gt[None, :, :], image_size=(8, 8))  # grid covers only 8x8 px
    assert cropped["best_jaccard"].shape == (1,)
    with pytest.raises(ValueError, match="larger"):
        head_scores(maps, gt, image_size=(32, 32))


def test_plot_and_denormalisation() -> None:
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    x = (image / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    assert torch.equal(to_uint8_image(x, mean, std), image)  # x * std + mean
    fig = plot_attention_heads(image, torch.rand(6, 4, 4), title="test")
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 3 * 6
    matplotlib.pyplot.close(fig)
    with pytest.raises(ValueError, match="uint8"):
        plot_attention_heads(x, torch.rand(6, 4, 4))
