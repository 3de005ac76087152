"""Attention-supervision loss on hand-made maps and boxes."""

from __future__ import annotations

import math

import pytest
import torch

from rtsseg.attention.supervision import box_attention_loss, box_token_mask, mask_attention_loss


def test_box_token_mask_partial_tokens():
    # 64 px image, 8x8 tokens of 8 px; box columns 4..11 (inclusive) cover half of token 0 and half of token 1
    m = box_token_mask(torch.tensor([[4.0, 0.0, 11.0, 63.0]]), 64, (8, 8))[0]
    assert m.shape == (8, 8)
    torch.testing.assert_close(m[:, 0], torch.full((8,), 0.5))
    torch.testing.assert_close(m[:, 1], torch.full((8,), 0.5))
    assert m[:, 2:].abs().sum() == 0
    # the full image covers every token fully
    assert torch.equal(box_token_mask(torch.tensor([[0.0, 0, 63, 63]]), 64, (8, 8)), torch.ones(1, 8, 8))
    with pytest.raises(ValueError, match="NaN"):
        box_token_mask(torch.tensor([[float("nan"), 0, 1, 1]]), 64, (8, 8))


def test_box_loss_values_on_hand_made_maps():
    uniform = torch.full((1, 2, 8, 8), 1 / 64)
    left_half = torch.tensor([[0.0, 0.0, 31.0, 63.0]])
    # a uniform map puts half its mass in the left half: -log(0.5)
    assert box_attention_loss(uniform, left_half, 64).item() == pytest.approx(-math.log(0.5 + 1e-6))
    inside = torch.zeros(1, 2, 8, 8)
    inside[:, :, :, :4] = 1 / 32  # all mass in the left half
    assert box_attention_loss(inside, left_half, 64).item() == pytest.approx(-math.log(1 + 1e-6), abs=1e-6)
    # head 0 inside, head 1 all outside: the mean of -log(1) and -log(eps); heads=[0] picks only head 0
    mixed = inside.clone()
    mixed[:, 1] = 0
    mixed[:, 1, :, 4:] = 1 / 32
    assert box_attention_loss(mixed, left_half, 64).item() == pytest.approx(-math.log(1e-6) / 2, rel=1e-4)
    assert box_attention_loss(mixed, left_half, 64, heads=[0]).item() == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match="heads"):
        box_attention_loss(mixed, left_half, 64, heads=[2])


def test_mask_loss_pools_pixel_masks_and_skips_empty_targets():
    maps = torch.softmax(torch.randn(3, 4, 4, 4, generator=torch.Generator().manual_seed(0)).flatten(2), -1)
    maps = maps.view(3, 4, 4, 4).requires_grad_(True)
    pixel = torch.zeros(3, 16, 16)
    pixel[0, :8, :8] = 1  # top-left quarter = tokens [:2, :2]
    pixel[1, :, :] = 1
    # image 2 has an empty target: left out of the mean
    loss = mask_attention_loss(maps, pixel)
    want = torch.stack([-torch.log(maps[0, :, :2, :2].sum((-2, -1)) + 1e-6),
                        -torch.log(maps[1].sum((-2, -1)) + 1e-6)]).mean()
    torch.testing.assert_close(loss, want)
    loss.backward()
    assert maps.grad is not None and maps.grad[2].abs().sum() == 0 and maps.grad[0].abs().sum() > 0
    assert mask_attention_loss(maps, torch.zeros(3, 4, 4)).item() == 0.0
    with pytest.raises(ValueError, match="multiple"):
        mask_attention_loss(maps, torch.zeros(3, 6, 6))


def test_contrastive_loss_bounds_image_independent_maps_below_by_log_batch():
    """Any map that ignores the image scores >= log(B); maps inside their own box score far less."""
    import math

    from rtsseg.attention.supervision import box_token_mask, contrastive_box_attention_loss

    g = torch.Generator().manual_seed(0)
    b, size, grid = 8, 64, (8, 8)
    x0 = torch.randint(0, 40, (b,), generator=g).float()
    y0 = torch.randint(0, 40, (b,), generator=g).float()
    boxes = torch.stack([x0, y0, x0 + 20, y0 + 20], 1)
    for _ in range(5):  # random image-independent maps, one per trial, the same on every image
        m = torch.rand(1, 2, *grid, generator=g).expand(b, -1, -1, -1)
        m = m / m.sum((-2, -1), keepdim=True)
        assert contrastive_box_attention_loss(m, boxes, size) >= math.log(b) - 1e-4
    uniform = torch.full((b, 2, *grid), 1 / 64)
    assert contrastive_box_attention_loss(uniform, boxes, size).item() == pytest.approx(math.log(b), abs=1e-4)
    inside = box_token_mask(boxes, size, grid)[:, None].expand(-1, 2, -1, -1)
    inside = inside / inside.sum((-2, -1), keepdim=True)
    assert contrastive_box_attention_loss(inside, boxes, size) < 0.5 * math.log(b)
    one = contrastive_box_attention_loss(uniform[:1].clone().requires_grad_(), boxes[:1], size)
    assert one.item() == 0 and one.requires_grad
