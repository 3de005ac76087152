"""Batched Barlow Twins augmentations: shapes, determinism, per-sample randomness, probabilities."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.functional as TF

from rtsseg.ssl.augment import (
    BarlowTwinsAugment,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    gaussian_blur,
    hsv_to_rgb,
    resized_crop_flip,
    rgb_to_hsv,
    sample_crop_boxes,
    solarize,
)


def _images(n: int = 16, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _only(aug: BarlowTwinsAugment, **kw) -> BarlowTwinsAugment:
    """Switch every random step off, then on only what ``kw`` sets."""
    base = dict(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, grayscale_p=0.0,
                blur_p=(0.0, 0.0), solarize_p=(0.0, 0.0), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    base.update(kw)
    return BarlowTwinsAugment(aug.image_size, **base)


def test_shapes_dtype_and_normalisation():
    aug = BarlowTwinsAugment(24, generator=torch.Generator().manual_seed(0))
    v1, v2 = aug(_images(8, 32))
    assert v1.shape == v2.shape == (8, 3, 24, 24) and v1.dtype == torch.float32
    back = aug.denormalize(v1)
    assert back.min() >= 0 and back.max() <= 1
    with pytest.raises(ValueError):
        aug(torch.zeros(3, 32, 32, dtype=torch.uint8))


def test_default_parameters_are_the_official_ones():
    aug = BarlowTwinsAugment(64)
    assert aug.jitter == (0.4, 0.4, 0.2, 0.1) and aug.jitter_p == 0.8 and aug.grayscale_p == 0.2
    assert aug.blur_p == (1.0, 0.1) and aug.solarize_p == (0.0, 0.2) and aug.blur_sigma == (0.1, 2.0)
    assert aug.scale == (0.08, 1.0)
    # σ range given for 224 px, scaled to the image size; kernel radius ceil(3 σ_max) + 1
    assert aug.applied_blur_sigma == pytest.approx((0.1 * 64 / 224, 2.0 * 64 / 224))
    assert aug.blur_kernel_size == 7  # radius ceil(3 * 0.571) + 1 = 3
    assert BarlowTwinsAugment(224).blur_kernel_size == 15
    with pytest.raises(ValueError, match="below"):
        BarlowTwinsAugment(224, blur_kernel_size=7)


def test_generator_gives_determinism_and_differs_across_seeds():
    x = _images()
    a = BarlowTwinsAugment(32)
    r1 = a(x, generator=torch.Generator().manual_seed(5))
    r2 = a(x, generator=torch.Generator().manual_seed(5))
    r3 = a(x, generator=torch.Generator().manual_seed(6))
    assert torch.equal(r1[0], r2[0]) and torch.equal(r1[1], r2[1])
    assert not torch.equal(r1[0], r3[0])
    assert not torch.equal(r1[0], r1[1])  # two views differ


def test_randomness_is_per_sample():
    x = _images(1).expand(8, -1, -1, -1).contiguous()  # the same image 8 times
    v1, _ = BarlowTwinsAugment(32, generator=torch.Generator().manual_seed(0))(x)
    flat = v1.flatten(1)
    assert all(not torch.equal(flat[0], flat[i]) for i in range(1, 8))


def test_crop_boxes_fit_and_follow_scale_and_ratio():
    boxes = sample_crop_boxes(500, 40, 60, generator=torch.Generator().manual_seed(0))
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 40).all() and (left + w <= 60).all()
    frac = h * w / (40 * 60)
    assert frac.min() >= 0.06 and frac.max() <= 1.0
    assert frac.min() < 0.2 and frac.max() > 0.7  # the range is actually used


def test_identity_crop_and_flip():
    x = torch.rand(2, 3, 8, 8)
    boxes = torch.tensor([[0.0, 0.0, 8.0, 8.0]] * 2, dtype=torch.float64)
    y = resized_crop_flip(x, boxes, torch.tensor([False, True]), 8)
    torch.testing.assert_close(y[0], x[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(y[1], x[1].flip(-1), atol=1e-5, rtol=0)
    # a quarter crop, upsampled 2x: the top-left pixel block equals the crop's corner pixel area
    # a 4x4 crop resized to 4x4 is the crop itself
    box = torch.tensor([[2.0, 3.0, 4.0, 4.0]], dtype=torch.float64)
    crop = resized_crop_flip(x[:1], box, torch.tensor([False]), 4)
    torch.testing.assert_close(crop[0], x[0, :, 2:6, 3:7], atol=1e-5, rtol=0)


def test_colour_ops_match_torchvision():
    x = torch.rand(3, 3, 12, 12)
    f = torch.full((3,), 0.7)
    torch.testing.assert_close(adjust_contrast(x.clone(), f), TF.adjust_contrast(x, 0.7), atol=1e-4, rtol=0)
    torch.testing.assert_close(adjust_saturation(x.clone(), f), TF.adjust_saturation(x, 0.7), atol=1e-4, rtol=0)
    torch.testing.assert_close(adjust_hue(x, torch.full((3,), -0.08)), TF.adjust_hue(x, -0.08), atol=1e-5, rtol=0)
    torch.testing.assert_close(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(gaussian_blur(x, torch.full((3,), 1.3), 7), TF.gaussian_blur(x, 7, 1.3), atol=1e-5, rtol=0)
    torch.testing.assert_close(solarize(torch.tensor([0.1, 0.6])), torch.tensor([0.1, 0.4]))


def test_solarize_probability_semantics():
    x = _images(400, 8)
    aug = _only(BarlowTwinsAugment(8), solarize_p=(0.0, 0.2))
    v1, v2 = aug(x, generator=torch.Generator().manual_seed(0))
    plain = x.float() / 255
    assert torch.allclose(v1, plain, atol=1e-5)  # view 1: p = 0, never solarised
    changed = ~torch.isclose(v2, plain, atol=1e-5).flatten(1).all(1)
    assert 0.12 < changed.float().mean() < 0.28  # view 2: p = 0.2
    torch.testing.assert_close(v2[changed], solarize(plain[changed]), atol=1e-5, rtol=0)


def test_grayscale_probability_semantics():
    x = _images(400, 8)
    v1, _ = _only(BarlowTwinsAugment(8), grayscale_p=0.2)(x, generator=torch.Generator().manual_seed(1))
    gray = (v1[:, 0] == v1[:, 1]).flatten(1).all(1) & (v1[:, 1] == v1[:, 2]).flatten(1).all(1)
    assert 0.12 < gray.float().mean() < 0.28
    v1, _ = _only(BarlowTwinsAugment(8), grayscale_p=1.0)(x[:4])
    assert torch.equal(v1[:, 0], v1[:, 2])


def test_blur_probability_per_view():
    x = _images(200, 16)
    v1, v2 = _only(BarlowTwinsAugment(16), blur_p=(1.0, 0.1), blur_sigma=(1.0, 2.0), blur_sigma_size=None)(x, generator=torch.Generator().manual_seed(2))
    plain = x.float() / 255
    blurred1 = ~torch.isclose(v1, plain, atol=1e-4).flatten(1).all(1)
    blurred2 = ~torch.isclose(v2, plain, atol=1e-4).flatten(1).all(1)
    assert blurred1.all()
    assert 0.03 < blurred2.float().mean() < 0.2


def test_runs_on_float_input_and_keeps_device():
    x = torch.rand(4, 3, 20, 20)
    v1, v2 = BarlowTwinsAugment(16)(x, generator=torch.Generator().manual_seed(0))
    assert v1.device == x.device and v1.shape == (4, 3, 16, 16) and torch.isfinite(v2).all()


def _impulse_sigma(aug: BarlowTwinsAugment, size: int) -> float:
    """σ actually applied: the standard deviation (along x) of the blurred centred impulse."""
    x = torch.zeros(1, 3, size, size)
    x[:, :, size // 2, size // 2] = 1.0
    y = aug.view(x, 1.0, 0.0, torch.Generator().manual_seed(0), normalize=False)[0, 0]  # [S, S]
    p = y.sum(0) / y.sum()  # marginal over columns
    pos = torch.arange(size, dtype=torch.float32) - size // 2
    return float(((p * pos**2).sum() - (p * pos).sum() ** 2).sqrt())


@pytest.mark.parametrize("image_size,sigma224", [(64, 2.0), (64, 1.0), (224, 2.0), (224, 1.0), (128, 2.0)])
def test_applied_blur_sigma_equals_requested(image_size, sigma224):
    """The fitted σ of a blurred impulse equals σ_224 * image_size / 224 (within 3 %: the truncation of the
    discrete Gaussian at 3 σ + 1 tap lowers the variance slightly)."""
    aug = _only(BarlowTwinsAugment(image_size), blur_p=(1.0, 1.0), blur_sigma=(sigma224, sigma224))
    want = sigma224 * image_size / 224
    assert aug.applied_blur_sigma[0] == pytest.approx(want)
    assert _impulse_sigma(aug, image_size) == pytest.approx(want, rel=0.03)


def test_old_seven_tap_kernel_would_shrink_sigma():
    """The bug this scaling fixes: σ = 2 px with a 7-tap kernel applies only ~1.6 px."""
    aug = _only(BarlowTwinsAugment(64), blur_p=(1.0, 1.0), blur_sigma=(2.0, 2.0), blur_sigma_size=None,
                blur_kernel_size=15)
    assert _impulse_sigma(aug, 64) == pytest.approx(2.0, rel=0.03)
    x = torch.zeros(1, 1, 64, 64)
    x[..., 32, 32] = 1.0
    p = gaussian_blur(x, torch.tensor([2.0]), 7)[0, 0].sum(0)
    pos = torch.arange(64, dtype=torch.float32) - 32
    assert float((p * pos**2).sum().sqrt()) < 1.7
