"""COCO-Stuff-164k (Caesar et al. 2018): 171 classes, or the 27 coarse classes of IIC / PiCIE / STEGO.

Layout of ``root`` (what :func:`download_cocostuff` writes; the layout of the cocostuff README,
of PiCIE and of STEGO)::

    images/train2017/<id>.jpg        from http://images.cocodataset.org/zips/train2017.zip
    images/val2017/<id>.jpg          from http://images.cocodataset.org/zips/val2017.zip
    annotations/train2017/<id>.png   from stuffthingmaps_trainval2017.zip (it unzips to train2017/, val2017/)
    annotations/val2017/<id>.png

Stuffthingmap values (raw ids): 0..181 = COCO category id - 1, 255 = unlabeled. Eleven thing ids
are never annotated (:data:`UNUSED_RAW_IDS`), leaving 80 things + 91 stuff = 171 classes.
COCO-Stuff-27 maps each raw id to its supercategory (12 thing + 15 stuff groups of the COCO-Stuff
label hierarchy) and uses the curated image lists ``curated/<split>/Coco164kFull_Stuff_Coarse_7.txt``.
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

SPLITS = ("train2017", "val2017")
IGNORE_INDEX = 255
NUM_RAW_IDS = 182
NUM_CLASSES_171 = 171
NUM_CLASSES_27 = 27
CURATED_LIST = "Coco164kFull_Stuff_Coarse_7.txt"

IMAGES_URL = "http://images.cocodataset.org/zips/{split}.zip"
STUFFTHINGMAPS_URL = (
    "http://calvin.inf.ed.ac.uk/wp-content/uploads/data/cocostuffdataset/stuffthingmaps_trainval2017.zip"
)
HOW_TO_GET = (
    "download COCO 2017 images and stuffthingmaps with `python -m rtsseg.data.download cocostuff DEST "
    "--splits val2017 [train2017]` (or rtsseg.data.cocostuff.download_cocostuff) and pass DEST as root"
)

#: Names of raw ids 0..181 (COCO category id - 1): 91 thing ids, then 91 stuff ids.
RAW_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "street sign", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep",
    "cow", "elephant", "bear", "zebra", "giraffe", "hat", "backpack", "umbrella", "shoe", "eye glasses",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat",
    "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle", "plate", "wine glass", "cup", "fork",
    "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza",
    "donut", "cake", "chair", "couch", "potted plant", "bed", "mirror", "dining table", "window", "desk",
    "toilet", "door", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven",
    "toaster", "sink", "refrigerator", "blender", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush", "hair brush",
    "banner", "blanket", "branch", "bridge", "building-other", "bush", "cabinet", "cage", "cardboard", "carpet",
    "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds", "counter", "cupboard", "curtain", "desk-stuff",
    "dirt", "door-stuff", "fence", "floor-marble", "floor-other", "floor-stone", "floor-tile", "floor-wood",
    "flower", "fog", "food-other", "fruit", "furniture-other", "grass", "gravel", "ground-other", "hill", "house",
    "leaves", "light", "mat", "metal", "mirror-stuff", "moss", "mountain", "mud", "napkin", "net", "paper",
    "pavement", "pillow", "plant-other", "plastic", "platform", "playingfield", "railing", "railroad", "river",
    "road", "rock", "roof", "rug", "salad", "sand", "sea", "shelf", "sky-other", "skyscraper", "snow",
    "solid-other", "stairs", "stone", "straw", "structural-other", "table", "tent", "textile-other", "towel",
    "tree", "vegetable", "wall-brick", "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile",
    "wall-wood", "water-other", "waterdrops", "window-blind", "window-other", "wood",
)
NUM_THING_RAW_IDS = 91  # raw ids 0..90 are things, 91..181 stuff

#: COCO 2017 thing categories that were dropped before release (ids 12, 26, 29, 30, 45, 66, 68, 69, 71,
#: 83, 91: street sign, hat, shoe, eye glasses, plate, mirror, window, desk, door, blender, hair brush).
UNUSED_RAW_IDS = tuple(i - 1 for i in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91))
USED_RAW_IDS = tuple(i for i in range(NUM_RAW_IDS) if i not in UNUSED_RAW_IDS)
CLASS_NAMES_171 = [RAW_NAMES[i] for i in USED_RAW_IDS]

#: The 27 coarse classes: 12 thing supercategories, then 15 stuff supercategories (STEGO's order).
CLASS_NAMES_27 = [
    "electronic", "appliance", "food-things", "furniture-things", "indoor", "kitchen", "accessory", "animal",
    "outdoor", "person", "sports", "vehicle",
    "ceiling", "floor", "food-stuff", "furniture-stuff", "raw material", "textile", "wall", "window",
    "building", "ground", "plant", "sky", "solid", "structural", "water",
]
NUM_THING_CLASSES_27 = 12

#: Thing supercategories as raw-id ranges (COCO orders its categories by supercategory).
_THING_GROUPS = {
    "person": range(0, 1), "vehicle": range(1, 9), "outdoor": range(9, 15), "animal": range(15, 25),
    "accessory": range(25, 33), "sports": range(33, 43), "kitchen": range(43, 51), "food-things": range(51, 61),
    "furniture-things": range(61, 71), "electronic": range(71, 77), "appliance": range(77, 83),
    "indoor": range(83, 91),
}
#: Stuff supercategories of the COCO-Stuff label hierarchy, by fine name.
_STUFF_GROUPS = {
    "ceiling": ("ceiling-other", "ceiling-tile"),
    "floor": ("carpet", "floor-marble", "floor-other", "floor-stone", "floor-tile", "floor-wood"),
    "food-stuff": ("food-other", "fruit", "salad", "vegetable"),
    "furniture-stuff": ("cabinet", "counter", "cupboard", "desk-stuff", "door-stuff", "furniture-other", "light",
                        "mirror-stuff", "shelf", "stairs", "table"),
    "raw material": ("cardboard", "metal", "paper", "plastic"),
    "textile": ("banner", "blanket", "cloth", "clothes", "curtain", "mat", "napkin", "pillow", "rug",
                "textile-other", "towel"),
    "wall": ("wall-brick", "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile", "wall-wood"),
    "window": ("window-blind", "window-other"),
    "building": ("bridge", "building-other", "house", "roof", "skyscraper", "tent"),
    "ground": ("dirt", "gravel", "ground-other", "mud", "pavement", "platform", "playingfield", "railroad", "road",
               "sand", "snow"),
    "plant": ("branch", "bush", "flower", "grass", "leaves", "moss", "plant-other", "straw", "tree"),
    "sky": ("clouds", "sky-other"),
    "solid": ("hill", "mountain", "rock", "solid-other", "stone", "wood"),
    "structural": ("cage", "fence", "net", "railing", "structural-other"),
    "water": ("fog", "river", "sea", "water-other", "waterdrops"),
}


def _fine_to_coarse() -> tuple[int, ...]:
    coarse = {}
    for group, raw_ids in _THING_GROUPS.items():
        coarse.update({raw: CLASS_NAMES_27.index(group) for raw in raw_ids})
    for group, names in _STUFF_GROUPS.items():
        coarse.update({RAW_NAMES.index(name): CLASS_NAMES_27.index(group) for name in names})
    assert sorted(coarse) == list(range(NUM_RAW_IDS)), "every raw id needs exactly one coarse class"
    return tuple(coarse[raw] for raw in range(NUM_RAW_IDS))


#: ``FINE_TO_COARSE[raw_id]`` = coarse class 0..26, for all 182 raw ids (as STEGO's ``fine_to_coarse``).
FINE_TO_COARSE = _fine_to_coarse()

#: raw id -> train id. 171 mode: used ids -> 0..170, unused ids and 255 -> 255; 27 mode: -> coarse class.
#: Raw ids 182..254 never occur in stuffthingmaps and are invalid (-1) in both.
LUT_171 = make_lut({**{raw: t for t, raw in enumerate(USED_RAW_IDS)},
                    **{raw: IGNORE_INDEX for raw in (*UNUSED_RAW_IDS, IGNORE_INDEX)}})
LUT_27 = make_lut({**dict(enumerate(FINE_TO_COARSE)), IGNORE_INDEX: IGNORE_INDEX})

_LABEL_FIX = (
    "use the stuffthingmaps PNGs (values 0..181, 255 = unlabeled), not stuff-only pixelmaps or colour images"
)


def cocostuff_root(data_root: str | os.PathLike | None = None) -> Path:
    """``<data root>/cocostuff`` (see :func:`rtsseg.config.data_root`); raises if it does not exist."""
    root = config.data_root(data_root) / "cocostuff"
    if not root.is_dir():
        raise MissingDataError(root, HOW_TO_GET)
    return root


def read_curated_ids(curated_dir: str | os.PathLike, split: str) -> list[str]:
    """COCO image ids (``"000000000139"``) of the IIC/PiCIE/STEGO curated list for ``split``."""
    path = Path(curated_dir) / split / CURATED_LIST
    if not path.is_file():
        raise MissingDataError(path, "copy curated/ from https://github.com/janghyuncho/PiCIE (the shared data has it)")
    ids = path.read_text().split()
    if not ids:
        raise DataError(path, "empty curated list", "restore it from janghyuncho/PiCIE curated/")
    return ids


def curated_ids(curated_dir: str | os.PathLike) -> dict[str, list[str]]:
    """``{split: ids}`` for each split of ``curated_dir`` that has a curated list (raises if none has)."""
    curated_dir = Path(curated_dir)
    found = {s: read_curated_ids(curated_dir, s) for s in SPLITS if (curated_dir / s / CURATED_LIST).is_file()}
    if not found:
        raise MissingDataError(curated_dir / SPLITS[1] / CURATED_LIST,
                               "copy curated/ from https://github.com/janghyuncho/PiCIE (the shared data has it)")
    return found


class COCOStuff(Dataset):
    """Items ``(image uint8 [3,H,W], mask int64 [H,W])``, masks in train ids with 255 = ignore.

    ``coarse=False``: 171 classes over every map in ``annotations/<split>``.
    ``coarse=True``: 27 coarse classes over the curated list (``curated_dir`` defaults to
    ``<root>/curated`` when present, else ``<data root>/cocostuff/curated``).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "val2017",
        coarse: bool = False,
        curated_dir: str | os.PathLike | None = None,
        transform: JointTransform | None = None,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"COCOStuff split must be one of {SPLITS}, got {split!r}")
        self.root = Path(root)
        self.split, self.coarse, self.transform = split, coarse, transform
        self.num_classes = NUM_CLASSES_27 if coarse else NUM_CLASSES_171
        self.class_names = list(CLASS_NAMES_27 if coarse else CLASS_NAMES_171)
        self.lut = LUT_27 if coarse else LUT_171
        image_dir, map_dir = self.root / "images" / split, self.root / "annotations" / split
        for folder in (self.root, image_dir, map_dir):
            if not folder.is_dir():
                raise MissingDataError(folder, HOW_TO_GET)
        if coarse:
            if curated_dir is None:
                own = self.root / "curated"
                curated_dir = own if own.is_dir() else config.data_root() / "cocostuff" / "curated"
            self.ids = read_curated_ids(curated_dir, split)
            self.pairs = [(image_dir / f"{i}.jpg", map_dir / f"{i}.png") for i in self.ids]
            for pair in self.pairs:
                for path in pair:
                    if not path.is_file():
                        raise MissingDataError(path, f"listed in the curated {split} list; {HOW_TO_GET}")
        else:
            self.pairs = pair_by_stem(image_dir, map_dir, HOW_TO_GET)
            self.ids = [image.stem for image, _ in self.pairs]

    def fingerprint(self) -> dict:
        """What this split is (:mod:`rtsseg.data.fingerprint`): image and stuffthingmap files (relative paths,
        sizes, in order: the curated id list, when one is used, is that order). Label maps are covered by their
        sizes (5,000 and more PNGs are too many to hash in a second)."""
        from rtsseg.data.fingerprint import split_fingerprint

        return split_fingerprint(self.root, [p for pair in self.pairs for p in pair], dataset="cocostuff",
                                 split=self.split, coarse=self.coarse)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, map_path = self.pairs[index]
        image = read_image(image_path)  # [3,H,W] uint8
        mask = read_mask(map_path, self.num_classes, IGNORE_INDEX, self.lut, fix=_LABEL_FIX)  # [H,W] int64
        check_same_size(image, mask, map_path)
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image, mask


