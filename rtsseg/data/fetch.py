"""Download primitives shared by the data sets' downloaders: ``fetch`` (URL -> file) and ``unzip``.

They live apart from the dispatcher :mod:`rtsseg.data.download` so that ``camvid``, ``tinyimagenet`` and
``cocostuff`` import them without importing back into the module that imports them (no import cycle).
"""

from __future__ import annotations

import os
import shutil
import urllib.request
import zipfile
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
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    try:
        with urllib.request.urlopen(url) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=path.name, disable=not progress) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
    except OSError as e:  # URLError, HTTPError, disk full
        part.unlink(missing_ok=True)
        raise DataError(url, f"download failed ({e})", "check the network and the URL, then run again") from e
    os.replace(part, path)
    return path


def unzip(
    archive: str | os.PathLike,
    dest: str | os.PathLike,
    rename: Callable[[str], str | None] = lambda name: name,
    progress: bool = True,
) -> int:
    """Extract ``archive`` into ``dest``; ``rename(member) -> relative path | None`` (None skips it).

    Returns the number of files written. Members escaping ``dest`` are refused.
    """
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
                with zf.open(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
                written += 1
    except zipfile.BadZipFile as e:
        raise CorruptFileError(archive, f"bad zip: {e}", "delete the file and download it again") from e
    return written
