"""Errors: each names the offending path (file, folder, parameter) and how to fix it."""

from __future__ import annotations

import os
from pathlib import Path


class DataError(RuntimeError):
    """Base class: ``DataError(path, problem, fix)`` renders as ``<problem>: <path>. Fix: <fix>``."""

    def __init__(self, path: str | os.PathLike, problem: str, fix: str) -> None:
        # A URL stays a string: Path("https://host/x") would collapse "//" and print "https:/host/x".
        self.path = path if isinstance(path, str) and "://" in path else Path(path)
        self.problem = problem
        self.fix = fix
        super().__init__(self._message())

    def _message(self) -> str:
        """The one line; subclasses whose sentence puts the path elsewhere override this."""
        return f"{self.problem}: {self.path}. Fix: {self.fix}"


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


class CheckpointError(CorruptFileError):
    """A checkpoint cannot be loaded safely (unreadable, or it holds pickled code rather than tensors)."""

    def __init__(self, path: str | os.PathLike, detail: str, fix: str = "delete it and train again") -> None:
        DataError.__init__(self, path, f"cannot load checkpoint ({detail})", fix)


class RunLockedError(DataError):
    """Another process holds the lock of a run folder (or of a profile)."""

    def __init__(self, path: str | os.PathLike, pid: int | str | None) -> None:
        self.pid = pid
        super().__init__(path, f"another run (pid {pid if pid is not None else '?'}) is using",
                         "wait for it to finish, or stop that process")

    def __str__(self) -> str:  # "another run (pid N) is using PATH. Fix: ..."
        return f"{self.problem} {self.path}. Fix: {self.fix}"


class RunMismatchError(DataError):
    """A checkpoint belongs to another configuration or code version than the run that would resume it."""

    def __init__(self, path: str | os.PathLike, detail: str,
                 fix: str = "use a new run folder, or restart this one (--restart)") -> None:
        super().__init__(path, f"checkpoint belongs to another run ({detail})", fix)


class NotWritableError(DataError):
    """A folder (runs, checkpoints) cannot be written: read-only, not a folder, or full.

    Renders ``cannot write to PATH (strerror). Fix: ...`` so that a raw ``OSError`` traceback from deep inside
    a trainer becomes one line naming the folder."""

    def __init__(self, path: str | os.PathLike, detail: str,
                 fix: str = "make it writable, or set RTSSEG_RUNS to a writable folder") -> None:
        self.detail = detail
        super().__init__(path, "cannot write to", fix)

    def _message(self) -> str:
        return f"cannot write to {self.path} ({self.detail}). Fix: {self.fix}"

    @classmethod
    def from_oserror(cls, err: OSError, fallback: str | os.PathLike) -> "NotWritableError":
        """The error for ``err`` (from ``mkdir``, ``open``, a write): it names the nearest existing folder on the
        way to ``err.filename`` (``fallback`` when the error names no file): the one to make writable.
        ``ENOSPC`` / ``EDQUOT`` give a :class:`DiskFullError` instead."""
        import errno

        where = Path(err.filename) if err.filename else Path(fallback)
        while not where.exists() and where.parent != where:
            where = where.parent
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            return DiskFullError(where)
        if where.is_file():  # a file where a folder should be (ENOTDIR, EEXIST): permissions are not the problem
            return NotWritableError(where, err.strerror or str(err), "it is a file, not a folder: move it away, or "
                                    "set RTSSEG_RUNS to a writable folder")
        return NotWritableError(where, err.strerror or str(err))


class DiskFullError(NotWritableError):
    """The device holding a file ran out of space while it was written (``ENOSPC``, or torch's zip writer
    failing with ``unexpected pos`` on a full disk)."""

    def __init__(self, path: str | os.PathLike,
                 fix: str = "free space or set RTSSEG_RUNS to a folder on another disk") -> None:
        super().__init__(path, "no space left on device", fix)

    def _message(self) -> str:
        return f"no space left on the device holding {self.path}. Fix: {self.fix}"


class NoRunError(DataError, FileNotFoundError):
    """No finished run under a run parent folder."""

    def __init__(self, path: str | os.PathLike, fix: str, what: str = "run") -> None:
        super().__init__(path, f"no finished {what} in", fix)
