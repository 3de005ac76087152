"""Command line: ``rtsseg run``, ``rtsseg book``, ``rtsseg steps``, ``rtsseg download``, ``rtsseg pretrain``."""

from __future__ import annotations

import argparse
import sys


def _run(args: argparse.Namespace) -> int:
    from rtsseg.params import parse_override
    from rtsseg.pipeline import build_book, run_profile

    overrides = dict(parse_override(o) for o in args.param)
    run_profile(args.profile, only=args.step or None, force=args.force, overrides=overrides,
                allow_cpu=args.allow_cpu)
    if not args.no_book and not args.step:
        build_book(args.profile)
    return 0


def _book(args: argparse.Namespace) -> int:
    from rtsseg.pipeline import build_book

    build_book(args.profile, partial=args.partial)
    return 0


def _steps(args: argparse.Namespace) -> int:
    from rtsseg.profiles import STEPS, step_params

    for s in STEPS:
        print(f"{s.name:28s} depends on {list(s.depends) or '-'}; {args.profile}: {step_params(args.profile, s.name)}")
    return 0


def _download(args: argparse.Namespace) -> int:
    from rtsseg.data.download import download

    kwargs = {"splits": tuple(args.splits)} if args.dataset == "cocostuff" else {}
    if args.per_class is not None:
        if args.dataset != "tiny-imagenet":
            print(f"[rtsseg] --per-class is a Tiny-ImageNet option, not one of {args.dataset}. Fix: drop it")
            return 2
        kwargs["per_class"] = args.per_class
    print(f"[rtsseg] {args.dataset} -> {download(args.dataset, args.dest, **kwargs)}")
    return 0


def _pack(args: argparse.Namespace) -> int:
    from rtsseg.data.packing import pack_all

    for name, path in pack_all(args.data_root, args.dest, args.train_per_class, args.val_per_class,
                               args.camvid_downsample, camvid_max_images=args.camvid_max_images).items():
        size = f"{path.stat().st_size / 2**20:.1f} MiB" if path.is_file() else "folder"
        print(f"[rtsseg] {name} -> {path} ({size})")
    return 0


def _pretrain(rest: list[str]) -> int:
    """``rtsseg pretrain METHOD --flag ...``: train (or resume, or skip) one run of METHOD (barlow-twins, dino,
    supervised) with the one training engine (:func:`rtsseg.ssl.engine.main`). A flag first (the command from
    before methods were named: ``rtsseg pretrain --backbone ...``) means barlow-twins."""
    from rtsseg.ssl.engine import main as engine_main

    if rest and rest[0].startswith("-") and rest[0] not in ("-h", "--help"):
        rest = ["barlow-twins", *rest]
    return engine_main(rest, prog="rtsseg pretrain")


def _evaluate(rest: list[str]) -> int:
    from rtsseg.seg.evaluate import main as evaluate_main

    return evaluate_main(rest)


def build_parser() -> argparse.ArgumentParser:
    from rtsseg.profiles import PROFILES

    profiles = list(PROFILES)
    parser = argparse.ArgumentParser(prog="rtsseg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="execute the notebooks of a profile with papermill, then build the book")
    run.add_argument("--profile", default="cpu", choices=profiles)
    run.add_argument("--step", action="append", default=[], help="run only this step (name or number); repeatable")
    run.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                     help="override a notebook parameter (repeatable); it applies to every selected step that "
                          "declares KEY (without --step: e.g. epochs reaches 02, 03, 04 and 07), and the run prints "
                          "which steps each override reaches before it starts; a KEY no selected step declares is "
                          "refused")
    run.add_argument("--force", action="store_true",
                     help="clear the runs (checkpoints) of the chosen steps and rerun them even if unchanged")
    run.add_argument("--allow-cpu", action="store_true", help="run a gpu profile on a machine without CUDA anyway")
    run.add_argument("--no-book", action="store_true", help="do not build the HTML book")
    run.set_defaults(func=_run)

    book = sub.add_parser("book", help="build the HTML book from the executed notebooks of a profile")
    book.add_argument("--profile", default="cpu", choices=profiles)
    book.add_argument("--partial", action="store_true",
                      help="build the chapters that were executed; the landing page names the missing ones")
    book.set_defaults(func=_book)

    steps = sub.add_parser("steps", help="list the steps and their parameters")
    steps.add_argument("--profile", default="cpu", choices=profiles)
    steps.set_defaults(func=_steps)

    dl = sub.add_parser("download", help="download a data set with its official URLs (needs internet)")
    dl.add_argument("dataset", choices=["cocostuff", "tiny-imagenet", "camvid"])
    dl.add_argument("dest", help="tiny-imagenet, camvid: the data root; cocostuff: the cocostuff/ folder itself")
    dl.add_argument("--splits", nargs="+", default=["val2017"], choices=["train2017", "val2017"],
                    help="COCO-Stuff splits to fetch (train2017 is about 18 GB)")
    dl.add_argument("--per-class", type=int, default=None, metavar="N",
                    help="Tiny-ImageNet: keep the first N train images of each class (the book's subset: 100)")
    dl.set_defaults(func=_download)

    pk = sub.add_parser("pack", help="pack Tiny-ImageNet and CamVid into one checksummed file each (a data root)")
    pk.add_argument("dest", help="folder to write tinyimagenet.pack, camvid.pack, cocostuff/curated/ into")
    pk.add_argument("--data-root", default=None, help="source data root (default: $RTSSEG_DATA)")
    pk.add_argument("--train-per-class", type=int, default=None, help="Tiny-ImageNet train images per class")
    pk.add_argument("--val-per-class", type=int, default=None, help="Tiny-ImageNet val images per class")
    pk.add_argument("--camvid-downsample", type=int, default=2, help="CamVid integer downsampling (2: 240x180)")
    pk.add_argument("--camvid-max-images", type=int, default=None, help="first n images of each CamVid split")
    pk.set_defaults(func=_pack)

    sub.add_parser("pretrain", help="train one run: `rtsseg pretrain {barlow-twins,dino,supervised} --flag ...` "
                   "(torchrun: -m rtsseg.ssl.engine METHOD ...); see `rtsseg pretrain METHOD --help`", add_help=False)
    sub.add_parser("evaluate", help="score a segmentation checkpoint on a data folder, print JSON; see "
                   "`rtsseg evaluate --help`", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    import logging

    # papermill logs each notebook's outputs (progress bars included) as they come: show them plainly
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("papermill").setLevel(logging.INFO)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["pretrain"]:
        return _pretrain(argv[1:])
    if argv[:1] == ["evaluate"]:
        return _evaluate(argv[1:])
    args = build_parser().parse_args(argv)
    from rtsseg.errors import DataError
    from rtsseg.params import NotebookParameterError
    from rtsseg.pipeline import RunRefused, StepFailed

    try:
        return args.func(args)
    except (RunRefused, NotebookParameterError) as err:  # nothing ran: a usage error, like argparse's
        print(f"rtsseg: error: {err}", file=sys.stderr)
        return 2
    except (StepFailed, DataError, FileNotFoundError) as err:
        print(f"rtsseg: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
