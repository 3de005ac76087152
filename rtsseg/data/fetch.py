"""Download primitives shared by the data sets' downloaders: ``fetch`` (URL -> file), ``unzip`` and
``extract_complete`` (unzip into a partial folder, check, mark complete, rename into place).

They live apart from the dispatcher :mod:`rtsseg.data.download` so that ``camvid``, ``tinyimagenet`` and
``cocostuff`` import them without importing back into the module that imports them (no import cycle).

A data set folder counts as downloaded only when it holds :data:`MARKER`, written after the whole archive was
extracted and checked. A file of the archive (``wnids.txt``, ``train.txt``) is no such sign: those are early
members, present after an extraction that was interrupted half-way. Extraction goes to ``.<name>.partial/``
beside the final folder and is renamed at the end, so a crash never leaves half a folder under the final name.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import time
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from rtsseg.errors import CorruptFileError, DataError

_CHUNK = 1 << 20


def fetch(url: str, path: str | os.PathLike, progress: bool = True) -> Path:
    """Download ``url`` to ``path`` (via ``path.part`` + rename, so a file at ``path`` is complete).

    An existing ``path`` is kept as is. ``file://`` URLs work too.
    """
    path = Path(path)
    if path.is_file():
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(path.parent, f"cannot create the download folder ({e.strerror or e})",
                        "make it writable, or download into another folder") from e
    part = path.with_name(path.name + ".part")
    total = None
    try:
        with urllib.request.urlopen(url) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=path.name, disable=not progress) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
        if total is not None and part.stat().st_size != total:  # a dropped connection: never keep a short file
            raise http.client.IncompleteRead(b"", total - part.stat().st_size)
    except (OSError, http.client.HTTPException) as e:  # URLError, HTTPError, disk full, a cut connection
        got = part.stat().st_size if part.exists() else 0
        part.unlink(missing_ok=True)
        detail = f"received {got} of {total} bytes" if isinstance(e, http.client.IncompleteRead) and total else e
        raise DataError(url, f"download failed ({detail})", "check the network and the URL, then run again") from e
    os.replace(part, path)
    return path


def unzip(
    archive: str | os.PathLike,
    dest: str | os.PathLike,
    rename: Callable[[str], str | None] = lambda name: name,
    progress: bool = True,
    rewrite: dict[str, Callable[[bytes], bytes]] | None = None,
) -> int:
    """Extract ``archive`` into ``dest``; ``rename(member) -> relative path | None`` (None skips it).

    ``rewrite[member](bytes) -> bytes`` writes a transformed member (a subset's index file keeps only the
    lines of the files kept). Returns the number of files written. Members escaping ``dest`` are refused.
    """
    rewrite = rewrite or {}
    archive, dest = Path(archive), Path(dest).resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            written = 0
            for member in tqdm(members, desc=f"unzip {archive.name}", disable=not progress):
                relative = rename(member.filename)
                if relative is None:
                    continue
                target = (dest / relative).resolve()
                if dest not in target.parents:
                    raise DataError(archive, f"member {member.filename!r} escapes {dest}", "use the official zip")
                target.parent.mkdir(parents=True, exist_ok=True)
                if member.filename in rewrite:
                    target.write_bytes(rewrite[member.filename](zf.read(member)))
                else:
                    with zf.open(member) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out, _CHUNK)
                written += 1
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:  # truncated, bad CRC, damaged deflate stream
        raise CorruptFileError(archive, f"bad zip: {e}", "delete the file and download it again") from e
    return written


#: Written into a data set folder after its archive was extracted whole and checked; see the module docstring.
MARKER = ".rtsseg-complete.json"


def is_complete(root: str | os.PathLike) -> bool:
    """True when ``root`` holds :data:`MARKER` (a folder left by an interrupted extraction holds none)."""
    return (Path(root) / MARKER).is_file()


def marker_info(root: str | os.PathLike) -> dict:
    """The fields of ``root``'s :data:`MARKER` ({} without one, or for an unreadable one)."""
    try:
        return json.loads((Path(root) / MARKER).read_text())
    except (OSError, ValueError):
        return {}