def download_cocostuff(
    dest: str | os.PathLike,
    splits: tuple[str, ...] = ("val2017",),
    progress: bool = True,
    images_url: str = IMAGES_URL,
    maps_url: str = STUFFTHINGMAPS_URL,
) -> Path:
    """Download COCO 2017 images of ``splits`` (val 1 GB, train 18 GB) and the stuffthingmaps (0.7 GB, both
    splits in one zip; only ``splits`` are extracted) into the layout above; returns ``dest``.

    Each of ``images/<split>`` and ``annotations/<split>`` is extracted all or nothing by
    :func:`rtsseg.data.fetch.extract_complete` (into a partial folder, checked, marked complete, renamed into
    place); one already marked complete is skipped. The ``dest/.done_<what>_<split>`` files of earlier versions
    count as complete too: they were written only after their extraction had returned.
    """

    dest = Path(dest)
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"COCO-Stuff split must be one of {SPLITS}, got {split!r}")

    def done(what: str, split: str) -> bool:
        root, old_marker = dest / what / split, dest / f".done_{'maps' if what == 'annotations' else 'images'}_{split}"
        return is_complete(root) or (root.is_dir() and old_marker.is_file())

    def members_of(split: str):  # "val2017/<id>.jpg" -> "<id>.jpg" below images/val2017/ (or annotations/val2017/)
        return lambda n: n[len(split) + 1:] if n.startswith(f"{split}/") else None

    for split in splits:
        if done("images", split):
            continue
        archive = fetch(images_url.format(split=split), dest / "downloads" / f"{split}.zip", progress)
        extract_complete(archive, dest / "images" / split, members_of(split), progress=progress)
        archive.unlink()
    missing = [s for s in splits if not done("annotations", s)]
    if missing:
        archive = fetch(maps_url, dest / "downloads" / "stuffthingmaps_trainval2017.zip", progress)
        for split in missing:  # one pass per split: the other split's members are skipped unread
            extract_complete(archive, dest / "annotations" / split, members_of(split), progress=progress)
        if all(done("annotations", s) for s in SPLITS):
            archive.unlink()  # kept otherwise: the other split's maps are in the same zip
    return dest


