from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from data_fakes import COCO_IDS, write_mask, write_zip
from rtsseg.data import cocostuff as cs
from rtsseg.data.cocostuff import COCOStuff, download_cocostuff
from rtsseg.errors import LabelRangeError, MissingDataError, UnpairedFileError


def test_lut_171_hits_exactly_171_classes():
    mapped = cs.LUT_171[: cs.NUM_RAW_IDS]
    assert set(mapped.tolist()) - {255} == set(range(171))
    assert [i for i in range(182) if mapped[i] == 255] == list(cs.UNUSED_RAW_IDS)
    assert cs.UNUSED_RAW_IDS == (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)
    assert len(cs.CLASS_NAMES_171) == cs.NUM_CLASSES_171 == 171
    assert sum(i < cs.NUM_THING_RAW_IDS for i in cs.USED_RAW_IDS) == 80  # 80 things + 91 stuff
    assert cs.CLASS_NAMES_171[0] == "person" and cs.CLASS_NAMES_171[80] == "banner" and cs.CLASS_NAMES_171[-1] == "wood"
    assert "street sign" not in cs.CLASS_NAMES_171 and "hair brush" not in cs.CLASS_NAMES_171
    assert cs.LUT_171[255] == 255 and (cs.LUT_171[182:255] == -1).all()  # 182..254 never valid


def test_lut_27_coarse_classes():
    coarse = torch.tensor(cs.FINE_TO_COARSE)
    assert len(cs.FINE_TO_COARSE) == 182 and set(coarse.tolist()) == set(range(27))
    assert (coarse[:91] < 12).all() and (coarse[91:] >= 12).all()  # things, then stuff supercategories
    name = {fine: cs.CLASS_NAMES_27[c] for fine, c in zip(cs.RAW_NAMES, cs.FINE_TO_COARSE)}
    expected = {"person": "person", "car": "vehicle", "bench": "outdoor", "giraffe": "animal", "tie": "accessory",
                "tennis racket": "sports", "spoon": "kitchen", "cake": "food-things", "toilet": "furniture-things",
                "cell phone": "electronic", "refrigerator": "appliance", "hair brush": "indoor",
                "sky-other": "sky", "clouds": "sky", "road": "ground", "tree": "plant", "wall-brick": "wall",
                "carpet": "floor", "fog": "water", "wood": "solid", "light": "furniture-stuff", "banner": "textile"}
    assert {k: name[k] for k in expected} == expected
    sizes = torch.bincount(coarse, minlength=27).tolist()
    assert sizes[cs.CLASS_NAMES_27.index("plant")] == 9 and sizes[cs.CLASS_NAMES_27.index("ground")] == 11
    assert cs.LUT_27[255] == 255 and cs.NUM_CLASSES_27 == len(cs.CLASS_NAMES_27) == 27


def test_171_mode_reads_every_map(data_coco_tree):
    ds = COCOStuff(data_coco_tree, "val2017")
    assert ds.ids == COCO_IDS and ds.num_classes == 171
    image, mask = ds[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 6, 8) and mask.dtype == torch.int64
    # raw 0 person -> 0, 11 unused -> 255, 12 stop sign -> 11, 91 banner -> 80, 156 sky-other -> 145, 181 -> 170
    assert set(mask.unique().tolist()) == {0, 11, 80, 145, 170, 255}
    assert cs.CLASS_NAMES_171[145] == "sky-other"


def test_27_mode_uses_curated_list(data_coco_tree):
    ds = COCOStuff(data_coco_tree, "val2017", coarse=True)  # curated/ found under root
    assert ds.ids == COCO_IDS[:2] and ds.num_classes == 27
    _, mask = ds[1]
    # raw 0 person, 11 street sign (outdoor), 12 stop sign (outdoor), 91 banner, 156 sky-other, 181 wood, 255
    names = {cs.CLASS_NAMES_27[i] for i in mask.unique().tolist() if i != 255}
    assert names == {"person", "outdoor", "textile", "sky", "solid"} and (mask == 255).any()


def test_curated_dir_argument(data_coco_tree, tmp_path):
    other = tmp_path / "elsewhere" / "val2017"
    other.mkdir(parents=True)
    (other / cs.CURATED_LIST).write_text(COCO_IDS[2] + "\n")
    assert COCOStuff(data_coco_tree, "val2017", coarse=True, curated_dir=tmp_path / "elsewhere").ids == [COCO_IDS[2]]


def test_listed_id_without_image_names_it(data_coco_tree):
    missing = data_coco_tree / "images" / "val2017" / f"{COCO_IDS[1]}.jpg"
    missing.unlink()
    with pytest.raises(MissingDataError) as info:
        COCOStuff(data_coco_tree, "val2017", coarse=True)
    assert str(missing) in str(info.value) and "rtsseg.data.download cocostuff" in str(info.value)
    with pytest.raises(UnpairedFileError, match=COCO_IDS[1]):
        COCOStuff(data_coco_tree, "val2017")


def test_missing_split_and_bad_ids(data_coco_tree):
    with pytest.raises(MissingDataError, match="train2017"):
        COCOStuff(data_coco_tree, "train2017")
    bad = data_coco_tree / "annotations" / "val2017" / f"{COCO_IDS[0]}.png"
    write_mask(bad, np.array([[0, 183]], dtype=np.uint8).repeat(3, 0).repeat(4, 1))
    with pytest.raises(LabelRangeError) as info:
        COCOStuff(data_coco_tree, "val2017")[0]
    assert str(bad) in str(info.value) and info.value.bad_ids == [183]


def _jpg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (10, 20, 30)).save(buffer, "JPEG")
    return buffer.getvalue()


def _png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (8, 6), value).save(buffer, "PNG")
    return buffer.getvalue()


def test_download_cocostuff_layout(tmp_path):
    zips = tmp_path / "zips"
    write_zip(zips / "val2017.zip", {f"val2017/{i}.jpg": _jpg() for i in COCO_IDS})
    write_zip(zips / "maps.zip", {**{f"val2017/{i}.png": _png(156) for i in COCO_IDS},
                                  "train2017/000000000009.png": _png(0)})
    dest = download_cocostuff(tmp_path / "coco", ("val2017",), progress=False,
                              images_url=(zips / "{split}.zip").as_uri().replace("%7B", "{").replace("%7D", "}"),
                              maps_url=(zips / "maps.zip").as_uri())
    assert not (dest / "annotations" / "train2017").exists()  # only the asked split is extracted
    ds = COCOStuff(dest, "val2017")
    assert len(ds) == 3 and (ds[0][1] == cs.CLASS_NAMES_171.index("sky-other")).all()
    (zips / "val2017.zip").unlink()
    assert download_cocostuff(dest, ("val2017",), progress=False) == dest  # already there: nothing fetched


def test_curated_ids(data_coco_tree):
    assert cs.curated_ids(data_coco_tree / "curated") == {"val2017": COCO_IDS[:2]}
    with pytest.raises(MissingDataError, match="PiCIE"):
        cs.curated_ids(data_coco_tree / "images")