def zip_members(archive: str | os.PathLike) -> list[str]:
    """Names of the files (not folders) in ``archive``; a damaged zip raises ``CorruptFileError`` and is deleted
    (as in :func:`extract_complete`: ``fetch`` would otherwise hand it back on the next call)."""
    archive = Path(archive)
    try:
        with zipfile.ZipFile(archive) as zf:
            return [m.filename for m in zf.infolist() if not m.is_dir()]
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        archive.unlink(missing_ok=True)
        raise CorruptFileError(archive, f"bad zip: {e}",
                               "it was deleted: run the download again (if it fails again, check the URL)") from e


def extract_complete(
    archive: str | os.PathLike,
    root: str | os.PathLike,
    rename: Callable[[str], str | None] = lambda name: name,
    required: tuple[str, ...] = (),
    progress: bool = True,
    fix: str = "delete it and download it again, or check the URL",
    rewrite: dict[str, Callable[[bytes], bytes]] | None = None,
    marker: dict | None = None,
) -> int:
    """Extract the members of ``archive`` that ``rename`` maps (to a path relative to ``root``) into ``root``,
    all or nothing; returns the number of files written.

    The members go to ``root.parent/.<root.name>.partial/`` (a leftover of an interrupted call is removed
    first); then the folder must hold as many files as were written and every path of ``required`` (what the
    loader needs); then :data:`MARKER` is written into it (archive name and size, member count, the checked
    paths) and it is renamed to ``root``. An existing ``root`` without the marker (half a folder from before
    markers existed) is moved aside and deleted only once the new folder is in place. A damaged archive is
    deleted (``fetch`` would otherwise hand it back on the next call) and raises ``CorruptFileError``; every
    failure is one line naming the file or folder; ``fix`` is the advice for an archive that lacks members.
    ``rewrite`` goes to :func:`unzip`; ``marker`` adds fields to the marker (what subset was kept, read back by
    :func:`marker_info`).
    """
    archive, root = Path(archive), Path(root)
    partial = root.parent / f".{root.name}.partial"
    try:
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
    except OSError as e:
        raise DataError(root.parent, f"cannot create {partial.name} ({e.strerror or e})",
                        "make the folder writable, or download into another one") from e
    try:
        written = unzip(archive, partial, rename, progress=progress, rewrite=rewrite)
    except CorruptFileError as e:
        shutil.rmtree(partial, ignore_errors=True)
        archive.unlink(missing_ok=True)
        raise CorruptFileError(archive, e.problem.removeprefix("cannot decode file (").removesuffix(")"),
                               "it was deleted: run the download again (if it fails again, check the URL)") from e
    except OSError as e:  # disk full, folder not writable
        shutil.rmtree(partial, ignore_errors=True)
        raise DataError(root, f"extracting {archive.name} failed ({e.strerror or e})",
                        "free space (or make the folder writable), then run again") from e
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    on_disk = sum(1 for p in partial.rglob("*") if p.is_file())
    missing = [name for name in required if not (partial / name).exists()]
    if written == 0 or on_disk != written or missing:
        shutil.rmtree(partial, ignore_errors=True)
        what = ("no member belongs in it" if written == 0 else
                f"{written} members written but {on_disk} files on disk" if on_disk != written else
                f"it lacks {', '.join(missing)}")
        raise DataError(archive, f"incomplete archive for {root.name} ({what})", fix)
    (partial / MARKER).write_text(json.dumps({
        "archive": archive.name, "archive_bytes": archive.stat().st_size, "members": written,
        "checked": list(required), "completed": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(marker or {}),
    }, indent=2))
    old = root.parent / f".{root.name}.old"
    if root.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(root, old)
    os.replace(partial, root)
    if old.exists():
        shutil.rmtree(old)
    return written
