"""The one checkpoint module of every trainer: atomic save, safe load, RNG-state capture.

Loading always uses ``torch.load(weights_only=True)``: a file that holds pickled code (a class, a function
such as ``os.system``) is refused with :class:`rtsseg.errors.CheckpointError` before anything in it runs.

A checkpoint is written to a temporary file in the same folder, flushed and fsync'ed, then moved over
the target with ``os.replace`` (atomic on POSIX): a crash at any moment leaves either the old or the
new file, never a truncated one. Everything stored is tensors, numbers, strings, lists and dicts, so
loading needs no pickled classes.
"""

from __future__ import annotations

import os
import pickle
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rtsseg.errors import CheckpointError, MissingDataError


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically (temp file + fsync + rename); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
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


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``; errors name the path and the fix."""
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(path, "train first, or point --run-dir at a folder holding checkpoint.pt")
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
        raise CheckpointError(path, f"{type(err).__name__}: {err}", "delete it to restart training") from err


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
