"""Project-wide settings: where the data lives, where runs go, seeding."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

#: The repository root (the folder holding ``pyproject.toml``), for an editable install.
REPO_ROOT = Path(__file__).resolve().parents[1]

DATA_ENV = "RTSSEG_DATA"
RUNS_ENV = "RTSSEG_RUNS"


def data_root(path: str | os.PathLike | None = None, *, must_exist: bool = True) -> Path:
    """Resolve the data root: ``path`` if given, else ``$RTSSEG_DATA``, else ``<repo>/../shared/data``.

    Raises :class:`rtsseg.errors.MissingDataError` naming the path and the fix when it is missing.
    """
    if path is None:
        path = os.environ.get(DATA_ENV) or (REPO_ROOT.parent / "shared" / "data")
    root = Path(path).expanduser().resolve()
    if must_exist and not root.is_dir():
        from rtsseg.errors import MissingDataError

        raise MissingDataError(
            root,
            f"set ${DATA_ENV} to the folder holding camvid/, tiny-imagenet-200/ and cocostuff/ "
            "(default: ../shared/data beside the repository)",
        )
    return root


def runs_root(path: str | os.PathLike | None = None) -> Path:
    """Where checkpoints and caches go: ``path``, else ``$RTSSEG_RUNS``, else ``<repo>/runs`` (git-ignored)."""
    if path is None:
        path = os.environ.get(RUNS_ENV) or (REPO_ROOT / "runs")
    root = Path(path).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch.Generator seeded with ``seed`` for explicit use."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
