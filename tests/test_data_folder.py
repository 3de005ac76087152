from __future__ import annotations

import numpy as np
import pytest
import torch

from data_fakes import mask_with, write_mask, write_rgb
from rtsseg.errors import DataError, LabelRangeError, MaskFormatError, MissingDataError, UnpairedFileError
from rtsseg.data.folder import ImageMaskFolder
from rtsseg.data.io import make_lut
from rtsseg.data.transforms import RandomHorizontalFlip


@pytest.fixture
def data_folder_tree(tmp_path):
    for i, ext in enumerate([".jpg", ".png", ".jpeg"]):
        write_rgb(tmp_path / "images" / f"b{i}{ext}", 4, 5, seed=i)
        write_mask(tmp_path / "masks" / f"b{i}.png", mask_with([0, 1, 2, 255], 4, 5))
    (tmp_path / "images" / "notes.txt").write_text("ignored: not an image")
    return tmp_path


def test_pairs_by_stem_and_reads(data_folder_tree):
    ds = ImageMaskFolder(data_folder_tree / "images", data_folder_tree / "masks", num_classes=3)
    assert [(a.name, b.name) for a, b in ds.pairs] == [("b0.jpg", "b0.png"), ("b1.png", "b1.png"),
                                                      ("b2.jpeg", "b2.png")]
    image, mask = ds[2]
    assert image.shape == (3, 4, 5) and image.dtype == torch.uint8
    assert mask.dtype == torch.int64 and set(mask.unique().tolist()) == {0, 1, 2, 255}


def test_lut_and_transform(data_folder_tree):
    lut = make_lut({0: 255, 1: 0, 2: 1, 255: 255})
    ds = ImageMaskFolder(data_folder_tree / "images", data_folder_tree / "masks", 2, lut=lut,
                         transform=RandomHorizontalFlip(1.0))
    plain = ImageMaskFolder(data_folder_tree / "images", data_folder_tree / "masks", 3)
    image, mask = ds[0]
    assert torch.equal(image, plain[0][0].flip(-1))
    assert set(mask.unique().tolist()) == {0, 1, 255}
    with pytest.raises(LabelRangeError):
        ImageMaskFolder(data_folder_tree / "images", data_folder_tree / "masks", 2)[0]


def test_unpaired_mask_is_named(data_folder_tree):
    write_mask(data_folder_tree / "masks" / "orphan.png", np.zeros((4, 5), np.uint8))
    with pytest.raises(UnpairedFileError) as info:
        ImageMaskFolder(data_folder_tree / "images", data_folder_tree / "masks", 3)
    assert str(data_folder_tree / "masks" / "orphan.png") in str(info.value)


def test_duplicate_stems_and_missing_folder(data_folder_tree):
    write_rgb(data_folder_tree / "images" / "b0.png", 4, 5)
    with pytest.raises(DataError, match="stem"):
        ImageMaskFolder(data_folder_tree / "images", data_folder_tree / "masks", 3)
    with pytest.raises(MissingDataError, match="nothing"):
        ImageMaskFolder(data_folder_tree / "nothing", data_folder_tree / "masks", 3)


def test_size_mismatch(data_folder_tree):
    write_mask(data_folder_tree / "masks" / "b1.png", np.zeros((5, 4), np.uint8))
    with pytest.raises(MaskFormatError, match="b1.png"):
        ImageMaskFolder(data_folder_tree / "images", data_folder_tree / "masks", 3)[1]
