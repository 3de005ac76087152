"""``rtsseg evaluate`` on a tiny CamVid-layout folder: JSON output and one-line errors."""

from __future__ import annotations

import json

import pytest
import torch

import data_fakes
from rtsseg.cli import main as cli_main
from rtsseg.models import build_backbone
from rtsseg.seg.decoders import make_decoder
from rtsseg.seg.train import load_segmenter, save_segmenter

KWARGS = {"img_size": 64, "depth": 2}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    bb = build_backbone("vit_small64", **KWARGS).eval()
    dec = make_decoder("attn_all", [192, 192, 192], 11, 6, embed_dim=8, fuse_dim=8)
    path = tmp_path_factory.mktemp("ck") / "segmenter.pt"
    save_segmenter(path, bb, KWARGS, dec, {"dataset": "camvid", "input_size": [16, 24], "seed": 0}, vit_blocks=[0, 0])
    return path


def test_roundtrip_rebuilds_the_same_model(checkpoint):
    model, config = load_segmenter(checkpoint)
    again, _ = load_segmenter(checkpoint)
    x = torch.randint(0, 256, (2, 3, 16, 24), dtype=torch.uint8)
    assert model(x).shape == (2, 11, 2, 3)
    assert torch.equal(model(x), again(x))
    assert config["backbone"] == "vit_small64" and config["decoder"]["kind"] == "attn_all"  # the registered name


def test_evaluate_prints_json(tmp_path, checkpoint, capsys):
    root = data_fakes.make_camvid(tmp_path / "CamVid")
    assert cli_main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(root), "--split", "val"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["num_images"] == 2 and out["split"] == "val"
    assert set(out["per_class_IoU"]) >= {"Sky", "Road", "Bicyclist"} and len(out["per_class_IoU"]) == 11
    assert 0 <= out["mIoU"] <= 1 and 0 <= out["pixel_accuracy"] <= 1
    assert out["config"]["backbone"] == "vit_small64" and out["config"]["input_size"] == [16, 24]
    # a data root above the CamVid folder works too
    (tmp_path / "root").mkdir()
    data_fakes.make_camvid(tmp_path / "root" / "camvid")
    assert cli_main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(tmp_path / "root"),
                     "--split", "train"]) == 0
    assert json.loads(capsys.readouterr().out)["num_images"] == 3


