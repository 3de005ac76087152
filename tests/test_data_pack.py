"""Packed data sets: the pack loaders give the folder loaders' tensors; damaged packs fail with one clear line."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from data_fakes import TINY_WNIDS, make_camvid, make_tiny_imagenet
from rtsseg.cli import main as cli_main
from rtsseg.data import camvid as cv
from rtsseg.data.camvid import CamVid
from rtsseg.errors import DataError
from rtsseg.data.pack import PackError, read_pack, write_pack
from rtsseg.data.packing import pack_camvid, pack_tinyimagenet
from rtsseg.data.tinyimagenet import TinyImageNet, load_tensors, tinyimagenet_root


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """A data root with the folders and a second root with only the packs (via `rtsseg pack`)."""
    tmp_path = tmp_path_factory.mktemp("packed")
    src = tmp_path / "src"
    make_tiny_imagenet(src / "tiny-imagenet-200", per_class=4, val_per_class=3)
    make_camvid(src / "camvid")
    (src / "cocostuff" / "curated" / "val2017").mkdir(parents=True)
    (src / "cocostuff" / "curated" / "val2017" / "ids.txt").write_text("139\n")
    dest = tmp_path / "packs"
    assert cli_main(["pack", str(dest), "--data-root", str(src), "--val-per-class", "2"]) == 0
    return src, dest


def _same(a, b):
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert torch.equal(a.boxes.isnan(), b.boxes.isnan())
    assert torch.equal(a.boxes.nan_to_num(-1), b.boxes.nan_to_num(-1))
    assert a.classes == b.classes == TINY_WNIDS and a.class_names == b.class_names


def test_tinyimagenet_pack_equals_folder(packed, tmp_path):
    src, dest = packed
    assert sorted(p.name for p in dest.iterdir()) == ["camvid.pack", "cocostuff", "tinyimagenet.pack"]
    assert tinyimagenet_root(dest) == dest / "tinyimagenet.pack"  # a data root holding the pack
    folder = src / "tiny-imagenet-200"
    _same(load_tensors(folder, "train", progress=False), load_tensors(dest, "train", progress=False))
    _same(load_tensors(folder, "train", 2, progress=False), load_tensors(dest / "tinyimagenet.pack", "train", 2))
    _same(load_tensors(folder, "val", 2, progress=False), load_tensors(dest, "val"))  # packed with 2 per class
    # the decoded cache works for packs too, keyed by the pack's checksum
    cached = load_tensors(dest, "val", cache_dir=tmp_path / "cache")
    assert (tmp_path / "cache" / "val_all.pt").is_file()
    _same(cached, load_tensors(dest, "val", cache_dir=tmp_path / "cache"))
    ds = TinyImageNet(dest, "train")
    assert ds.files[0].name == f"{TINY_WNIDS[0]}_0.JPEG" and ds.missing_boxes == 4
    image, label, box = ds[5]
    assert image.shape == (3, 64, 64) and label == 1 and box.tolist() == [1, 1, 41, 51]
    assert math.isnan(ds[8][2][0])


def test_tinyimagenet_pack_refuses_more_per_class_than_packed(packed):
    _, dest = packed
    with pytest.raises(DataError, match="packed with 2 images per class.*--val-per-class 3"):
        load_tensors(dest, "val", max_per_class=3)


def test_camvid_pack_is_the_folder_downsampled(packed):
    src, dest = packed
    folder, pack = CamVid(src / "camvid", "train"), CamVid(dest, "train")
    assert cv.camvid_root(dest) == dest / "camvid.pack" and len(pack) == len(folder) == 3
    for i in range(len(folder)):
        (image, mask), (small, small_mask) = folder[i], pack[i]
        assert small.shape == (3, 3, 4) and small.dtype == torch.uint8
        assert torch.equal(small_mask, mask[1::2, 1::2])  # nearest: every second pixel, void stays 255
        assert (small_mask == 255).any()
        # area-averaged then JPEG: close to the 2x2 means of the folder image
        means = image.float().reshape(3, 3, 2, 4, 2).mean(dim=(2, 4))
        assert (small.float() - means).abs().mean() < 40
    assert pack.pairs[0][0].name == folder.pairs[0][0].name
    # callers that join the folder name themselves (rtsseg.seg.data: root / "camvid") find the pack beside it
    assert len(CamVid(dest / "camvid", "val")) == 2 and len(TinyImageNet(dest / "tiny-imagenet-200", "val")) == 6


def test_corrupt_and_truncated_packs_fail_with_one_line(packed, tmp_path):
    _, dest = packed
    good = dest / "tinyimagenet.pack"
    blob = bytearray(good.read_bytes())
    flipped = tmp_path / "flipped.pack"
    blob[-100] ^= 0xFF
    flipped.write_bytes(bytes(blob))
    with pytest.raises(PackError, match="sha256 mismatch") as err:
        TinyImageNet(flipped, "train")
    assert "\n" not in str(err.value) and str(flipped) in str(err.value) and "rtsseg pack" in str(err.value)
    truncated = tmp_path / "truncated.pack"
    truncated.write_bytes(good.read_bytes()[:-10])
    with pytest.raises(PackError, match="truncated"):
        load_tensors(truncated, "train")
    junk = tmp_path / "junk.pack"
    junk.write_bytes(b"not a pack")
    with pytest.raises(PackError, match="no pack header"):
        CamVid(junk, "train")
    with pytest.raises(PackError, match="holds 'camvid', not 'tinyimagenet'"):
        TinyImageNet(dest / "camvid.pack", "train")


def test_write_read_roundtrip(tmp_path):
    arrays = {"a": np.arange(6, dtype=np.int64).reshape(2, 3), "b": np.array([0.5, np.nan], dtype=np.float32)}
    path = write_pack(tmp_path / "x.pack", {"dataset": "x", "note": "hi"}, arrays)
    meta, back = read_pack(path, "x")
    assert meta["note"] == "hi" and len(meta["sha256"]) == 64
    assert np.array_equal(back["a"], arrays["a"]) and np.isnan(back["b"][1]) and back["b"][0] == 0.5
