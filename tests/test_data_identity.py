"""A run belongs to its data (issue 17, part 2): another data set never resumes or reuses a run; the same data in
another folder is the same run (paths are not data)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from data_fakes import make_camvid, make_tiny_imagenet
from model_fakes import register_fakes
from rtsseg.data.camvid import CamVid
from rtsseg.data.tinyimagenet import TinyImageNet
from rtsseg.ssl import train as bt
from rtsseg.ssl.dino_train import DinoConfig, identity_config
from rtsseg.ssl.supervised import SupervisedConfig, data_fingerprint as supervised_fingerprint

register_fakes()


def _bt(root: Path, parent: Path, **kw) -> bt.PretrainConfig:
    base = dict(backbone="tiny_test", data="tinyimagenet", data_root=str(root), cache_dir=str(parent / "cache"),
                image_size=32, batch_size=4, epochs=1, projector_dims=(8, 8), warmup_epochs=0,
                knn_train_per_class=1, knn_val_per_class=1, device="cpu", progress=False, num_threads=1,
                run_parent=str(parent / "runs"), amp="none")
    return bt.PretrainConfig(**{**base, **kw})


def test_fingerprint_sees_counts_and_labels_not_paths(tmp_path):
    two = make_tiny_imagenet(tmp_path / "two" / "tiny-imagenet-200", per_class=2)
    three = make_tiny_imagenet(tmp_path / "three" / "tiny-imagenet-200", per_class=3)
    moved = tmp_path / "elsewhere" / "copy" / "tiny-imagenet-200"
    shutil.copytree(two, moved)
    fp = {k: TinyImageNet(r, "train").fingerprint() for k, r in (("two", two), ("three", three), ("moved", moved))}
    assert fp["two"] != fp["three"] and fp["two"]["files"] == 6 and fp["three"]["files"] == 9
    assert fp["two"] == fp["moved"]  # the same files elsewhere: the same data
    # first n per class, as the loader reads them, from one listing
    assert TinyImageNet(three, "train").fingerprint(2) == TinyImageNet(three, "train", 2).fingerprint()
    with pytest.raises(ValueError, match="max_per_class=None"):
        TinyImageNet(three, "train", 2).fingerprint(3)
    # a moved box (same size) and a relabelled val image are other data
    boxes = moved / "train" / "n00000001" / "n00000001_boxes.txt"
    boxes.write_text(boxes.read_text().replace("\t40\t", "\t41\t", 1))
    assert TinyImageNet(moved, "train").fingerprint() != fp["two"]
    val_before = TinyImageNet(two, "val").fingerprint()
    ann = two / "val" / "val_annotations.txt"
    ann.write_text(ann.read_text().replace("n00000001", "n00000002", 1))
    assert TinyImageNet(two, "val").fingerprint() != val_before


def test_barlow_twins_on_another_data_set_is_a_new_run_and_the_same_data_elsewhere_is_the_same(tmp_path, capsys):
    torch.set_num_threads(1)
    a = make_tiny_imagenet(tmp_path / "a" / "tiny-imagenet-200", per_class=2).parent
    first = bt.pretrain(_bt(a, tmp_path))
    capsys.readouterr()
    # the same command on a folder with 3 train images per class: trains a new run, resumes nothing
    b = make_tiny_imagenet(tmp_path / "b" / "tiny-imagenet-200", per_class=3).parent
    second = bt.pretrain(_bt(b, tmp_path))
    err = capsys.readouterr().err
    assert second != first and "resumed" not in err and "finished run" not in err
    assert torch.load(second / "checkpoint.pt", weights_only=True)["config"]["data_fingerprint"]["train"]["files"] == 9
    # the first data set copied to another path: the finished first run, not trained again
    c = tmp_path / "c" / "deeper"
    shutil.copytree(a, c)
    assert bt.pretrain(_bt(c, tmp_path)) == first
    assert "finished run" in capsys.readouterr().err
    # a changed label file (val annotations: the k-NN monitor's queries) is another run
    ann = c / "tiny-imagenet-200" / "val" / "val_annotations.txt"
    ann.write_text(ann.read_text().replace("n00000001", "n00000003", 1))
    assert bt.run_config({}, _bt(c, tmp_path), "cpu") != bt.run_config({}, _bt(a, tmp_path), "cpu")


def test_every_trainer_puts_data_and_precision_in_its_identity(tmp_path):
    two = make_tiny_imagenet(tmp_path / "two" / "tiny-imagenet-200", per_class=2).parent
    three = make_tiny_imagenet(tmp_path / "three" / "tiny-imagenet-200", per_class=3).parent
    d2, d3 = DinoConfig(data_root=str(two), knn_train_per_class=1), DinoConfig(data_root=str(three), knn_train_per_class=1)
    i2, i3 = bt.run_config(identity_config(d2), d2, "cpu"), bt.run_config(identity_config(d3), d3, "cpu")
    assert i2["data_fingerprint"] != i3["data_fingerprint"] and i2["precision"] in ("fp32", "bf16")
    s2 = SupervisedConfig(data_dir=str(two / "tiny-imagenet-200"), val_per_class=1)
    s3 = SupervisedConfig(data_dir=str(three / "tiny-imagenet-200"), val_per_class=1)
    assert supervised_fingerprint(s2) != supervised_fingerprint(s3)
    none = bt.run_config({}, _bt(two, tmp_path, amp="none"), "cpu")
    bf16 = bt.run_config({}, _bt(two, tmp_path, amp="bf16"), "cpu")
    assert none["precision"] == "fp32" and bf16["precision"] == "bf16"  # a bf16 run is another run


def test_camvid_fingerprint_sees_a_relabelled_frame(tmp_path):
    root = make_camvid(tmp_path / "CamVid")
    before = CamVid(root, "train").fingerprint()
    moved = tmp_path / "x" / "CamVid"
    shutil.copytree(root, moved)
    assert CamVid(moved, "train").fingerprint() == before
    label = moved / "trainannot" / "f0.png"
    from PIL import Image
    import numpy as np

    m = np.array(Image.open(label))
    m[0, 0] = (int(m[0, 0]) + 1) % 11
    Image.fromarray(m).save(label)
    assert CamVid(moved, "train").fingerprint() != before
