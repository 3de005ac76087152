"""Tiny-ImageNet-200 (Stanford CS231n) in its original layout: 64x64 images, class labels, one box each.

Layout of ``root`` (the ``tiny-imagenet-200`` folder)::

    wnids.txt                                   one WordNet id per line; label = line index
    words.txt                                   "wnid<TAB>names" for all of ImageNet
    train/<wnid>/images/<wnid>_<i>.JPEG
    train/<wnid>/<wnid>_boxes.txt               "file x0 y0 x1 y1" (may be missing: boxes are NaN then)
    val/images/val_<k>.JPEG
    val/val_annotations.txt                     "file wnid x0 y0 x1 y1"

Labels and boxes serve evaluation only (k-NN, linear probe, attention-in-box), never pretraining.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from rtsseg import config
from rtsseg.errors import DataError, MissingDataError, UnpairedFileError
from rtsseg.data.fetch import extract_complete, fetch, is_complete
from rtsseg.data.io import is_image_file, read_image

IMAGE_SIZE = 64
SPLITS = ("train", "val")
URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
HOW_TO_GET = (
    f"download {URL} and unzip it (`python -m rtsseg.data.download tinyimagenet DEST`), then pass "
    "DEST/tiny-imagenet-200 as root, or set $RTSSEG_DATA to the folder holding tiny-imagenet-200/"
)
_CACHE_VERSION = 1


def tinyimagenet_root(data_root: str | os.PathLike | None = None) -> Path:
    """``<data root>/tiny-imagenet-200`` (see :func:`rtsseg.config.data_root`); raises if missing."""
    base = config.data_root(data_root)
    root = base / "tiny-imagenet-200"
    if not root.is_dir():
        from rtsseg.data.pack import TINYIMAGENET_PACK

        if (base / TINYIMAGENET_PACK).is_file():
            return base / TINYIMAGENET_PACK  # a data root holding the pack (see rtsseg.data.pack)
        raise MissingDataError(root, HOW_TO_GET)
    return root


tiny_imagenet_root = tinyimagenet_root  # alias


def _index_key(path: Path) -> tuple[int, str]:
    """Sort ``x_2.JPEG`` before ``x_10.JPEG``: by the trailing number of the stem, then by name."""
    match = re.search(r"(\d+)$", path.stem)
    return (int(match.group(1)) if match else -1, path.name)


def _require_file(path: Path) -> Path:
    if not path.is_file():
        raise MissingDataError(path, HOW_TO_GET)
    return path


def read_wnids(root: Path) -> list[str]:
    wnids = _require_file(root / "wnids.txt").read_text().split()
    if len(set(wnids)) != len(wnids) or not wnids:
        raise DataError(root / "wnids.txt", "empty or repeated WordNet ids", "restore the file from the zip")
    return wnids


def read_words(root: Path) -> dict[str, str]:
    """``wnid -> "name, synonym, ..."`` from ``words.txt``."""
    words = {}
    for line in _require_file(root / "words.txt").read_text().splitlines():
        wnid, _, names = line.partition("\t")
        words[wnid.strip()] = names.strip()
    return words


def _parse_box(tokens: list[str], path: Path, line_no: int) -> list[float]:
    try:
        return [float(t) for t in tokens]
    except ValueError as e:
        raise DataError(path, f"line {line_no}: box is not four numbers ({e})", "restore the file from the zip") from e


def _read_train_boxes(path: Path) -> dict[str, list[float]]:
    boxes = {}
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != 5:
            raise DataError(path, f"line {line_no}: expected 'file x0 y0 x1 y1'", "restore the file from the zip")
        boxes[tokens[0]] = _parse_box(tokens[1:], path, line_no)
    return boxes


class TinyImageNet(Dataset):
    """Items ``(image uint8 [3,64,64], label int, box float32 [4] = x0,y0,x1,y1 pixels)``.

    ``root`` is the ``tiny-imagenet-200`` folder, a ``tinyimagenet.pack`` (:mod:`rtsseg.data.pack`), or a
    folder holding that pack. ``box`` is NaN x4 when unknown (a class whose boxes file is missing).
    ``max_per_class`` keeps the first n images of each class, in the order of their file index.
    ``transform(image)`` if given.
    Attributes: ``classes`` (wnids; label = index), ``class_names`` (first name in ``words.txt``),
    ``files``, ``labels``, ``boxes float32 [N,4]``, ``missing_boxes`` (how many are NaN).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        max_per_class: int | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"TinyImageNet split must be one of {SPLITS} (test has no labels), got {split!r}")
        if max_per_class is not None and max_per_class < 1:
            raise ValueError(f"max_per_class must be >= 1 or None, got {max_per_class}")
        from rtsseg.data.pack import TINYIMAGENET_PACK, TinyImageNetPack, find_pack

        self.root = Path(root)
        self.split = split
        self.max_per_class = max_per_class
        self.transform = transform
        self.pack = None
        pack = find_pack(self.root, TINYIMAGENET_PACK, "wnids.txt", "tiny-imagenet-200")
        if pack is not None:
            self.root = pack
            self.pack = TinyImageNetPack(pack, split, max_per_class)
            self.classes, self.class_words = self.pack.classes, self.pack.class_words
            self.class_names = [w.split(",")[0].strip() for w in self.class_words]
            self.files = [pack / split / name for name in self.pack.names]  # names inside the pack
            self.labels, self.boxes = self.pack.labels, self.pack.boxes
            self.missing_boxes = int(self.boxes.isnan().any(dim=1).sum())
            return
        if not self.root.is_dir():
            raise MissingDataError(self.root, HOW_TO_GET)
        self.classes = read_wnids(self.root)
        words = read_words(self.root)
        self.class_words = [words.get(w, w) for w in self.classes]
        self.class_names = [w.split(",")[0].strip() for w in self.class_words]
        records = self._train_records() if split == "train" else self._val_records()
        self.files = [r[0] for r in records]
        self.labels = [r[1] for r in records]
        self.boxes = torch.tensor([r[2] for r in records], dtype=torch.float32).reshape(-1, 4)  # [N,4]
        self.missing_boxes = int(self.boxes.isnan().any(dim=1).sum())

    def _train_records(self) -> list[tuple[Path, int, list[float]]]:
        records = []
        for label, wnid in enumerate(self.classes):
            image_dir = self.root / "train" / wnid / "images"
            if not image_dir.is_dir():
                raise MissingDataError(image_dir, HOW_TO_GET)
            files = sorted((p for p in image_dir.iterdir() if is_image_file(p)), key=_index_key)
            if not files:
                raise MissingDataError(image_dir, f"the folder holds no images; {HOW_TO_GET}")
            boxes_file = self.root / "train" / wnid / f"{wnid}_boxes.txt"
            boxes = _read_train_boxes(boxes_file) if boxes_file.is_file() else {}
            nan = [float("nan")] * 4
            records += [(p, label, boxes.get(p.name, nan)) for p in files[: self.max_per_class]]
        return records

    def _val_records(self) -> list[tuple[Path, int, list[float]]]:
        annotations = _require_file(self.root / "val" / "val_annotations.txt")
        image_dir = self.root / "val" / "images"
        if not image_dir.is_dir():
            raise MissingDataError(image_dir, HOW_TO_GET)
        label_of = {w: i for i, w in enumerate(self.classes)}
        records = []
        for line_no, line in enumerate(annotations.read_text().splitlines(), 1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) != 6:
                raise DataError(annotations, f"line {line_no}: expected 'file wnid x0 y0 x1 y1'",
                                "restore the file from the zip")
            name, wnid = tokens[:2]
            if wnid not in label_of:
                raise DataError(annotations, f"line {line_no}: wnid {wnid} is not in wnids.txt",
                                "use the wnids.txt and val_annotations.txt of the same copy")
            records.append((image_dir / name, label_of[wnid], _parse_box(tokens[2:], annotations, line_no)))
        listed = {r[0].name for r in records}
        for path in sorted(image_dir.iterdir()):
            if is_image_file(path) and path.name not in listed:
                raise UnpairedFileError(path, f"line in {annotations}", "restore val_annotations.txt from the zip")
        for path, _, _ in records:
            _require_file(path)
        records.sort(key=lambda r: _index_key(r[0]))
        if self.max_per_class is not None:
            taken = [0] * len(self.classes)
            kept = []
            for r in records:
                if taken[r[1]] < self.max_per_class:
                    taken[r[1]] += 1
                    kept.append(r)
            records = kept
        return records

    def __len__(self) -> int:
        return len(self.files)

    def fingerprint(self, max_per_class: int | None | str = "same") -> dict:
        """What the loader reads of this split (:mod:`rtsseg.data.fingerprint`): the files (relative paths and
        sizes, in order), the content of ``wnids.txt`` and of the label files (train box files /
        ``val_annotations.txt``), the class list and the images per class. Part of every trainer's run identity.

        ``max_per_class`` (default: this dataset's own) fingerprints the first n files of each class, exactly as
        ``TinyImageNet(root, split, n)`` would read them, without listing the folder again (one listing of
        the whole split serves the training set, the k-NN bank and the queries)."""
        from rtsseg.data.fingerprint import blob_fingerprint, split_fingerprint

        n = self.max_per_class if max_per_class == "same" else max_per_class
        if self.max_per_class is not None and (n is None or n > self.max_per_class):
            raise ValueError(f"fingerprint(max_per_class={n}) of a split read with max_per_class="
                             f"{self.max_per_class}: build the dataset with max_per_class=None")
        taken, keep = [0] * len(self.classes), []
        for i, label in enumerate(self.labels):  # the loader's own rule: the first n of each class, in order
            if n is None or taken[label] < n:
                taken[label] += 1
                keep.append(i)
        extra = {"dataset": "tiny-imagenet-200", "split": self.split, "max_per_class": n}
        if self.pack is not None:
            return blob_fingerprint(self.pack.sha256, [self.pack.names[i] for i in keep], **extra)
        if self.split == "train":
            index = [p for p in (self.root / "train" / w / f"{w}_boxes.txt" for w in self.classes) if p.is_file()]
        else:
            index = [self.root / "val" / "val_annotations.txt"]
        return split_fingerprint(self.root, [self.files[i] for i in keep], [self.root / "wnids.txt", *index],
                                 [self.labels[i] for i in keep], self.classes, **extra)

    def read(self, index: int) -> torch.Tensor:
        """Decode image ``index``: ``uint8 [3,64,64]``; another size raises ``DataError``."""
        if self.pack is not None:
            from rtsseg.data.pack import decode_image

            image = decode_image(self.pack.blob(index), self.files[index])
        else:
            image = read_image(self.files[index])
        if tuple(image.shape) != (3, IMAGE_SIZE, IMAGE_SIZE):
            raise DataError(self.files[index], f"image is {tuple(image.shape[1:])}, not 64x64",
                            "use the original Tiny-ImageNet-200 files")
        return image

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        image = self.read(index)
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels[index], self.boxes[index].clone()


