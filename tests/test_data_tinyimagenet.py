from __future__ import annotations

import math
import shutil

import pytest
import torch

from data_fakes import TINY_WNIDS, make_tiny_imagenet, write_rgb, zip_tree
from rtsseg.data import tinyimagenet as tin
from rtsseg.errors import CorruptFileError, DataError, MissingDataError, UnpairedFileError
from rtsseg.data.tinyimagenet import TinyImageNet, download_tiny_imagenet, load_tensors


def test_train_items_labels_and_boxes(data_tiny_tree):
    ds = TinyImageNet(data_tiny_tree, "train")
    assert ds.classes == TINY_WNIDS and ds.class_names == ["thing 0", "thing 1", "thing 2"]
    assert len(ds) == 12 and ds.labels == [0] * 4 + [1] * 4 + [2] * 4
    assert [p.name for p in ds.files[:4]] == [f"{TINY_WNIDS[0]}_{k}.JPEG" for k in (0, 1, 2, 10)]  # numeric order
    image, label, box = ds[5]  # class 1, file index 1
    assert image.dtype == torch.uint8 and image.shape == (3, 64, 64)
    assert label == 1 and box.dtype == torch.float32 and box.tolist() == [1, 1, 41, 51]
    assert ds[8][2].isnan().all() and ds.missing_boxes == 4  # class 2 has no boxes file


def test_max_per_class_takes_first_files(data_tiny_tree):
    ds = TinyImageNet(data_tiny_tree, "train", max_per_class=2)
    assert len(ds) == 6 and [p.name for p in ds.files[:2]] == [f"{TINY_WNIDS[0]}_0.JPEG", f"{TINY_WNIDS[0]}_1.JPEG"]
    val = TinyImageNet(data_tiny_tree, "val", max_per_class=1)
    assert [p.name for p in val.files] == ["val_0.JPEG", "val_1.JPEG", "val_2.JPEG"] and val.labels == [0, 1, 2]


def test_val_labels_and_boxes_from_annotations(data_tiny_tree):
    ds = TinyImageNet(data_tiny_tree, "val")
    assert len(ds) == 6 and ds.labels == [0, 1, 2, 0, 1, 2]
    image, label, box = ds[4]
    assert image.shape == (3, 64, 64) and label == 1 and box.tolist() == [4, 1, 24, 30]


def test_val_image_missing_from_annotations(data_tiny_tree):
    extra = data_tiny_tree / "val" / "images" / "val_99.JPEG"
    write_rgb(extra, 64, 64)
    with pytest.raises(UnpairedFileError, match="val_99.JPEG"):
        TinyImageNet(data_tiny_tree, "val")


def test_missing_root_names_url(tmp_path):
    with pytest.raises(MissingDataError) as info:
        TinyImageNet(tmp_path / "tiny", "train")
    assert str(tmp_path / "tiny") in str(info.value) and "tiny-imagenet-200.zip" in str(info.value)


def test_wrong_size_and_corrupt_images(data_tiny_tree):
    ds = TinyImageNet(data_tiny_tree, "val")
    write_rgb(ds.files[0], 32, 32)
    with pytest.raises(DataError, match="64x64"):
        ds[0]
    ds.files[1].write_bytes(b"garbage" * 20)
    with pytest.raises(CorruptFileError) as info:
        ds[1]
    assert str(ds.files[1]) in str(info.value)


def test_load_tensors_cache_roundtrip(data_tiny_tree, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = load_tensors(data_tiny_tree, "train", cache_dir=cache, progress=False)
    assert (cache / "train_all.pt").is_file() and not list(cache.glob("*.tmp*"))
    assert first.images.shape == (12, 3, 64, 64) and first.images.dtype == torch.uint8
    assert first.labels.dtype == torch.int64 and first.boxes.shape == (12, 4) and first.classes == TINY_WNIDS
    assert torch.equal(first.images[5], TinyImageNet(data_tiny_tree, "train")[5][0])

    def no_decoding(self, index):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(tin.TinyImageNet, "read", no_decoding)
    second = load_tensors(data_tiny_tree, "train", cache_dir=cache, progress=False)
    assert torch.equal(second.images, first.images) and torch.equal(second.labels, first.labels)
    assert torch.equal(second.boxes.isnan(), first.boxes.isnan()) and second.class_names == first.class_names
    monkeypatch.undo()

    # the same cache file for another root (same file count) is rebuilt, not reused
    other = make_tiny_imagenet(tmp_path / "other" / "tiny-imagenet-200")
    write_rgb(other / "train" / TINY_WNIDS[0] / "images" / f"{TINY_WNIDS[0]}_0.JPEG", 64, 64, seed=77)
    third = load_tensors(other, "train", cache_dir=cache, progress=False)
    assert not torch.equal(third.images[0], first.images[0])
    assert torch.equal(third.images[1], first.images[1])


def test_load_tensors_max_per_class_file_name(data_tiny_tree, tmp_path):
    out = load_tensors(data_tiny_tree, "val", max_per_class=1, cache_dir=tmp_path, progress=False)
    assert len(out) == 3 and (tmp_path / "val_1.pt").is_file()
    assert math.isclose(float(out.boxes[2, 2]), 22.0)


def test_download_tiny_imagenet_from_zip(tmp_path):
    src = make_tiny_imagenet(tmp_path / "src" / "tiny-imagenet-200", per_class=2, val_per_class=1)
    archive = zip_tree(tmp_path / "tiny-imagenet-200.zip", src, "tiny-imagenet-200")
    shutil.rmtree(src)
    root = download_tiny_imagenet(tmp_path / "dest", url=archive.as_uri(), progress=False)
    assert root == tmp_path / "dest" / "tiny-imagenet-200"
    assert len(TinyImageNet(root, "val")) == 3 and not (tmp_path / "dest" / "tiny-imagenet-200.zip").exists()
