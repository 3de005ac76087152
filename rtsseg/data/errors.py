"""Compatibility shim: the error classes live in :mod:`rtsseg.errors`."""

from rtsseg.errors import (  # noqa: F401
    CorruptFileError,
    DataError,
    LabelRangeError,
    MaskFormatError,
    MissingDataError,
    UnpairedFileError,
)
