from __future__ import annotations

import pytest
import torch

from rtsseg.data.transforms import (
    Compose,
    ImageOnlyResize,
    RandomCrop,
    RandomHorizontalFlip,
    Resize,
    collate,
    output_size,
    resize_mask,
)


def _pair(h=6, w=8):
    image = torch.arange(3 * h * w, dtype=torch.int64).remainder(256).to(torch.uint8).reshape(3, h, w)
    mask = torch.arange(h * w).remainder(5).reshape(h, w)
    mask[0, 0] = 255
    return image, mask


def test_output_size_shorter_side_and_tuple():
    assert output_size(360, 480, 240) == (240, 320)
    assert output_size(480, 360, 240) == (320, 240)
    assert output_size(360, 480, (100, 50)) == (100, 50)


def test_resize_keeps_dtypes_and_ids():
    image, mask = _pair()
    out_image, out_mask = Resize((12, 16))(image, mask)
    assert out_image.dtype == torch.uint8 and out_image.shape == (3, 12, 16)
    assert out_mask.dtype == torch.int64 and out_mask.shape == (12, 16)
    assert set(out_mask.unique().tolist()) == set(mask.unique().tolist())
    # 2x nearest upsampling repeats every label into a 2x2 block
    assert torch.equal(out_mask, mask.repeat_interleave(2, 0).repeat_interleave(2, 1))


def test_resize_mask_downsample_picks_centres():
    mask = torch.arange(16).reshape(4, 4)
    assert resize_mask(mask, (2, 2)).tolist() == [[5, 7], [13, 15]]


def test_image_only_resize_keeps_mask():
    image, mask = _pair()
    out_image, out_mask = ImageOnlyResize(3)(image, mask)
    assert out_image.shape == (3, 3, 4) and out_mask is mask


def test_random_crop_is_joint_and_seeded():
    image, mask = _pair(10, 12)
    image[0] = torch.arange(10 * 12).reshape(10, 12).remainder(256).to(torch.uint8)
    crop = RandomCrop((4, 5), generator=torch.Generator().manual_seed(0))
    out_image, out_mask = crop(image, mask)
    assert out_image.shape == (3, 4, 5) and out_mask.shape == (4, 5)
    top, left = divmod(int(out_image[0, 0, 0]), 12)
    assert torch.equal(out_mask, mask[top:top + 4, left:left + 5])
    again = RandomCrop((4, 5), generator=torch.Generator().manual_seed(0))(image, mask)
    assert torch.equal(again[0], out_image)


def test_random_crop_pads_mask_with_ignore():
    image, mask = _pair(3, 4)
    out_image, out_mask = RandomCrop(6)(image, mask)
    assert out_image.shape == (3, 6, 6)
    assert (out_mask[3:] == 255).all() and (out_mask[:, 4:] == 255).all() and (out_image[:, 3:] == 0).all()


def test_flip_joint_and_probability():
    image, mask = _pair()
    flipped = RandomHorizontalFlip(p=1.0)(image, mask)
    assert torch.equal(flipped[0], image.flip(-1)) and torch.equal(flipped[1], mask.flip(-1))
    kept = RandomHorizontalFlip(p=0.0)(image, mask)
    assert torch.equal(kept[0], image)
    g = torch.Generator().manual_seed(3)
    flips = sum(not torch.equal(RandomHorizontalFlip(0.5, g)(image, mask)[1], mask) for _ in range(200))
    assert 70 < flips < 130


def test_compose_and_collate():
    t = Compose([Resize((4, 4)), RandomHorizontalFlip(1.0)])
    batch = [t(*_pair()) + (i,) for i in range(3)]
    images, masks, idx = collate(batch)
    assert images.shape == (3, 3, 4, 4) and masks.shape == (3, 4, 4) and idx.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="equal-size"):
        collate([_pair(4, 4), _pair(4, 5)])
