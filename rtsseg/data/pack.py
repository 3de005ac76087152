"""Packed data sets: one checksummed file per data set, to copy to a GPU machine or Colab in one go.

Why: a folder of 30,000 small JPEGs is slow to copy and easy to truncate; one file with a checksum is
neither. A pack keeps the *original* encoded bytes (Tiny-ImageNet JPEGs byte for byte, so that decoding
a pack gives exactly the tensors of the folder), plus the labels, boxes and class ids as arrays.

File layout (all integers little-endian)::

    magic     8 bytes  b"RTSSPAK1"
    meta_len  u64      length of the JSON meta block
    data_len  u64      length of the array payload
    sha256    32 bytes over meta + payload
    meta      JSON: {"dataset", "version", ..., "arrays": {name: {"dtype", "shape", "offset"}}}
    payload   the arrays' bytes, back to back

Packs written here:
* ``tinyimagenet.pack``: per split ``<split>/jpeg`` (uint8, all files' bytes), ``<split>/offsets``
  (int64 [N+1]), ``<split>/labels`` (int64 [N]), ``<split>/boxes`` (float32 [N,4], NaN when unknown);
  meta: classes, class_words, per split the file names and the per-class limit it was packed with.
* ``camvid.pack``: CamVid downsampled by an integer factor (2: 480x360 -> 240x180): per split
  ``<split>/jpeg`` + ``<split>/jpeg_offsets`` (images re-encoded as JPEG) and ``<split>/png`` +
  ``<split>/png_offsets`` (raw label ids, nearest-neighbour downsampled, as PNG).

Writing packs from the folders (``rtsseg pack``) is :mod:`rtsseg.data.packing`; this module is the format and
the readers, so the loaders can import it without importing back. The loaders (:class:`~rtsseg.data.tinyimagenet.TinyImageNet`, :func:`~rtsseg.data.tinyimagenet.load_tensors`,
:class:`~rtsseg.data.camvid.CamVid`) accept a pack path, or a data root holding the pack, where they
accept a folder.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rtsseg.errors import CorruptFileError, DataError, MissingDataError

MAGIC = b"RTSSPAK1"
_HEAD = struct.Struct("<8sQQ32s")
VERSION = 1
TINYIMAGENET_PACK = "tinyimagenet.pack"
CAMVID_PACK = "camvid.pack"
REBUILD = "rebuild it with `rtsseg pack DEST` (or copy it again: the copy is damaged)"


class PackError(CorruptFileError):
    """A pack is truncated, corrupt or of another kind; the message names the file and the fix."""

    def __init__(self, path: str | os.PathLike, detail: str) -> None:
        super().__init__(path, f"bad pack: {detail}", REBUILD)


# ---- the container -------------------------------------------------------------------------------------

def write_pack(path: str | os.PathLike, meta: dict, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``meta`` (JSON-able) and ``arrays`` to ``path`` atomically; returns the path."""
    path = Path(path)
    index, chunks, offset = {}, [], 0
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        index[name] = {"dtype": array.dtype.str, "shape": list(array.shape), "offset": offset}
        chunks.append(array.tobytes())
        offset += len(chunks[-1])
    meta_bytes = json.dumps({**meta, "version": VERSION, "arrays": index}).encode()
    digest = hashlib.sha256(meta_bytes)
    for chunk in chunks:
        digest.update(chunk)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(_HEAD.pack(MAGIC, len(meta_bytes), offset, digest.digest()))
        f.write(meta_bytes)
        for chunk in chunks:
            f.write(chunk)
    os.replace(tmp, path)
    return path


