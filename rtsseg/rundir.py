"""Run identity, locks and history: a run folder belongs to exactly one (configuration, code) pair.

    with open_run(parent, config, code_digest("rtsseg.ssl", "rtsseg.models", ...)) as run:
        state = run.load()            # None, or the state to resume from (identity verified)
        ... run.save(state) ...       # atomic, identity stored inside
        run.append_history("history.csv", row, FIELDS)
        run.finish()                  # status "done", parent/latest.json -> this folder

- The folder is ``parent/<id>``, ``id`` = the first 12 hex digits of sha256 over the canonical JSON of
  ``{"config": config, "code": code}``: a changed hyper-parameter or a changed training source gives a new folder
  (a new run), never a resume of the old one. ``parent/index.json`` lists every run (id -> config summary, status,
  times) for people; ``parent/latest.json`` names the last finished run, read by :func:`latest_run`.
- A run folder is locked with ``fcntl.flock`` on ``<folder>/.lock`` (released by the kernel when the process
  dies): a second opener fails at once with ``another run (pid N) is using PATH``.
- ``restart=True`` wipes the folder (under the lock) and trains from scratch.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from rtsseg.checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from rtsseg.errors import NoRunError, NotWritableError, RunLockedError, RunMismatchError

CHECKPOINT = "checkpoint.pt"
INDEX = "index.json"
LATEST = "latest.json"
_LOCK = ".lock"


# ------------------------------------------------------------------------------------------ identity
def _sources(name: str) -> list[tuple[str, Path]]:
    """(key, file) for every ``.py`` of module or package ``name``; keys do not depend on where the repo is."""
    spec = importlib.util.find_spec(name)
    if spec is None or (spec.origin is None and not spec.submodule_search_locations):
        raise ModuleNotFoundError(f"code_digest: no module {name!r}")
    if spec.submodule_search_locations:  # a package: every .py below it
        out = []
        for loc in spec.submodule_search_locations:
            for p in Path(loc).rglob("*.py"):
                if "__pycache__" not in p.parts:
                    out.append((f"{name}/{p.relative_to(loc).as_posix()}", p))
        return sorted(out)
    return [(name, Path(spec.origin))]


def code_digest(*packages: str) -> str:
    """sha256 (hex) of the ``.py`` sources of the named modules / packages (recursively), e.g.
    ``code_digest("rtsseg.ssl", "rtsseg.models", "rtsseg.sampling")``: the code that shapes a result."""
    if not packages:
        raise ValueError("code_digest needs at least one module name")
    h = hashlib.sha256()
    for name in sorted(set(packages)):
        for key, path in _sources(name):
            h.update(key.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def canonical_config(config: Mapping[str, Any]) -> dict:
    """JSON round trip (tuples -> lists, paths -> str) so a config compares equal to its stored copy."""
    return json.loads(json.dumps(dict(config), sort_keys=True, default=str))


def run_identity(config: Mapping[str, Any], code: str) -> str:
    """12 hex digits naming the run of (config, code)."""
    blob = json.dumps({"config": canonical_config(config), "code": code}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


# ------------------------------------------------------------------------------------------- files
def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _update_index(parent: Path, ident: str, **fields: Any) -> None:
    """Read-modify-write ``parent/index.json`` under its own short lock (several runs share a parent)."""
    with open(parent / ".index.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = parent / INDEX
        try:
            index = json.loads(path.read_text()) if path.exists() else {}
        except json.JSONDecodeError:
            index = {}
        index.setdefault(ident, {}).update(fields)
        _atomic_write_text(path, json.dumps(index, indent=2, sort_keys=True))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _summary(config: Mapping[str, Any]) -> dict:
    """The flat fields of a config (scalars and lists; nested dicts are in the run's config.json)."""
    return {k: v for k, v in canonical_config(config).items() if not isinstance(v, dict)}


# --------------------------------------------------------------------------------------------- run
class Run:
    """One locked run folder. Use :func:`open_run` to get one; close it (or use ``with``)."""

    def __init__(self, parent: Path, config: dict, code: str, primary: bool = True) -> None:
        self.parent = Path(parent)
        self.config = canonical_config(config)
        self.code = code
        self.identity = run_identity(self.config, code)
        self.path = self.parent / self.identity
        self.checkpoint = self.path / CHECKPOINT
        self.primary = primary
        self._lock_file = None
        self._finished = False

    # ---- lock
    def _acquire(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        f = open(self.path / _LOCK, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            pid = f.read().strip() or None
            f.close()
            raise RunLockedError(self.path, pid) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._lock_file = f

    def close(self, status: str | None = None) -> None:
        """Release the lock; the index says ``done``, or ``status`` (default ``stopped``) if not finished."""
        if self._lock_file is None:
            return
        try:
            if not self._finished:
                _update_index(self.parent, self.identity, status=status or "stopped", updated=_now())
        finally:  # the lock goes even when the index cannot be written (a folder turned read-only, a full disk)
            self._lock_file.close()
            self._lock_file = None

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close("failed" if exc_type is not None else None)

    # ---- checkpoint
    def load(self, map_location: str = "cpu") -> dict | None:
        """The state to resume from, or None when this run has no checkpoint yet.

        Raises :class:`RunMismatchError` when the checkpoint's stored identity is not this run's."""
        if not self.checkpoint.exists():
            return None
        state = load_checkpoint(self.checkpoint, map_location=map_location,
                                fix=f"restart this run (restart=True / --restart), or delete {self.checkpoint}")
        stored = state.get("run_identity")
        if stored != self.identity:
            raise RunMismatchError(
                self.checkpoint, f"stored identity {stored!r}, this run is {self.identity!r}",
                f"restart this run (restart=True / --restart), or delete {self.path}",
            )
        return state

    def save(self, state: Mapping[str, Any]) -> Path:
        """Atomically write ``state`` plus the run identity, config and code digest."""
        full = {**state, "run_identity": self.identity, "config": self.config, "code_digest": self.code}
        return save_checkpoint(full, self.checkpoint)

    # ---- history
    def append_history(self, path_name: str, row: Mapping[str, Any], fields: list[str]) -> None:
        """Append ``row`` to the CSV ``path/path_name`` (header written on creation)."""
        path = self.path / path_name
        new = not path.exists()
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            if new:
                writer.writeheader()
            writer.writerow(dict(row))

    def resume_position(self, state: dict, rank: int, steps_per_epoch: int) -> tuple[int, float]:
        """Where a resumed step-based trainer (Barlow Twins, DINO) goes on from ``state``: restores this rank's RNG
        state (the checkpoint holds one per rank), drops the ``steps.csv`` / ``history.csv`` rows written after
        the checkpoint (primary process only) and returns ``(step, wall seconds so far)``."""
        set_rng_state(state["rng"][min(rank, len(state["rng"]) - 1)])
        step = int(state["step"])
        if self.primary:
            self.truncate_history("steps.csv", lambda r: int(r["step"]) <= step)
            self.truncate_history("history.csv", lambda r: int(r["epoch"]) <= step // steps_per_epoch)
        return step, float(state["wall_s"])

    def truncate_history(self, path_name: str, keep: Callable[[dict], bool]) -> None:
        """Drop the rows of ``path/path_name`` for which ``keep(row)`` is false (rows written after the
        checkpoint a resumed run starts from)."""
        path = self.path / path_name
        if not path.exists():
            return
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            names, rows = reader.fieldnames or [], [r for r in reader if keep(r)]
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=names)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)

    def read_history(self, path_name: str = "history.csv") -> list[dict]:
        path = self.path / path_name
        if not path.exists():
            return []
        with open(path, newline="") as f:
            return list(csv.DictReader(f))

    # ---- end
    def finish(self) -> None:
        """Mark the run done and point ``parent/latest.json`` at it."""
        if not self.primary:
            return
        self._finished = True
        _update_index(self.parent, self.identity, status="done", finished=_now(), updated=_now())
        _atomic_write_text(self.parent / LATEST, json.dumps(
            {"run": self.identity, "path": str(self.path), "finished": _now()}, indent=2))


def open_run(parent: str | os.PathLike, config: Mapping[str, Any], code: str, restart: bool = False,
             primary: bool = True) -> Run:
    """Open (create or resume) the run of ``(config, code)`` under ``parent``, locked for this process.

    ``config`` must be JSON-serialisable (a dataclass: ``asdict``) and hold only what shapes the result.
    ``primary=False`` (ranks > 0 of a distributed run) opens the same folder without lock or writes.

    A folder that cannot be written (read-only, below a file, a full disk) raises :class:`NotWritableError`
    naming it, one line for the trainers' ``main()`` instead of an ``OSError`` traceback."""
    run = Run(Path(parent), dict(config), code, primary=primary)
    if not primary:
        return run
    try:
        run.parent.mkdir(parents=True, exist_ok=True)
        run._acquire()
    except OSError as err:
        raise NotWritableError.from_oserror(err, run.parent) from err
    try:
        if restart:
            for p in run.path.iterdir():
                if p.name != _LOCK:
                    shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        _atomic_write_text(run.path / "config.json", json.dumps(
            {"config": run.config, "code_digest": code, "identity": run.identity}, indent=2, sort_keys=True))
        _update_index(run.parent, run.identity, config=_summary(run.config), status="running", pid=os.getpid(),
                      started=_now(), updated=_now())
    except BaseException as err:
        with contextlib.suppress(OSError):  # the index may be as unwritable as what failed
            run.close("failed")
        if isinstance(err, OSError):
            raise NotWritableError.from_oserror(err, run.path) from err
        raise
    return run


@contextlib.contextmanager
def exclusive(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold ``fcntl.flock`` on ``folder/.lock`` for the ``with`` block (e.g. one ``rtsseg run`` per profile):
    a second holder fails at once with :class:`RunLockedError` naming the pid and the folder; a folder that
    cannot be written, with :class:`NotWritableError`."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        f = open(folder / _LOCK, "a+")
    except OSError as err:
        raise NotWritableError.from_oserror(err, folder) from err
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise RunLockedError(folder, f.read().strip() or None) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        yield folder
    finally:
        f.close()


def latest_run(parent: str | os.PathLike, step_hint: str | None = None, what: str = "run") -> Path:
    """The folder of the last finished run under ``parent`` (from ``parent/latest.json``); otherwise
    :class:`NoRunError` naming ``parent`` and ``step_hint`` (the step to run)."""
    parent = Path(parent)
    fix = step_hint or "run the training step that writes it first"
    path = parent / LATEST
    if not path.is_file():
        raise NoRunError(parent, fix, what)
    try:
        folder = parent / json.loads(path.read_text())["run"]
    except (json.JSONDecodeError, KeyError) as err:
        raise NoRunError(parent, f"{LATEST} is unreadable ({err}); {fix}", what) from err
    if not (folder / CHECKPOINT).is_file():
        raise NoRunError(parent, f"{folder} has no {CHECKPOINT}; {fix}", what)
    return folder


def list_runs(parent: str | os.PathLike) -> dict[str, dict]:
    """``parent/index.json`` as a dict (empty when there is none)."""
    path = Path(parent) / INDEX
    return json.loads(path.read_text()) if path.is_file() else {}


__all__ = ["Run", "open_run", "exclusive", "latest_run", "list_runs", "code_digest", "run_identity", "canonical_config"]
