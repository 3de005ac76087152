"""Write packs from the data folders (``rtsseg pack``): the writing side of :mod:`rtsseg.data.pack`.

Kept apart from the format and its readers so that the loaders (which read packs) and the writers (which read
the folders through those loaders) import in one direction only.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rtsseg.data.pack import CAMVID_PACK, TINYIMAGENET_PACK, _concat, write_pack


def pack_tinyimagenet(root: str | os.PathLike, dest: str | os.PathLike, train_per_class: int | None = None,
                      val_per_class: int | None = None) -> Path:
    """Pack a ``tiny-imagenet-200`` folder: the original JPEG bytes of each split, labels, boxes, class ids."""
    from rtsseg.data.tinyimagenet import TinyImageNet

    meta = {"dataset": "tinyimagenet", "splits": {}}
    arrays = {}
    for split, limit in (("train", train_per_class), ("val", val_per_class)):
        ds = TinyImageNet(root, split, max_per_class=limit)
        meta["classes"], meta["class_words"] = list(ds.classes), list(ds.class_words)
        blobs = [Path(f).read_bytes() for f in ds.files]
        arrays[f"{split}/jpeg"], arrays[f"{split}/offsets"] = _concat(blobs)
        arrays[f"{split}/labels"] = np.asarray(ds.labels, dtype=np.int64)
        arrays[f"{split}/boxes"] = ds.boxes.numpy().astype(np.float32)
        meta["splits"][split] = {"names": [Path(f).name for f in ds.files], "max_per_class": limit}
    return write_pack(dest, meta, arrays)


# ---- CamVid --------------------------------------------------------------------------------------------


def pack_camvid(root: str | os.PathLike, dest: str | os.PathLike, downsample: int = 2, quality: int = 90,
                splits: tuple[str, ...] = ("train", "val"), max_images: int | None = None) -> Path:
    """Pack a ``camvid`` folder downsampled by ``downsample``: images area-averaged and re-encoded as JPEG
    of ``quality``, labels nearest-neighbour (every ``downsample``-th pixel) as PNG of raw ids.
    ``max_images`` keeps the first n of each split (smoke runs)."""
    from rtsseg.data.camvid import CamVid

    if downsample < 1:
        raise ValueError(f"downsample must be an integer >= 1, got {downsample}")
    meta = {"dataset": "camvid", "downsample": downsample, "quality": quality, "splits": {}}
    arrays = {}
    for split in splits:
        ds = CamVid(root, split)
        ds.pairs = ds.pairs[:max_images]
        jpegs, pngs = [], []
        for i in range(len(ds)):
            image, mask = ds[i]  # [3,H,W] uint8, [H,W] int64 train ids (void -> 255)
            raw = torch.where(mask == 255, torch.full_like(mask, 11), mask).to(torch.uint8).numpy()  # back to raw ids
            pil = Image.fromarray(image.permute(1, 2, 0).numpy())
            h, w = raw.shape
            if downsample > 1:
                pil = pil.resize((w // downsample, h // downsample), Image.Resampling.BOX)
                start = downsample // 2  # the pixel nearest each block's centre
                raw = raw[start::downsample, start::downsample][: h // downsample, : w // downsample]
            buf = io.BytesIO()
            pil.save(buf, "JPEG", quality=quality)
            jpegs.append(buf.getvalue())
            buf = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(raw), mode="L").save(buf, "PNG", compress_level=9)
            pngs.append(buf.getvalue())
        arrays[f"{split}/jpeg"], arrays[f"{split}/jpeg_offsets"] = _concat(jpegs)
        arrays[f"{split}/png"], arrays[f"{split}/png_offsets"] = _concat(pngs)
        meta["splits"][split] = {"names": [[Path(a).name, Path(b).name] for a, b in ds.pairs]}
    return write_pack(dest, meta, arrays)


# ---- all of a profile's data ---------------------------------------------------------------------------


def pack_all(data_root: str | os.PathLike | None, dest: str | os.PathLike, train_per_class: int | None = None,
             val_per_class: int | None = None, camvid_downsample: int = 2, camvid_quality: int = 90,
             camvid_max_images: int | None = None) -> dict[str, Path]:
    """Write ``dest/tinyimagenet.pack``, ``dest/camvid.pack`` and copy the COCO-Stuff curated id lists
    (``dest/cocostuff/curated``, a few KB) so that ``dest`` serves as a data root."""
    from rtsseg import config

    src = config.data_root(data_root)
    dest = Path(dest)
    out = {
        "tinyimagenet": pack_tinyimagenet(src / "tiny-imagenet-200", dest / TINYIMAGENET_PACK,
                                          train_per_class, val_per_class),
        "camvid": pack_camvid(src / "camvid", dest / CAMVID_PACK, camvid_downsample, camvid_quality,
                              max_images=camvid_max_images),
    }
    curated = src / "cocostuff" / "curated"
    if curated.is_dir():
        shutil.copytree(curated, dest / "cocostuff" / "curated", dirs_exist_ok=True)
        out["cocostuff-curated"] = dest / "cocostuff" / "curated"
    return out
