from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from data_fakes import write_mask, write_rgb
from rtsseg.errors import CorruptFileError, LabelRangeError, MaskFormatError, MissingDataError
from rtsseg.data.io import check_same_size, make_lut, read_image, read_mask


def test_read_image_png_roundtrip(tmp_path):
    pixels = write_rgb(tmp_path / "a.png", 5, 7, seed=1)
    image = read_image(tmp_path / "a.png")
    assert image.dtype == torch.uint8 and image.shape == (3, 5, 7)
    assert torch.equal(image, torch.from_numpy(pixels).permute(2, 0, 1))


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_read_image_converts_to_rgb(tmp_path, mode):
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5) * 10
    Image.fromarray(gray, mode="L").convert(mode).save(tmp_path / "g.png")
    image = read_image(tmp_path / "g.png")
    assert image.shape == (3, 4, 5)
    assert torch.equal(image[0], torch.from_numpy(gray)) and torch.equal(image[0], image[2])


def test_read_image_garbage_is_corrupt(tmp_path):
    path = tmp_path / "bad.jpg"
    path.write_bytes(b"this is not a jpeg at all" * 10)
    with pytest.raises(CorruptFileError) as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_read_image_truncated_jpeg_is_corrupt(tmp_path):
    write_rgb(tmp_path / "t.jpg", 64, 64)
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match="t.jpg"):
        read_image(tmp_path / "t.jpg")


def test_read_image_missing(tmp_path):
    with pytest.raises(MissingDataError) as info:
        read_image(tmp_path / "nope.png")
    assert str(tmp_path / "nope.png") in str(info.value)
    assert isinstance(info.value, FileNotFoundError)


def test_read_mask_ids_and_ignore(tmp_path):
    ids = np.array([[0, 1, 2], [255, 2, 1]], dtype=np.uint8)
    write_mask(tmp_path / "m.png", ids)
    mask = read_mask(tmp_path / "m.png", num_classes=3)
    assert mask.dtype == torch.int64 and mask.shape == (2, 3)
    assert torch.equal(mask, torch.from_numpy(ids).long())


def test_read_mask_out_of_range_names_file_and_ids(tmp_path):
    write_mask(tmp_path / "m.png", np.array([[0, 5, 7, 254]], dtype=np.uint8))
    with pytest.raises(LabelRangeError) as info:
        read_mask(tmp_path / "m.png", num_classes=5)
    assert info.value.bad_ids == [5, 7, 254]
    message = str(info.value)
    assert str(tmp_path / "m.png") in message and "Fix:" in message and "lut" in message


def test_read_mask_lut_maps_and_reports_raw_ids(tmp_path):
    write_mask(tmp_path / "m.png", np.array([[1, 2, 9]], dtype=np.uint8))
    lut = make_lut({1: 0, 2: 255, 9: 1})
    assert read_mask(tmp_path / "m.png", 2, lut=lut).tolist() == [[0, 255, 1]]
    write_mask(tmp_path / "bad.png", np.array([[1, 3]], dtype=np.uint8))
    with pytest.raises(LabelRangeError) as info:
        read_mask(tmp_path / "bad.png", 2, lut=lut)
    assert info.value.bad_ids == [3]  # the raw id, not the table's -1


def test_read_mask_palette_png_gives_indices(tmp_path):
    ids = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    image = Image.fromarray(ids, mode="P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    image.save(tmp_path / "p.png")
    assert read_mask(tmp_path / "p.png", 3).tolist() == ids.tolist()


def test_read_mask_rejects_colour_masks(tmp_path):
    write_rgb(tmp_path / "rgb.png", 3, 3)
    with pytest.raises(MaskFormatError, match="rgb.png"):
        read_mask(tmp_path / "rgb.png", 3)


def test_check_same_size(tmp_path):
    check_same_size(torch.zeros(3, 4, 5), torch.zeros(4, 5), tmp_path / "m.png")
    with pytest.raises(MaskFormatError, match="m.png"):
        check_same_size(torch.zeros(3, 4, 5), torch.zeros(5, 4), tmp_path / "m.png")