def pack_sha256(path: str | os.PathLike) -> str:
    """The checksum recorded in a pack's header (hex), without reading the payload."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(_HEAD.size)
    if len(head) < _HEAD.size or head[:8] != MAGIC:
        raise PackError(path, "no pack header (not an rtsseg pack, or truncated)")
    return _HEAD.unpack(head)[3].hex()


def read_pack(path: str | os.PathLike, dataset: str | None = None, verify: bool = True) -> tuple[dict, dict]:
    """Read a pack: ``(meta, arrays)`` with read-only numpy views on the payload.

    Raises :class:`PackError` for a missing header, a truncated file, a checksum mismatch (``verify``),
    or a pack of another ``dataset``; :class:`MissingDataError` if the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(
            path, "write it with `rtsseg pack DEST`, or point the data root at the folder holding it"
        )
    blob = path.read_bytes()
    if len(blob) < _HEAD.size or blob[:8] != MAGIC:
        raise PackError(path, "no pack header (not an rtsseg pack, or truncated)")
    _, meta_len, data_len, digest = _HEAD.unpack_from(blob)
    expected = _HEAD.size + meta_len + data_len
    if len(blob) != expected:
        raise PackError(path, f"size {len(blob)} bytes, the header says {expected} (truncated or appended to)")
    body = memoryview(blob)[_HEAD.size:]
    if verify and hashlib.sha256(body).digest() != digest:
        raise PackError(path, "sha256 mismatch (corrupt)")
    try:
        meta = json.loads(bytes(body[:meta_len]))
    except ValueError as e:
        raise PackError(path, f"meta block is not JSON ({e})") from e
    if dataset is not None and meta.get("dataset") != dataset:
        raise PackError(path, f"holds {meta.get('dataset')!r}, not {dataset!r}")
    if meta.get("version") != VERSION:
        raise PackError(path, f"format version {meta.get('version')}, this code reads {VERSION}")
    payload = body[meta_len:]
    arrays = {}
    for name, spec in meta["arrays"].items():
        dtype = np.dtype(spec["dtype"])
        count = int(np.prod(spec["shape"], dtype=np.int64))
        arrays[name] = np.frombuffer(payload, dtype, count, spec["offset"]).reshape(spec["shape"])
    meta["sha256"] = digest.hex()
    return meta, arrays


def find_pack(root: str | os.PathLike, name: str, folder_marker: str, folder_name: str) -> Path | None:
    """Where a loader given ``root`` should read a pack, or None for the folder layout:

    ``root`` itself if it is a file; ``root/name`` if ``root`` is a folder holding the pack and not
    ``folder_marker`` (the folder layout wins when both exist); ``root.parent/name`` if ``root`` is the
    absent ``<data root>/<folder_name>`` beside the pack (callers that join the folder name themselves).
    """
    root = Path(root)
    if root.is_file():
        return root
    if root.is_dir():
        return root / name if not (root / folder_marker).exists() and (root / name).is_file() else None
    if root.name == folder_name and (root.parent / name).is_file():
        return root.parent / name
    return None


def _blobs(data: np.ndarray, offsets: np.ndarray) -> list[bytes]:
    return [data[offsets[i]: offsets[i + 1]].tobytes() for i in range(len(offsets) - 1)]


def _concat(blobs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    return np.frombuffer(b"".join(blobs), dtype=np.uint8), offsets


def decode_image(data: bytes, where: str | os.PathLike) -> torch.Tensor:
    """Encoded image bytes -> ``uint8 [3,H,W]`` RGB, as :func:`rtsseg.data.io.read_image` decodes a file."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            rgb = np.array(image.convert("RGB"))  # [H,W,3]
    except (OSError, SyntaxError, ValueError) as e:
        raise CorruptFileError(where, f"{type(e).__name__}: {e}", REBUILD) from e
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()  # [3,H,W]


def decode_label(data: bytes, where: str | os.PathLike) -> torch.Tensor:
    """PNG bytes of raw label ids -> ``int64 [H,W]`` (the look-up table is the caller's)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            raw = np.array(image)
    except (OSError, SyntaxError, ValueError) as e:
        raise CorruptFileError(where, f"{type(e).__name__}: {e}", REBUILD) from e
    return torch.from_numpy(raw.astype(np.int64))  # [H,W]


def decode_many(blobs: list[bytes], where: str | os.PathLike, workers: int | None = None) -> list[torch.Tensor]:
    """Decode images on a thread pool (PIL releases the GIL while decoding)."""
    workers = workers or min(16, os.cpu_count() or 1)
    if workers <= 1 or len(blobs) < 256:
        return [decode_image(b, where) for b in blobs]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda b: decode_image(b, where), blobs, chunksize=256))