# ---- COCO-Stuff-27 from val2017 alone (1 GB instead of 19 GB) ------------------------------------------

#: Images of the curated val2017 list (2,175) held out for choosing hyper-parameters and for the final test; the
#: rest (975) fits the decoders. The test block is the larger one: its mIoU is the number the book reports.
VAL_HELD_OUT = 200
VAL_TEST = 1000
VAL_SPLIT_NAMES = ("fit", "held_out", "test")


def _split_rank(image_id: str, seed: int) -> str:
    import hashlib

    return hashlib.sha256(f"rtsseg-cocostuff-val:{seed}:{image_id}".encode()).hexdigest()


def cocostuff_val_splits(
    curated_dir: str | os.PathLike,
    n_held_out: int = VAL_HELD_OUT,
    n_test: int = VAL_TEST,
    n_fit: int | None = None,
    seed: int = 0,
) -> dict[str, list[str]]:
    """``{"fit", "held_out", "test": [image id, ...]}``: the curated COCO-Stuff-27 val2017 list split by image id,
    for a run that downloads val2017 only (``rtsseg download cocostuff DEST --splits val2017``).

    Why by a hash and not by list position: the order is a pseudo-random one fixed by ``(seed, id)`` alone
    (sha256), so the split is the same whatever the list's order or the machine, and no split is a block of
    the list (the curated list is sorted by id, and COCO ids follow collection time). The ``n_test`` first ids of
    that order are the test block, the next ``n_held_out`` the held-out block, then ``n_fit`` (None: all the
    rest) fit. Disjoint by construction; each list is returned in the curated list's order."""
    ids = read_curated_ids(curated_dir, "val2017")
    if len(set(ids)) != len(ids):
        raise DataError(Path(curated_dir) / "val2017" / CURATED_LIST, "repeated image ids",
                        "restore it from janghyuncho/PiCIE curated/")
    for name, n in (("n_held_out", n_held_out), ("n_test", n_test), ("n_fit", n_fit)):
        if n is not None and n < 1:
            raise ValueError(f"cocostuff_val_splits: {name}={n} must be at least 1")
    rest = len(ids) - n_held_out - n_test
    if rest < 1 or (n_fit is not None and n_fit > rest):
        raise ValueError(
            f"cocostuff_val_splits: the curated val2017 list has {len(ids)} ids, fewer than n_test={n_test} + "
            f"n_held_out={n_held_out} + {'1' if n_fit is None else f'n_fit={n_fit}'}. Fix: ask for smaller blocks")
    order = sorted(ids, key=lambda i: _split_rank(i, seed))
    blocks = {"test": order[:n_test], "held_out": order[n_test:n_test + n_held_out],
              "fit": order[n_test + n_held_out:][:n_fit]}
    position = {image_id: k for k, image_id in enumerate(ids)}
    return {name: sorted(blocks[name], key=position.__getitem__) for name in VAL_SPLIT_NAMES}


def val_split_indices(dataset: COCOStuff, splits: dict[str, list[str]]) -> dict[str, list[int]]:
    """Indices into ``dataset`` (``COCOStuff(root, "val2017", coarse=True)``) of each split of
    :func:`cocostuff_val_splits`, for ``torch.utils.data.Subset``. An id the dataset lacks raises."""
    where = {image_id: k for k, image_id in enumerate(dataset.ids)}
    missing = sorted({i for ids in splits.values() for i in ids} - set(where))
    if missing:
        raise MissingDataError(dataset.root / "images" / dataset.split / f"{missing[0]}.jpg",
                               f"{len(missing)} id(s) of the val splits are not in this dataset; {HOW_TO_GET}")
    return {name: [where[i] for i in ids] for name, ids in splits.items()}