def _error(capsys, argv) -> str:
    assert cli_main(["evaluate", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rtsseg evaluate: error:") and "\n" not in err
    return err


def test_clear_errors(tmp_path, checkpoint, capsys):
    root = data_fakes.make_camvid(tmp_path / "CamVid")
    ck = str(checkpoint)
    assert "missing data" in _error(capsys, ["--checkpoint", ck, "--data", str(root), "--split", "test"])
    (tmp_path / "empty").mkdir()
    assert "empty" in _error(capsys, ["--checkpoint", ck, "--data", str(tmp_path / "empty"), "--split", "val"])
    (root / "val.txt").write_text("val/nothere.png valannot/nothere.png\n")  # a split list naming absent files
    assert "nothere" in _error(capsys, ["--checkpoint", ck, "--data", str(root), "--split", "val"])
    err = _error(capsys, ["--checkpoint", ck, "--data", str(root), "--split", "train", "--backbone", "swin_small64"])
    assert "vit_small64" in err and "swin_small64" in err
    other = tmp_path / "pretrain.pt"
    torch.save({"model": build_backbone("botnet_small").state_dict(), "epoch": 1}, other)
    assert "not a segmentation checkpoint" in _error(capsys, ["--checkpoint", str(other), "--data", str(root),
                                                              "--split", "train"])
    bad = torch.load(checkpoint, weights_only=True)
    bad["backbone_state"] = build_backbone("vit_small64", img_size=64).state_dict()  # 6 blocks, not 2
    torch.save(bad, tmp_path / "mixed.pt")
    assert "do not fit" in _error(capsys, ["--checkpoint", str(tmp_path / "mixed.pt"), "--data", str(root),
                                           "--split", "train"])
    coco = data_fakes.make_cocostuff(tmp_path / "cocostuff")
    assert "--dataset" in _error(capsys, ["--checkpoint", ck, "--data", str(coco), "--split", "val2017",
                                          "--dataset", "cocostuff27"])


def test_decoder_path_on_cocostuff_layout(tmp_path, capsys):
    """COCO-Stuff-27 (gpu profile's data set) end to end on a synthetic folder: cache, train, save, evaluate."""
    from rtsseg.data.cocostuff import COCOStuff
    from rtsseg.data.transforms import ImageOnlyResize
    from rtsseg.seg.train import cached_outputs, evaluate_store, train_decoder

    coco = data_fakes.make_cocostuff(tmp_path / "cocostuff")
    ds = COCOStuff(coco, "val2017", coarse=True, transform=ImageOnlyResize((16, 16)))
    bb = build_backbone("swin_small64", img_size=64).eval()
    store = cached_outputs(bb, ds, {"dataset": "cocostuff27", "split": "val2017", "input_size": [16, 16]},
                           tmp_path / "cache", batch_size=2)
    assert len(store) == 2 and store.in_dims == [48, 96, 192]
    dec = make_decoder("control", store.in_dims, 27, store.num_heads, embed_dim=8, fuse_dim=8)
    dec, hist = train_decoder(dec, store, 27, epochs=2, batch_size=2, lr=1e-2)
    assert len(hist) == 2 and hist[-1]["ce"] > 0
    path = save_segmenter(tmp_path / "seg.pt", bb, {"img_size": 64}, dec,
                          {"dataset": "cocostuff27", "input_size": [16, 16]})
    assert cli_main(["evaluate", "--checkpoint", str(path), "--data", str(tmp_path), "--split", "val2017",
                     "--dataset", "cocostuff27"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["num_images"] == 2 and len(out["per_class_IoU"]) == 27
    assert out["mIoU"] == pytest.approx(evaluate_store(dec, store, 27).miou, abs=0.02)  # cache holds fp16 features


@pytest.mark.parametrize("kind", ["frozen decoder", "fine-tuned"])
def test_evaluate_rescores_a_trained_model_of_each_kind(tmp_path, capsys, kind):
    """A decoder trained on a frozen backbone's cache and a fine-tuned backbone + decoder
    (``rtsseg.seg.finetune``), each saved with ``save_segmenter``: ``rtsseg evaluate`` on the CamVid-layout
    folder gives the val mIoU the training code measured (the cache holds fp16 features: approximately)."""
    from rtsseg.data.camvid import CamVid
    from rtsseg.data.transforms import ImageOnlyResize
    from rtsseg.seg import finetune as ft
    from rtsseg.seg.train import cached_outputs, evaluate_store, train_decoder

    root = data_fakes.make_camvid(tmp_path / "CamVid")
    size = (16, 24)
    train = CamVid(root, "train", transform=ImageOnlyResize(size))
    val = CamVid(root, "val", transform=ImageOnlyResize(size))
    torch.manual_seed(0)
    bb = build_backbone("vit_small64", **KWARGS).eval()
    config = {"dataset": "camvid", "input_size": list(size)}
    if kind == "frozen decoder":
        pre = {"dataset": "camvid", "input_size": list(size)}
        fit = cached_outputs(bb, train, {**pre, "split": "train"}, tmp_path / "cache", batch_size=2, vit_blocks=[0, 0])
        held = cached_outputs(bb, val, {**pre, "split": "val"}, tmp_path / "cache", batch_size=2, vit_blocks=[0, 0])
        dec = make_decoder("attn_all", fit.in_dims, 11, fit.num_heads, embed_dim=8, fuse_dim=8)
        dec, _ = train_decoder(dec, fit, 11, epochs=2, batch_size=2, lr=1e-2)
        expected, tol = evaluate_store(dec, held, 11).miou, 0.02
        path = save_segmenter(tmp_path / "seg.pt", bb, KWARGS, dec, config, vit_blocks=[0, 0])
    else:
        cfg = ft.FinetuneConfig(epochs=2, batch_size=2, label_stride=1, patience=None, embed_dim=8, fuse_dim=8,
                                lr=1e-2, backbone_lr_scale=1.0, vit_blocks=[0, 0])
        fit, vimg = ft.materialise(train), ft.materialise(val)
        start = bb.state_dict()["model.blocks.1.attn.qkv.weight"].clone()
        seg, _ = ft.finetune(bb, fit, fit, 11, cfg, seed=0, attention_loss_weight=0.5)
        assert not torch.equal(seg.backbone.state_dict()["model.blocks.1.attn.qkv.weight"], start)  # it moved
        expected, tol = ft.score_split(seg.backbone, seg.decoder, *vimg, 11, vit_blocks=[0, 0]).miou, 1e-6
        path = save_segmenter(tmp_path / "seg.pt", seg.backbone, KWARGS, seg.decoder, {**config, "finetuned": True},
                              vit_blocks=[0, 0])
    assert cli_main(["evaluate", "--checkpoint", str(path), "--data", str(root), "--split", "val"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["num_images"] == 2 and out["mIoU"] == pytest.approx(expected, abs=tol)