# ---- Tiny-ImageNet -------------------------------------------------------------------------------------

class TinyImageNetPack:
    """One split of ``tinyimagenet.pack``: ``classes``, ``class_words``, ``names``, ``labels``, ``boxes``,
    ``blob(i)`` (the JPEG bytes of image ``i``), after keeping the first ``max_per_class`` per class."""

    def __init__(self, path: str | os.PathLike, split: str, max_per_class: int | None = None) -> None:
        self.path = Path(path)
        meta, arrays = read_pack(self.path, "tinyimagenet")
        if split not in meta["splits"]:
            raise PackError(self.path, f"has no {split!r} split (it holds {sorted(meta['splits'])})")
        info = meta["splits"][split]
        packed = info.get("max_per_class")
        if max_per_class is not None and packed is not None and max_per_class > packed:
            raise DataError(
                self.path, f"{split} was packed with {packed} images per class, {max_per_class} were asked for",
                f"rebuild the pack with `rtsseg pack DEST --{split}-per-class {max_per_class}` (or more), "
                "or ask for fewer",
            )
        self.sha256 = meta["sha256"]
        self.packed_per_class = packed
        self.classes = list(meta["classes"])
        self.class_words = list(meta["class_words"])
        labels = arrays[f"{split}/labels"]
        keep = np.arange(len(labels))
        if max_per_class is not None:
            rank = np.zeros(len(labels), dtype=np.int64)
            seen = np.zeros(len(self.classes), dtype=np.int64)
            for i, c in enumerate(labels):
                rank[i] = seen[c]
                seen[c] += 1
            keep = keep[rank < max_per_class]
        self._data, self._offsets = arrays[f"{split}/jpeg"], arrays[f"{split}/offsets"]
        self._keep = keep
        self.names = [info["names"][i] for i in keep]
        self.labels = labels[keep].tolist()
        self.boxes = torch.from_numpy(arrays[f"{split}/boxes"][keep].copy())  # [N,4]

    def blob(self, index: int) -> bytes:
        j = self._keep[index]
        return self._data[self._offsets[j]: self._offsets[j + 1]].tobytes()


class CamVidPack:
    """One split of ``camvid.pack``: ``names`` (image, label), ``image(i)``, ``raw_label(i)``."""

    def __init__(self, path: str | os.PathLike, split: str) -> None:
        self.path = Path(path)
        meta, arrays = read_pack(self.path, "camvid")
        if split not in meta["splits"]:
            raise MissingDataError(self.path / split, f"the pack holds only {sorted(meta['splits'])}; {REBUILD}")
        self.sha256 = meta["sha256"]
        self.downsample = meta["downsample"]
        self.names = [tuple(p) for p in meta["splits"][split]["names"]]
        self._jpeg = (arrays[f"{split}/jpeg"], arrays[f"{split}/jpeg_offsets"])
        self._png = (arrays[f"{split}/png"], arrays[f"{split}/png_offsets"])

    def __len__(self) -> int:
        return len(self.names)

    def image(self, index: int) -> torch.Tensor:
        data, off = self._jpeg
        return decode_image(data[off[index]: off[index + 1]].tobytes(), self.path / self.names[index][0])

    def raw_label(self, index: int) -> torch.Tensor:
        data, off = self._png
        return decode_label(data[off[index]: off[index + 1]].tobytes(), self.path / self.names[index][1])
