"""Dataclass configs on the command line: one ``--flag`` per field, typed from the field's annotation.

Shared by every method's entry point (``rtsseg pretrain METHOD``, ``python -m rtsseg.ssl.engine METHOD`` under
torchrun), so a config field is a command-line flag with no second list to keep in step.
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, fields


def _arg_type(tp) -> tuple[Callable | None, dict]:
    """argparse settings for a dataclass field type."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)][0]
        if typing.get_origin(inner) is tuple:
            return typing.get_args(inner)[0], {"nargs": "+"}

        def parse(s: str, inner=inner):
            return None if s.lower() == "none" else inner(s)

        return parse, {}
    if origin is tuple:
        return args[0], {"nargs": "+"}
    if tp is bool:
        return None, {"action": argparse.BooleanOptionalAction}
    return tp, {}


def config_parser(cls, description: str, prog: str | None = None) -> argparse.ArgumentParser:
    """One ``--flag`` per field of dataclass ``cls`` (``foo_bar`` -> ``--foo-bar``), defaults from the class."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        conv, extra = _arg_type(hints[f.name])
        kwargs = {"default": default, "help": f"default: {default}", **extra}
        if conv is not None:
            kwargs["type"] = conv
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, **kwargs)
    return parser


def config_from_args(cls, argv: list[str], description: str, prog: str | None = None):
    """Parse ``argv`` with :func:`config_parser` into an instance of ``cls`` (lists become tuples)."""
    ns = config_parser(cls, description, prog).parse_args(argv)
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in vars(ns).items()})
