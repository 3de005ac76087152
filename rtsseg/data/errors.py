"""Errors for bad input: each names the offending path and how to fix it."""

from __future__ import annotations

import os
from pathlib import Path


class DataError(RuntimeError):
    """Base class: ``DataError(path, problem, fix)`` renders as ``<problem>: <path>. Fix: <fix>``."""

    def __init__(self, path: str | os.PathLike, problem: str, fix: str) -> None:
        self.path = Path(path)
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}: {self.path}. Fix: {fix}")


class MissingDataError(DataError, FileNotFoundError):
    """A data root, split folder or file does not exist."""

    def __init__(self, path: str | os.PathLike, fix: str, problem: str = "missing data") -> None:
        super().__init__(path, problem, fix)


class CorruptFileError(DataError):
    """An image or mask cannot be decoded."""

    def __init__(self, path: str | os.PathLike, detail: str, fix: str = "re-download or delete this file") -> None:
        super().__init__(path, f"cannot decode file ({detail})", fix)


class LabelRangeError(DataError, ValueError):
    """A mask holds a label id outside the data set's range."""

    def __init__(self, path: str | os.PathLike, bad_ids: list[int], valid: str, fix: str) -> None:
        self.bad_ids = bad_ids
        super().__init__(path, f"label ids {bad_ids} out of range (valid: {valid})", fix)


class UnpairedFileError(DataError):
    """An image has no mask (or a mask no image), or a listed file is unknown to its partner list."""

    def __init__(self, path: str | os.PathLike, partner: str, fix: str) -> None:
        super().__init__(path, f"no matching {partner} for file", fix)


class MaskFormatError(DataError, ValueError):
    """A mask is not a single-channel image of integer label ids."""

    def __init__(self, path: str | os.PathLike, detail: str, fix: str) -> None:
        super().__init__(path, f"not a label mask ({detail})", fix)
