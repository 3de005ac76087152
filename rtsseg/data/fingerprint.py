"""What a data set *is*, as a short dict that goes into every trainer's run identity.

A run belongs to its data: the same command on a Tiny-ImageNet folder with 2 train images per class and on one
with 3 must be two runs, never a resume of one by the other. The fingerprint of a split holds

- ``files``: how many files it reads, and ``bytes``: their total size;
- ``list_sha256``: sha256 over ``relative path, size`` of every file, in the order the loader reads them
  (relative to the data set root: the same data in another folder is the same data, paths are not data);
- ``index_sha256``: sha256 over the *content* of the index and label files (``wnids.txt``, box files,
  ``val_annotations.txt``, CamVid's ``train.txt`` and label PNGs): a changed label is another data set;
- ``classes`` (count and hash of the class list) and ``per_class`` (min, max and a hash of the files per
  class) where the data set has classes.

Image contents are covered by their sizes, not hashed: hashing 20,000 JPEGs would take longer than the
second a fingerprint may cost (listing the 20,000-image subset and its val split and ``stat`` of every file
take about 1.6 s on 2 cores, measured),
and a re-encoded image changes its size. Label files are hashed whole: they are small and a label edit
(a moved box) keeps the size.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

FINGERPRINT_VERSION = 1


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:  # outside the root (a listed absolute path): the name still identifies it
        return path.name


def split_fingerprint(root: str | os.PathLike, files: Sequence[str | os.PathLike],
                      index_files: Iterable[str | os.PathLike] = (), labels: Sequence[int] | None = None,
                      classes: Sequence[str] | None = None, **extra) -> dict:
    """The fingerprint (see the module docstring) of the ``files`` a loader reads below ``root`` (in its
    order), the ``index_files`` whose content defines labels or membership, and per-file ``labels`` (indices
    into ``classes``). ``extra`` (JSON-able) is stored as is (e.g. the split name, ``max_per_class``)."""
    root = Path(root)
    listing, total = hashlib.sha256(), 0
    for f in files:
        p = Path(f)
        size = os.stat(p).st_size
        total += size
        listing.update(f"{_relative(p, root)}\0{size}\n".encode())
    index = hashlib.sha256()
    for f in sorted({Path(f) for f in index_files}, key=lambda p: _relative(p, root)):
        index.update(_relative(f, root).encode() + b"\0" + f.read_bytes() + b"\0")
    out = {"version": FINGERPRINT_VERSION, "files": len(files), "bytes": total,
           "list_sha256": listing.hexdigest()[:16], "index_sha256": index.hexdigest()[:16], **extra}
    if classes is not None:
        out["classes"] = len(classes)
        out["classes_sha256"] = hashlib.sha256("\n".join(classes).encode()).hexdigest()[:16]
    if labels is not None:
        counts = Counter(int(y) for y in labels)  # files per class: min and max, and a hash of all of them
        n_classes = len(classes) if classes is not None else max(counts, default=-1) + 1
        per_class = [counts.get(c, 0) for c in range(n_classes)]
        out["per_class"] = {"min": min(per_class, default=0), "max": max(per_class, default=0),
                            "sha256": hashlib.sha256(",".join(map(str, per_class)).encode()).hexdigest()[:16]}
    return out


def blob_fingerprint(sha256: str, names: Sequence[str], **extra) -> dict:
    """The fingerprint of a split read from a checksummed pack (:mod:`rtsseg.data.pack`): the pack's own sha256
    and the member names the split takes."""
    listing = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
    return {"version": FINGERPRINT_VERSION, "files": len(names), "pack_sha256": sha256[:16],
            "list_sha256": listing, **extra}


__all__ = ["split_fingerprint", "blob_fingerprint", "FINGERPRINT_VERSION"]
