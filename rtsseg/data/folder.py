"""A segmentation data set from two folders: images and masks paired by file stem."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import Dataset

from rtsseg.errors import DataError, MissingDataError, UnpairedFileError
from rtsseg.data.io import check_same_size, is_image_file, read_image, read_mask

JointTransform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def files_by_stem(directory: str | os.PathLike, fix: str = "put the files in this folder") -> dict[str, Path]:
    """Image files of ``directory`` keyed by stem (``a.jpg`` -> ``"a"``); two files with one stem raise."""
    directory = Path(directory)
    if not directory.is_dir():
        raise MissingDataError(directory, fix)
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if not (path.is_file() and is_image_file(path)):
            continue
        if path.stem in found:
            raise DataError(path, f"two files share the stem {path.stem!r} (also {found[path.stem].name})",
                            "keep one image per stem in this folder")
        found[path.stem] = path
    return found


def pair_by_stem(
    images_dir: str | os.PathLike, masks_dir: str | os.PathLike, fix: str = "put the files in this folder"
) -> list[tuple[Path, Path]]:
    """``[(image, mask)]`` sorted by stem; an image without a mask (or a mask without an image) raises
    ``UnpairedFileError`` naming it, and ``MissingDataError`` if a folder is missing or empty."""
    images, masks = files_by_stem(images_dir, fix), files_by_stem(masks_dir, fix)
    for own, other, other_dir, kind in ((images, masks, masks_dir, "mask"), (masks, images, images_dir, "image")):
        unpaired = sorted(set(own) - set(other))
        if unpaired:
            names = ", ".join(own[s].name for s in unpaired[:5]) + (" ..." if len(unpaired) > 5 else "")
            raise UnpairedFileError(
                own[unpaired[0]],
                f"{kind} in {other_dir}",
                f"add the missing {kind}s or remove the extra files ({len(unpaired)} unpaired: {names})",
            )
    if not images:
        raise MissingDataError(images_dir, f"the folder holds no images; {fix}")
    return [(images[s], masks[s]) for s in sorted(images)]


class ImageMaskFolder(Dataset):
    """Items ``(image uint8 [3,H,W], mask int64 [H,W])``, then ``transform(image, mask)`` if given.

    Images (any of ``IMAGE_EXTENSIONS``) and masks (single-channel PNG of class ids) pair by stem;
    ``lut`` maps raw mask ids to train ids (see :func:`rtsseg.data.io.read_mask`).
    """

    def __init__(
        self,
        images_dir: str | os.PathLike,
        masks_dir: str | os.PathLike,
        num_classes: int,
        ignore_index: int = 255,
        lut: torch.Tensor | None = None,
        transform: JointTransform | None = None,
    ) -> None:
        self.pairs = pair_by_stem(images_dir, masks_dir)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.lut = lut
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, mask_path = self.pairs[index]
        image = read_image(image_path)  # [3,H,W] uint8
        mask = read_mask(mask_path, self.num_classes, self.ignore_index, self.lut)  # [H,W] int64
        check_same_size(image, mask, mask_path)
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image, mask
