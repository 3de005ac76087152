"""The one checkpoint module: atomic save, weights_only load, pickled code refused before it runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from rtsseg.checkpoint import load_checkpoint, save_checkpoint
from rtsseg.errors import CheckpointError, CorruptFileError, MissingDataError


def test_atomic_save_leaves_no_temp_files_and_loads(tmp_path: Path):
    path = save_checkpoint({"w": torch.ones(3), "step": 3, "name": "x", "dims": (4, 5)}, tmp_path / "c.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]
    state = load_checkpoint(path)
    assert state["step"] == 3 and torch.equal(state["w"], torch.ones(3))


class _Boom:
    def __reduce__(self):  # unpickling this would create a file: proof that code ran
        return (os.system, (f"touch {self._witness}",))


def test_pickled_callable_is_refused_and_nothing_runs(tmp_path: Path):
    p = tmp_path / "evil.pt"
    torch.save({"x": os.system}, p)
    with pytest.raises(CheckpointError, match=r"evil\.pt.*|pickled code") as info:
        load_checkpoint(p)
    assert "evil.pt" in str(info.value) and "posix.system" in str(info.value)
    witness = tmp_path / "ran"
    boom = _Boom()
    boom._witness = witness
    torch.save({"x": boom}, tmp_path / "boom.pt")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "boom.pt")
    assert not witness.exists()


def test_garbage_and_missing_files_name_the_path(tmp_path: Path):
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CorruptFileError, match="bad.pt"):
        load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(MissingDataError, match="none.pt"):
        load_checkpoint(tmp_path / "none.pt")
