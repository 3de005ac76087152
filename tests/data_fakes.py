"""Tiny data trees in the real layouts of CamVid, Tiny-ImageNet-200 and COCO-Stuff, written by tests."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


def write_rgb(path: Path, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Write a random RGB image (format from the suffix); returns the pixels ``uint8 [H,W,3]``."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


def write_mask(path: Path, ids: np.ndarray) -> np.ndarray:
    """Write ``ids`` (``[H,W]`` 0..255) as a single-channel PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(ids, dtype=np.uint8), mode="L").save(path)
    return ids


def mask_with(ids: list[int], height: int = 6, width: int = 8) -> np.ndarray:
    """An ``[H,W]`` mask cycling through ``ids`` so that each occurs."""
    return np.resize(np.asarray(ids, dtype=np.uint8), (height, width))


def make_camvid(root: Path, with_lists: bool = True) -> Path:
    """SegNet CamVid layout: train (3, .jpg, listed in train.txt) and val (2, .png, no list)."""
    for split, n, ext in (("train", 3, ".jpg"), ("val", 2, ".png")):
        lines = []
        for i in range(n):
            write_rgb(root / split / f"f{i}{ext}", 6, 8, seed=i)
            write_mask(root / f"{split}annot" / f"f{i}.png", mask_with([0, 3, 10, 11, i]))
            lines.append(f"{split}/f{i}{ext} {split}annot/f{i}.png")
        if with_lists and split == "train":
            (root / "train.txt").write_text("\n".join(lines) + "\n")
    return root


TINY_WNIDS = ["n00000001", "n00000002", "n00000003"]


def make_tiny_imagenet(root: Path, per_class: int = 4, val_per_class: int = 2) -> Path:
    """Tiny-ImageNet-200 layout with 3 classes; class 3 has no boxes file (as 2 classes of the shared copy).
    Train files are numbered 0..per_class-2 and 10, so that numeric order differs from text order."""
    (root / "wnids.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "wnids.txt").write_text("\n".join(TINY_WNIDS) + "\n")
    (root / "words.txt").write_text(
        "n00000000\tentity\n" + "".join(f"{w}\tthing {i}, other name\n" for i, w in enumerate(TINY_WNIDS))
    )
    for c, wnid in enumerate(TINY_WNIDS):
        indices = [*range(per_class - 1), 10]
        rows = []
        for k in indices:
            name = f"{wnid}_{k}.JPEG"
            write_rgb(root / "train" / wnid / "images" / name, 64, 64, seed=100 * c + k)
            rows.append(f"{name}\t{c}\t{k}\t{40 + c}\t{50 + k}")
        if c < 2:
            (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("\n".join(rows) + "\n")
    rows = []
    for k in range(val_per_class * len(TINY_WNIDS)):
        write_rgb(root / "val" / "images" / f"val_{k}.JPEG", 64, 64, seed=1000 + k)
        rows.append(f"val_{k}.JPEG\t{TINY_WNIDS[k % len(TINY_WNIDS)]}\t{k}\t1\t{k + 20}\t30")
    (root / "val" / "val_annotations.txt").write_text("\n".join(rows) + "\n")
    return root


COCO_IDS = ["000000000139", "000000000285", "000000000632"]


def make_cocostuff(root: Path, split: str = "val2017", raw_ids: list[int] | None = None) -> Path:
    """COCO-Stuff layout (images/, annotations/, curated/): 3 images; the curated list holds the first 2."""
    raw_ids = raw_ids if raw_ids is not None else [0, 11, 12, 91, 156, 181, 255]
    for i, image_id in enumerate(COCO_IDS):
        write_rgb(root / "images" / split / f"{image_id}.jpg", 6, 8, seed=i)
        write_mask(root / "annotations" / split / f"{image_id}.png", mask_with(raw_ids))
    curated = root / "curated" / split / "Coco164kFull_Stuff_Coarse_7.txt"
    curated.parent.mkdir(parents=True, exist_ok=True)
    curated.write_text("\n".join(COCO_IDS[:2]) + "\n")
    return root


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def zip_tree(path: Path, folder: Path, prefix: str) -> Path:
    """Zip every file under ``folder`` as ``<prefix>/<relative path>``."""
    members = {f"{prefix}/{p.relative_to(folder).as_posix()}": p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    return write_zip(path, members)
