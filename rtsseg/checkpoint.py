"""The one checkpoint module of every trainer: atomic save, safe load, RNG-state capture.

Loading always uses ``torch.load(weights_only=True)``: a file that holds pickled code (a class, a function
such as ``os.system``) is refused with :class:`rtsseg.errors.CheckpointError` before anything in it runs.

A checkpoint is written to a temporary file in the same folder, flushed and fsync'ed, then moved over
the target with ``os.replace`` (atomic on POSIX): a crash at any moment leaves either the old or the
new file, never a truncated one. Everything stored is tensors, numbers, strings, lists and dicts, so
loading needs no pickled classes.
"""

from __future__ import annotations

import errno
import os
import pickle
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rtsseg.errors import CheckpointError, DiskFullError, MissingDataError, NotWritableError

#: Below this much free space a failed ``torch.save`` is taken for a full disk.
LOW_SPACE_BYTES = 64 * 2**20
#: torch's zip writer on a full disk: ``[enforce fail at inline_container.cc:672] . unexpected pos 123 vs 456``
#: (or ``PytorchStreamWriter failed writing file``): the ``ENOSPC`` of the underlying write is lost on the way.
_TORCH_WRITE_FAILED = re.compile(r"inline_container\.cc.*(unexpected pos|failed writing)|PytorchStreamWriter failed",
                                 re.IGNORECASE | re.DOTALL)
#: What a torch.save file starts with: a zip (the default since torch 1.6) or a pickle (the legacy format).
_ZIP_MAGIC, _PICKLE_PROTO = b"PK\x03\x04", b"\x80"
#: The fix for a damaged checkpoint when the caller gives none: it fits a training checkpoint, a segmenter,
#: a backbone file.
DAMAGED_FIX = "delete it and rerun the step that wrote it, or pass the right file"


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _is_disk_full(err: BaseException, folder: Path) -> bool:
    """``ENOSPC`` / ``EDQUOT``, or a ``RuntimeError`` of torch's writer, or any write failure while the device
    holding ``folder`` has (almost) no space left. Called before the temporary file is removed: afterwards the
    space it took is free again."""
    if isinstance(err, OSError):
        return err.errno in (errno.ENOSPC, errno.EDQUOT)
    if not isinstance(err, RuntimeError):
        return False
    free = _free_bytes(folder)
    return bool(_TORCH_WRITE_FAILED.search(str(err))) or (free is not None and free < LOW_SPACE_BYTES)


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically (temp file + fsync + rename); return the path.

    A full disk raises :class:`DiskFullError` and a folder that cannot be written :class:`NotWritableError`
    (one line naming the path and the fix, instead of torch's ``unexpected pos`` or a raw ``OSError``); the
    temporary file is removed and an older checkpoint at ``path`` stays as it was."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise NotWritableError.from_oserror(err, path.parent) from err
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        full = isinstance(err, (OSError, RuntimeError)) and _is_disk_full(err, path.parent)
        if os.path.exists(tmp):
            os.unlink(tmp)
        if full:
            raise DiskFullError(path) from err
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                    fix: str | None = None) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``; errors name the path and the fix.

    ``fix`` is what the caller's user should do with a file that is no checkpoint or a damaged one (a
    segmentation loader: "pass a segmenter.pt ..."; a run: "restart it"); the default fits every use, because
    "delete it to restart training" is wrong advice for a file that is not a training checkpoint. A file that
    does not start like a ``torch.save`` file (a zip, or a pickle in the legacy format), e.g. a CSV or a log
    given by mistake, is named as such instead of torch's ``KeyError: 101`` or ``pop from empty list``."""
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(path, "train first, or point --run-dir at a folder holding checkpoint.pt")
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise CheckpointError(path, "empty file (0 bytes)", fix or DAMAGED_FIX)
    if not (head.startswith(_ZIP_MAGIC) or head.startswith(_PICKLE_PROTO)):
        raise CheckpointError(
            path, f"not a PyTorch checkpoint: it starts with {head!r}, not as a torch.save zip or pickle",
            fix or "pass a file written by torch.save (a checkpoint.pt or segmenter.pt), not a text or image file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:  # weights_only refused a global: pickled code, never executed
        lines = [ln.strip() for ln in str(err).splitlines() if "global" in ln.lower()] or [type(err).__name__]
        first = lines[0]
        raise CheckpointError(
            path, f"it holds pickled code or objects, refused by weights_only=True: {first[:300]}",
            "do not use this file (it may run code); retrain, or re-save it as a dict of tensors",
        ) from err
    except Exception as err:  # zip / truncated-file errors
        detail = (str(err).splitlines() or [""])[0]
        if "PytorchStreamReader" in detail:  # keep torch's diagnosis, drop its paragraph of advice
            detail = detail.split(". ")[0]
        raise CheckpointError(path, f"{type(err).__name__}: {detail}", fix or DAMAGED_FIX) from err


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU (and CUDA) RNG states as weights_only-safe objects."""
    np_state = np.random.get_state()
    state = {
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    npst = state["numpy"]
    np.random.set_state(
        ("MT19937", npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"].cpu())  # a checkpoint loaded onto the GPU holds it there
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
