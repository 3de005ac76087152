"""CamVid loaders for the segmentation probe: images resized for the network, masks at native resolution.

Subsets (``max_train``, ``max_val``) are deterministic and evenly spaced over the split: CamVid is a few
video sequences in order, so evenly spaced frames cover every sequence, where the first N would not.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Subset


def evenly_spaced(n: int, m: int | None) -> list[int]:
    """``m`` indices spread evenly over ``range(n)`` (all of them when ``m`` is None or >= n)."""
    if m is None or m >= n:
        return list(range(n))
    if m < 1:
        raise ValueError(f"subset size must be >= 1, got {m}")
    return torch.linspace(0, n - 1, m).round().long().tolist()


def subset(dataset: Dataset, m: int | None) -> Dataset:
    """Deterministic evenly spaced subset of ``dataset`` (itself when ``m`` is None)."""
    return dataset if m is None else Subset(dataset, evenly_spaced(len(dataset), m))


def camvid_datasets(
    root: str | os.PathLike | None = None,
    input_size: tuple[int, int] | None = (360, 480),
    max_train: int | None = None,
    max_val: int | None = None,
    val_split: str = "val",
) -> tuple[Dataset, Dataset]:
    """CamVid train and ``val_split`` sets; images resized to ``input_size`` (h, w), masks kept native.

    ``root`` is the ``camvid/`` folder (default: ``<data_root>/camvid``). ``input_size=None`` keeps
    images at 360×480 too.
    """
    from rtsseg.data.camvid import CamVid, camvid_root
    from rtsseg.data.transforms import ImageOnlyResize

    root = Path(root) if root is not None else camvid_root()
    transform = ImageOnlyResize(tuple(input_size)) if input_size is not None else None
    train = CamVid(root, split="train", transform=transform)
    val = CamVid(root, split=val_split, transform=transform)
    return subset(train, max_train), subset(val, max_val)


def camvid_loaders(
    root: str | os.PathLike | None = None,
    input_size: tuple[int, int] | None = (360, 480),
    batch_size: int = 8,
    max_train: int | None = None,
    max_val: int | None = None,
    num_workers: int = 0,
    seed: int = 0,
    val_split: str = "val",
) -> tuple[DataLoader, DataLoader]:
    """Train (shuffled with a seeded generator) and val (in order) loaders of ``(uint8 [B,3,h,w], int64 [B,360,480])``."""
    train, val = camvid_datasets(root, input_size, max_train, max_val, val_split)
    common = dict(batch_size=batch_size, num_workers=num_workers, persistent_workers=num_workers > 0)
    train_loader = DataLoader(train, shuffle=True, generator=torch.Generator().manual_seed(seed), **common)
    val_loader = DataLoader(val, shuffle=False, **common)
    return train_loader, val_loader


# ---- any supported segmentation data set ---------------------------------------------------------------------

SEG_DATASETS = ("camvid", "cocostuff27", "cocostuff171")


def segmentation_datasets(
    name: str,
    data_root: str | os.PathLike | None = None,
    input_size: tuple[int, int] | None = None,
    max_train: int | None = None,
    max_val: int | None = None,
) -> tuple[Dataset, Dataset, list[str]]:
    """Train and val sets of ``name`` (see ``SEG_DATASETS``) with images resized to ``input_size`` and masks
    at their own resolution, plus the class names. COCO-Stuff: ``train2017`` / ``val2017`` under
    ``<data_root>/cocostuff`` (27 classes on the curated split, or all 171)."""
    from rtsseg.config import data_root as resolve
    from rtsseg.data.transforms import ImageOnlyResize

    root = resolve(data_root)
    if name == "camvid":
        from rtsseg.data.camvid import CLASS_NAMES

        train, val = camvid_datasets(root / "camvid", input_size, max_train, max_val)
        return train, val, list(CLASS_NAMES)
    if name in ("cocostuff27", "cocostuff171"):
        from rtsseg.data.cocostuff import COCOStuff

        transform = ImageOnlyResize(tuple(input_size)) if input_size is not None else None
        coarse = name == "cocostuff27"
        train = COCOStuff(root / "cocostuff", "train2017", coarse=coarse, transform=transform)
        val = COCOStuff(root / "cocostuff", "val2017", coarse=coarse, transform=transform)
        return subset(train, max_train), subset(val, max_val), list(val.class_names)
    raise ValueError(f"unknown segmentation data set {name!r}; choose one of {SEG_DATASETS}")


def collate_masks_as_list(batch):
    """Images stacked ``uint8 [B,3,h,w]``; masks stacked when equal in size, else a list (COCO sizes vary)."""
    images = torch.stack([item[0] for item in batch])
    masks = [item[1] for item in batch]
    if len({tuple(m.shape) for m in masks}) == 1:
        return images, torch.stack(masks)
    return images, masks


def segmentation_loaders(
    name: str,
    data_root: str | os.PathLike | None = None,
    input_size: tuple[int, int] | None = None,
    batch_size: int = 8,
    max_train: int | None = None,
    max_val: int | None = None,
    num_workers: int = 0,
    seed: int = 0,
) -> tuple[DataLoader, DataLoader, list[str]]:
    """Loaders over :func:`segmentation_datasets`: train shuffled with a seeded generator, val in order."""
    train, val, names = segmentation_datasets(name, data_root, input_size, max_train, max_val)
    common = dict(batch_size=batch_size, num_workers=num_workers, persistent_workers=num_workers > 0,
                  collate_fn=collate_masks_as_list)
    train_loader = DataLoader(train, shuffle=True, generator=torch.Generator().manual_seed(seed), **common)
    return train_loader, DataLoader(val, shuffle=False, **common), names
