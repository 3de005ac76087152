"""Ground-truth sets: boxes -> masks at label resolution, box scaling, the small-box subset, CamVid crops."""

from __future__ import annotations

import math

import torch

from rtsseg.attention.groundtruth import (box_area_fraction, camvid_things, scale_boxes, tiny_imagenet_boxes)
from rtsseg.attention.masks import box_mask
from rtsseg.attention.supervision import box_token_mask
from rtsseg.data import camvid


def _tiny(n: int = 10):
    images = torch.randint(0, 256, (n, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    boxes = torch.tensor([[0, 0, 63, 63], [10, 10, 20, 20], [float("nan")] * 4, [0, 0, 31, 63],
                          [5, 5, 40, 40], [1, 2, 3, 4], [0, 0, 63, 30], [30, 30, 50, 50], [2, 2, 60, 60],
                          [8, 8, 15, 15]], dtype=torch.float32)[:n]
    return images, boxes


def test_tiny_imagenet_boxes_masks_and_scaling():
    images, boxes = _tiny()
    s = tiny_imagenet_boxes(images, boxes, n_images=100, image_size=128)
    assert len(s) == 9 and s.left_out == 1 and 2 not in s.index.tolist()
    assert s.images.shape == (9, 3, 128, 128) and s.gts.shape == (9, 64, 64)  # labels stay at 64 px
    assert torch.equal(s.gts[1], box_mask(boxes[1], (64, 64)))
    assert int(s.gts[1].sum()) == 11 * 11
    # a box scaled to 128 px covers exactly the same share of the image
    torch.testing.assert_close(box_area_fraction(s.boxes, 128), box_area_fraction(boxes[s.index], 64))
    assert s.boxes[0].tolist() == [0, 0, 127, 127]
    # token shares of the scaled box equal the 64 px mask pooled to tokens
    pooled = torch.nn.functional.avg_pool2d(s.gts[1:2, None].float(), 8)[:, 0]
    torch.testing.assert_close(box_token_mask(s.boxes[1:2], 128, (8, 8)), pooled)
    assert torch.equal(scale_boxes(boxes[:2], 64, 64), boxes[:2])


def test_small_box_subset_and_even_spacing():
    images, boxes = _tiny()
    small = tiny_imagenet_boxes(images, boxes, n_images=100, image_size=64, max_area=0.3)
    frac = box_area_fraction(boxes[small.index], 64)
    assert (frac < 0.3).all() and small.index.tolist() == [1, 5, 7, 9]  # [5,5,40,40] covers 31.6 %
    assert math.isclose(small.gt_area, float(frac.mean()), rel_tol=1e-6)
    few = tiny_imagenet_boxes(images, boxes, n_images=3, image_size=64)
    assert few.index.tolist() == [0, 5, 9]  # first, middle, last of the 9 with a box


def test_camvid_things_crops(data_camvid_tree):
    ds = camvid.CamVid(data_camvid_tree, "val")
    s = camvid_things(ds, n_images=10, image_size=16)
    image, labels = ds[0]
    side = min(labels.shape)
    assert len(s) == len(ds) == 2 and s.images.shape == (2, 3, 16, 16) and s.gts.shape == (2, side, side)
    left = (labels.shape[1] - side) // 2
    want = torch.isin(labels[:, left : left + side], torch.tensor(camvid.THINGS))
    assert torch.equal(s.gts[0], want) and s.gts[0].any()
    none = camvid_things(ds, n_images=10, image_size=16, min_fraction=0.0, things=[7])
    assert len(none) == 2
    try:
        camvid_things(ds, n_images=10, image_size=16, min_fraction=0.5)
    except ValueError as e:
        assert "min_fraction" in str(e)
    else:
        raise AssertionError("expected a ValueError")


def _camvid_video_tree(root):
    """A CamVid tree with real-style names: three drives, 0016E5's val frames inside its train frames, the
    0006R0 'f' prefix; frame 0001TP_006720 has no things pixels."""
    import numpy as np

    from data_fakes import write_mask, write_rgb

    frames = {"train": ["0016E5_08190", "0001TP_006690", "0006R0_f03870", "0001TP_006720", "0016E5_07920"],
              "val": ["0016E5_07961", "0016E5_07959"]}
    for split, stems in frames.items():
        for k, stem in enumerate(stems):
            write_rgb(root / split / f"{stem}.png", 6, 8, seed=k)
            ids = np.full((6, 8), 3, dtype=np.uint8)  # road
            if stem != "0001TP_006720":
                ids[2:4, 3:5] = 8  # a car inside the centre crop
            write_mask(root / f"{split}annot" / f"{stem}.png", ids)
    return root


def test_camvid_frames_keep_sequence_and_frame_order(tmp_path):
    from rtsseg.attention.groundtruth import camvid_frame_id, camvid_frames

    root = _camvid_video_tree(tmp_path / "camvid")
    s = camvid_frames(root, image_size=16)
    assert s.left_out == 1  # 0001TP_006720: no things
    assert s.sequences == ["0001TP", "0006R0", "0016E5", "0016E5", "0016E5", "0016E5"]
    assert s.frames.tolist() == [6690, 3870, 7920, 7959, 7961, 8190]
    assert s.splits == ["train", "train", "train", "val", "val", "train"]
    assert s.images.shape == (6, 3, 16, 16) and s.gts.shape == (6, 6, 6)
    # index: position within its own split (pairing by stem sorts the files)
    train = camvid.CamVid(root, "train")
    val = camvid.CamVid(root, "val")
    for k in range(len(s)):
        ds = train if s.splits[k] == "train" else val
        seq, frame = camvid_frame_id(ds.pairs[int(s.index[k])][0].stem)
        assert (seq, frame) == (s.sequences[k], int(s.frames[k]))
        _, labels = ds[int(s.index[k])]
        assert torch.equal(s.gts[k], torch.isin(labels[:, 1:7], torch.tensor(camvid.THINGS)))
    # the sequences are contiguous runs, as the block bootstrap needs
    from rtsseg.stats import block_bootstrap

    block_bootstrap(s.gts.float().mean((1, 2)).numpy(), block_len=2, sequences=s.sequences, n_boot=50)
    # datasets may be passed, and subsets keep the frame bookkeeping
    same = camvid_frames([train, val], image_size=16)
    assert same.frames.tolist() == s.frames.tolist()
    sub = s.subset(torch.tensor([False, False, True, True, True, False]))
    assert sub.sequences == ["0016E5"] * 3 and sub.frames.tolist() == [7920, 7959, 7961]
    assert sub.splits == ["train", "val", "val"] and sub.left_out == s.left_out + 3


def test_camvid_frame_names_are_checked(data_camvid_tree):
    from rtsseg.attention.groundtruth import camvid_frame_id, camvid_frames

    assert camvid_frame_id("0006R0_f03870") == ("0006R0", 3870)
    assert camvid_frame_id("0016E5_07959") == ("0016E5", 7959)
    try:  # the fake tree of data_fakes.make_camvid names its files f0, f1: no sequence, no frame
        camvid_frames(data_camvid_tree, image_size=16)
    except ValueError as e:
        assert "<sequence>_<frame>" in str(e) and "f0" in str(e)
    else:
        raise AssertionError("expected a ValueError")
