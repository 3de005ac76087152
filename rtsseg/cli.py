"""Command line: ``rtsseg run``, ``rtsseg book``, ``rtsseg steps``, ``rtsseg download``, ``rtsseg pretrain``."""

from __future__ import annotations

import argparse
import sys


def _run(args: argparse.Namespace) -> int:
    from rtsseg.pipeline import build_book, parse_override, run_profile

    overrides = dict(parse_override(o) for o in args.param)
    run_profile(args.profile, only=args.step or None, force=args.force, overrides=overrides)
    if not args.no_book and not args.step:
        build_book(args.profile)
    return 0


def _book(args: argparse.Namespace) -> int:
    from rtsseg.pipeline import build_book

    build_book(args.profile)
    return 0


def _steps(args: argparse.Namespace) -> int:
    from rtsseg.profiles import STEPS, step_params

    for s in STEPS:
        print(f"{s.name:28s} depends on {list(s.depends) or '-'}; {args.profile}: {step_params(args.profile, s.name)}")
    return 0


def _download(args: argparse.Namespace) -> int:
    from rtsseg.data.download import download

    kwargs = {"splits": tuple(args.splits)} if args.dataset == "cocostuff" else {}
    print(f"[rtsseg] {args.dataset} -> {download(args.dataset, args.dest, **kwargs)}")
    return 0


def _pretrain(rest: list[str]) -> int:
    from rtsseg.ssl.train import main as pretrain_main

    return pretrain_main(rest) or 0


def _evaluate(rest: list[str]) -> int:
    from rtsseg.seg.evaluate import main as evaluate_main

    return evaluate_main(rest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtsseg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="execute the notebooks of a profile with papermill, then build the book")
    run.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "gpu"])
    run.add_argument("--step", action="append", default=[], help="run only this step (name or number); repeatable")
    run.add_argument("-p", "--param", action="append", default=[], help="override a notebook parameter: key=value")
    run.add_argument("--force", action="store_true", help="rerun steps even if unchanged")
    run.add_argument("--no-book", action="store_true", help="do not build the HTML book")
    run.set_defaults(func=_run)

    book = sub.add_parser("book", help="build the HTML book from the executed notebooks of a profile")
    book.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "gpu"])
    book.set_defaults(func=_book)

    steps = sub.add_parser("steps", help="list the steps and their parameters")
    steps.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "gpu"])
    steps.set_defaults(func=_steps)

    dl = sub.add_parser("download", help="download a data set with its official URLs (needs internet)")
    dl.add_argument("dataset", choices=["cocostuff", "tiny-imagenet", "camvid"])
    dl.add_argument("dest", help="tiny-imagenet, camvid: the data root; cocostuff: the cocostuff/ folder itself")
    dl.add_argument("--splits", nargs="+", default=["val2017"], choices=["train2017", "val2017"],
                    help="COCO-Stuff splits to fetch (train2017 is about 18 GB)")
    dl.set_defaults(func=_download)

    sub.add_parser("pretrain", help="Barlow Twins pretraining (torchrun-compatible); see `rtsseg pretrain --help`",
                   add_help=False)
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
    from rtsseg.pipeline import NotebookParameterError, StepFailed

    try:
        return args.func(args)
    except (StepFailed, NotebookParameterError, DataError, FileNotFoundError) as err:
        print(f"rtsseg: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