@dataclass
class TinyImageNetTensors:
    """A whole split decoded in memory."""

    images: torch.Tensor  # uint8 [N,3,64,64]
    labels: torch.Tensor  # int64 [N]
    boxes: torch.Tensor  # float32 [N,4] x0,y0,x1,y1 pixels, NaN when unknown
    classes: list[str]  # wnids; label = index
    class_names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return self.images.shape[0]


def per_class_indices(labels: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the first ``n`` items of every class present in ``labels`` (int64 [N]), class by class in
    increasing label order, each class's items in dataset order: a deterministic labelled subset (a class
    with fewer than ``n`` items gives all it has). Returns int64 [<= n * classes]."""
    if n < 1:
        raise ValueError(f"per_class_indices: n must be >= 1, got {n}")
    labels = torch.as_tensor(labels)
    if labels.numel() == 0:
        return torch.empty(0, dtype=torch.int64)
    return torch.cat([(labels == c).nonzero().flatten()[:n] for c in labels.unique()])  # [<= n*C]


def _cache_key(dataset: TinyImageNet) -> dict:
    return {
        "version": _CACHE_VERSION,
        "root": str(dataset.root.resolve()),
        "split": dataset.split,
        "max_per_class": dataset.max_per_class,
        "num_files": len(dataset),
        "classes": list(dataset.classes),
        **({"pack_sha256": dataset.pack.sha256} if dataset.pack is not None else {}),
    }


def load_tensors(
    root: str | os.PathLike,
    split: str = "train",
    max_per_class: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> TinyImageNetTensors:
    """Decode a split once into :class:`TinyImageNetTensors`, cached as ``cache_dir/<split>_<max>.pt``.

    The cache stores its key (resolved root, split, max_per_class, file count, wnids); a file written
    for another root or file list is rebuilt, never reused. Written atomically (tmp file + os.replace).
    ``root`` may be a ``tinyimagenet.pack`` (or a folder holding one): its JPEGs are decoded on a thread
    pool into the same tensors as from the folder, cached the same way (the key holds the pack's sha256).
    """
    dataset = TinyImageNet(root, split, max_per_class)
    key = _cache_key(dataset)
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"{split}_{max_per_class if max_per_class is not None else 'all'}.pt"
        if cache.is_file():
            stored = torch.load(cache, weights_only=True)
            if stored.get("key") == key:
                return _from_stored(stored)
    images = torch.empty(len(dataset), 3, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8)  # [N,3,64,64]
    if dataset.pack is not None:
        from rtsseg.data.pack import decode_many

        decoded = decode_many([dataset.pack.blob(i) for i in range(len(dataset))], dataset.root)
        for i, image in enumerate(decoded):
            if tuple(image.shape) != (3, IMAGE_SIZE, IMAGE_SIZE):
                raise DataError(dataset.files[i], f"image is {tuple(image.shape[1:])}, not 64x64",
                                "rebuild the pack from the original Tiny-ImageNet-200 files")
            images[i] = image
    else:
        for i in tqdm(range(len(dataset)), desc=f"decode tiny-imagenet {split}", disable=not progress):
            images[i] = dataset.read(i)
    stored = {
        "key": key,
        "images": images,
        "labels": torch.tensor(dataset.labels, dtype=torch.int64),
        "boxes": dataset.boxes.clone(),
        "classes": list(dataset.classes),
        "class_names": list(dataset.class_names),
    }
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{cache.name}.tmp{os.getpid()}")
        torch.save(stored, tmp)
        os.replace(tmp, cache)
    return _from_stored(stored)


def _from_stored(stored: dict) -> TinyImageNetTensors:
    return TinyImageNetTensors(
        stored["images"], stored["labels"], stored["boxes"], list(stored["classes"]), list(stored["class_names"])
    )


#: What the loader reads from the extracted folder, checked before it is marked complete.
DOWNLOAD_REQUIRED = ("wnids.txt", "words.txt", "train", "val/images", "val/val_annotations.txt")


#: The book's subset: the first 100 train images of each class (20,000), as ``../shared/data`` holds it.
BOOK_PER_CLASS = 100


def subset_members(members: list[str], per_class: int | None, prefix: str = "tiny-imagenet-200/") -> dict[str, str]:
    """``{member: path below the root}`` of the official zip's members to keep: with ``per_class`` n, the first
    n train images of each class *in the loader's order* (:func:`_index_key`: ``x_2`` before ``x_10``, so
    exactly what ``TinyImageNet(root, max_per_class=n)`` reads of the full set), every class's boxes file, the
    whole val split, ``wnids.txt`` and ``words.txt``; the unlabelled ``test/`` split is left out (the loader
    refuses it). ``per_class=None`` keeps every member."""
    if per_class is not None and per_class < 1:
        raise ValueError(f"per_class must be >= 1 or None, got {per_class}")
    below = {m: m[len(prefix):] for m in members if m.startswith(prefix) and len(m) > len(prefix)}
    if per_class is None:
        return below
    images: dict[str, list[str]] = {}
    keep = {}
    for member, rel in below.items():
        parts = rel.split("/")
        if parts[0] == "test":
            continue
        if parts[0] == "train" and len(parts) == 4 and parts[2] == "images":
            if is_image_file(Path(parts[3])):
                images.setdefault(parts[1], []).append(member)
            continue
        keep[member] = rel
    for files in images.values():
        for member in sorted(files, key=lambda m: _index_key(Path(m)))[:per_class]:
            keep[member] = below[member]
    return keep


def _boxes_rewrites(kept: dict[str, str]) -> dict[str, Callable[[bytes], bytes]]:
    """Each class's ``<wnid>_boxes.txt`` reduced to the lines of the images kept (in the file's own order)."""
    names: dict[str, set[str]] = {}
    for rel in kept.values():
        parts = rel.split("/")
        if parts[0] == "train" and len(parts) == 4 and parts[2] == "images":
            names.setdefault(parts[1], set()).add(parts[3])
    rewrites = {}
    for member, rel in kept.items():
        parts = rel.split("/")
        if parts[0] == "train" and len(parts) == 3 and parts[2] == f"{parts[1]}_boxes.txt":
            wanted = {name.encode() for name in names.get(parts[1], ())}
            rewrites[member] = lambda data, wanted=wanted: b"".join(
                line for line in data.splitlines(keepends=True) if (line.split() or [b""])[0] in wanted)
    return rewrites


def download_tiny_imagenet(dest: str | os.PathLike, url: str = URL, progress: bool = True,
                           per_class: int | None = None) -> Path:
    """Download and unzip Tiny-ImageNet-200 into ``dest``; returns ``dest/tiny-imagenet-200`` (about 240 MB).

    ``per_class=100`` (:data:`BOOK_PER_CLASS`, ``rtsseg download tiny-imagenet DEST --per-class 100``) keeps the
    book's subset: the first 100 train images of each class in the loader's order (20,000, the file list of
    ``../shared/data``; the boxes files reduced to them), the whole val split (10,000), no test split
    (:func:`subset_members`). Without it the official 100,000 train images are kept, five times the book's.

    The folder counts as there only with the completion marker of :func:`rtsseg.data.fetch.extract_complete`
    (not with ``wnids.txt``, one of the first members of the zip: an interrupted extraction has it too), and only
    for the same ``per_class`` (recorded in the marker; a folder of another subset is replaced)."""
    from rtsseg.data.fetch import marker_info, zip_members

    if per_class is not None and per_class < 1:
        raise ValueError(f"per_class must be >= 1 or None (all), got {per_class}. Fix: --per-class 100 (the book)")
    dest = Path(dest)
    root = dest / "tiny-imagenet-200"
    if is_complete(root) and marker_info(root).get("per_class") == per_class:
        return root
    archive = fetch(url, dest / "tiny-imagenet-200.zip", progress=progress)
    kept = subset_members(zip_members(archive), per_class)
    extract_complete(archive, root, kept.get, DOWNLOAD_REQUIRED, progress=progress,
                     rewrite=_boxes_rewrites(kept) if per_class is not None else None,
                     marker={"per_class": per_class})
    archive.unlink()
    return root
