from __future__ import annotations

import pytest

from data_fakes import make_tiny_imagenet, write_zip, zip_tree
from rtsseg.data.download import download, fetch, main, unzip
from rtsseg.errors import CorruptFileError, DataError


def test_fetch_file_url_and_keep_existing(tmp_path):
    (tmp_path / "src.bin").write_bytes(b"abc" * 1000)
    out = fetch((tmp_path / "src.bin").as_uri(), tmp_path / "d" / "out.bin", progress=False)
    assert out.read_bytes() == b"abc" * 1000 and not (tmp_path / "d" / "out.bin.part").exists()
    (tmp_path / "src.bin").unlink()
    assert fetch((tmp_path / "src.bin").as_uri(), out, progress=False) == out  # not fetched again
    with pytest.raises(DataError, match="download failed"):
        fetch((tmp_path / "src.bin").as_uri(), tmp_path / "d" / "new.bin", progress=False)


def test_unzip_rename_skip_and_refuse_escape(tmp_path):
    archive = write_zip(tmp_path / "a.zip", {"top/x.txt": b"x", "top/y.txt": b"y", "../evil.txt": b"!"})
    keep = unzip(archive, tmp_path / "out", lambda n: n.replace("top/", "kept/") if n.endswith("x.txt") else None,
                 progress=False)
    assert keep == 1 and (tmp_path / "out" / "kept" / "x.txt").read_bytes() == b"x"
    with pytest.raises(DataError, match="escapes"):
        unzip(archive, tmp_path / "out2", progress=False)
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(CorruptFileError, match="bad.zip"):
        unzip(tmp_path / "bad.zip", tmp_path / "out3", progress=False)


def test_download_dispatch(tmp_path):
    with pytest.raises(ValueError, match="unknown data set"):
        download("imagenet", tmp_path)
    src = make_tiny_imagenet(tmp_path / "src" / "tiny-imagenet-200", per_class=1, val_per_class=1)
    archive = zip_tree(tmp_path / "t.zip", src, "tiny-imagenet-200")
    root = download("Tiny-ImageNet", tmp_path / "dest", url=archive.as_uri(), progress=False)
    assert (root / "wnids.txt").is_file()
    assert main(["tinyimagenet", str(tmp_path / "dest")]) == root  # already there: nothing fetched
