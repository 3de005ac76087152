"""Decode images and label masks from disk into tensors, validating them on the way.

Images come back as ``uint8 [3,H,W]`` RGB; masks as ``int64 [H,W]`` train ids with ``ignore_index``
(255) for pixels that count in neither loss nor metric. Every failure names the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rtsseg.errors import CorruptFileError, LabelRangeError, MaskFormatError, MissingDataError

#: File name endings read as images (lower case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

#: PIL modes that hold one integer per pixel (``P`` = palette indices, the PASCAL VOC style).
_MASK_MODES = ("L", "P", "I", "I;16", "I;16B", "I;16L")

_DEFAULT_MASK_FIX = (
    "masks must hold class ids, not colours; pass lut= to map raw ids to train ids (255 = ignore), "
    "or check num_classes"
)


def is_image_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _open_decoded(path: Path) -> Image.Image:
    """Open and fully decode ``path`` (PIL is lazy: a truncated file only fails on ``load``)."""
    if not path.is_file():
        raise MissingDataError(path, "check the path, or re-download the data set (see rtsseg.data.download)")
    try:
        image = Image.open(path)
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise CorruptFileError(path, f"{type(e).__name__}: {e}") from e
    return image


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """Read an image file as RGB: returns ``uint8 [3,H,W]``.

    Grayscale, palette and RGBA files are converted to RGB (alpha is dropped).
    Raises ``MissingDataError`` if the file is absent, ``CorruptFileError`` if it cannot be decoded.
    """
    path = Path(path)
    with _open_decoded(path) as image:
        try:
            rgb = np.array(image.convert("RGB"))  # [H,W,3] uint8
        except (OSError, ValueError) as e:
            raise CorruptFileError(path, f"{type(e).__name__}: {e}") from e
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()  # [3,H,W]


def make_lut(mapping: Mapping[int, int], size: int = 256, default: int = -1) -> torch.Tensor:
    """Build a look-up table ``int64 [size]``: ``lut[raw_id] = train_id``.

    Raw ids absent from ``mapping`` get ``default``; ``-1`` marks them invalid so that
    :func:`read_mask` raises ``LabelRangeError`` when they occur.
    """
    lut = torch.full((size,), default, dtype=torch.int64)
    for raw, train in mapping.items():
        lut[raw] = train
    return lut


def read_mask(
    path: str | os.PathLike,
    num_classes: int,
    ignore_index: int = 255,
    lut: torch.Tensor | None = None,
    fix: str | None = None,
) -> torch.Tensor:
    """Read a single-channel label PNG as train ids: returns ``int64 [H,W]``.

    ``lut`` (``int [K]``, usually ``K = 256``) maps raw id -> train id; entries outside
    ``[0, num_classes) ∪ {ignore_index}`` (e.g. ``-1``) mark raw ids that must not occur.
    After mapping, any id outside that set raises ``LabelRangeError`` naming the file and the
    offending *raw* ids; ``fix`` overrides the advice in its message.
    """
    path = Path(path)
    with _open_decoded(path) as image:
        if image.mode not in _MASK_MODES:
            raise MaskFormatError(
                path,
                f"PIL mode {image.mode!r}, {len(image.getbands())} channel(s)",
                "save masks as single-channel PNGs of class ids (mode L or P), not colour-coded RGB",
            )
        raw = torch.from_numpy(np.array(image).astype(np.int64))  # [H,W]
    mapped = raw if lut is None else _apply_lut(raw, lut)
    valid = ((mapped >= 0) & (mapped < num_classes)) | (mapped == ignore_index)
    if not bool(valid.all()):
        bad = torch.unique(raw[~valid]).tolist()
        shown = bad[:20] + (["..."] if len(bad) > 20 else [])
        after = " after the look-up table" if lut is not None else ""
        raise LabelRangeError(
            path, shown, f"0..{num_classes - 1} and {ignore_index} = ignore{after}", fix or _DEFAULT_MASK_FIX
        )
    return mapped


def check_same_size(image: torch.Tensor, mask: torch.Tensor, mask_path: str | os.PathLike) -> None:
    """Raise ``MaskFormatError`` unless ``image [3,H,W]`` and ``mask [H,W]`` share ``H,W``."""
    if tuple(image.shape[-2:]) != tuple(mask.shape[-2:]):
        raise MaskFormatError(
            mask_path,
            f"mask is {tuple(mask.shape[-2:])} but its image is {tuple(image.shape[-2:])} (H, W)",
            "pair each image with the mask made for it, at the same resolution",
        )


def _apply_lut(raw: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """``lut[raw]`` with raw ids outside the table mapped to ``-1`` (invalid). [H,W] -> [H,W]."""
    lut = torch.as_tensor(lut, dtype=torch.int64)
    inside = (raw >= 0) & (raw < lut.numel())
    mapped = lut[raw.clamp(0, lut.numel() - 1)]
    return torch.where(inside, mapped, torch.full_like(mapped, -1))
