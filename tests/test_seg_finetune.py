"""Fine-tuned attention (rtsseg.seg.finetune): which weights move, the two arms' pairing, the paired table."""

from __future__ import annotations

import functools
import math

import pandas as pd
import pytest
import torch
from torch.utils.data import TensorDataset

from rtsseg.models import build_backbone
from rtsseg.seg import finetune as ft

KWARGS = {"img_size": 64, "depth": 3}
CFG = ft.FinetuneConfig(epochs=2, batch_size=2, label_stride=1, patience=None, embed_dim=8, fuse_dim=8, lr=1e-2,
                        backbone_lr_scale=1.0, attention_loss_weight=1.0)


def halves(n=4, seed=0):
    """Images with masks whose every token is pure (left half class 0, right half class 1): the
    attention-supervision loss has targets on every token."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    masks = torch.zeros(n, 32, 32, dtype=torch.uint8)
    masks[:, :, 16:] = 1
    masks[1::2] = 1 - masks[1::2]  # every other image mirrored
    return images, masks


def backbone(seed=0):
    torch.manual_seed(seed)
    return build_backbone("vit_small64", **KWARGS).eval()


def test_unfreeze_last_blocks_trains_only_the_tail():
    bb = backbone()
    names = ft.unfreeze_last_blocks(bb, 1)
    assert ft.block_names(bb) == ["model.blocks.0", "model.blocks.1", "model.blocks.2"]
    assert names and all(n.startswith(("model.blocks.2.", "model.norm", "model.fc_norm", "model.head")) for n in names)
    assert any(n.startswith("model.norm") for n in names)  # the final norm after the last block trains too
    frozen = [n for n, p in bb.named_parameters() if not p.requires_grad]
    assert any(n.startswith("model.blocks.1.") for n in frozen) and "model.pos_embed" in frozen
    assert set(ft.unfreeze_last_blocks(bb, 3)) > set(names)
    for bad in (0, 4):
        with pytest.raises(ValueError, match="unfreeze_blocks"):
            ft.unfreeze_last_blocks(bb, bad)


def test_finetune_moves_the_unfrozen_attention_only_and_the_loss_moves_it_differently():
    data = halves()
    base = backbone()
    start = {k: v.clone() for k, v in base.state_dict().items()}
    a, hist_a = ft.finetune(backbone(), data, data, 2, CFG, seed=0, attention_loss_weight=0.0)
    b, hist_b = ft.finetune(backbone(), data, data, 2, CFG, seed=0, attention_loss_weight=1.0)
    again, hist_again = ft.finetune(backbone(), data, data, 2, CFG, seed=0, attention_loss_weight=0.0)
    sa, sb = a.backbone.state_dict(), b.backbone.state_dict()
    assert torch.equal(sa["model.blocks.0.attn.qkv.weight"], start["model.blocks.0.attn.qkv.weight"])  # frozen
    assert torch.equal(sa["model.blocks.1.attn.qkv.weight"], start["model.blocks.1.attn.qkv.weight"])
    assert not torch.equal(sa["model.blocks.2.attn.qkv.weight"], start["model.blocks.2.attn.qkv.weight"])
    # same seed, same data, same settings: the same run; the loss is the only difference between the arms
    assert all(torch.equal(v, again.backbone.state_dict()[k]) for k, v in sa.items())
    assert [h["ce"] for h in hist_a] == [h["ce"] for h in hist_again]
    assert all(h["attn_loss"] == 0 for h in hist_a) and all(h["attn_loss"] > 0 for h in hist_b)
    assert not torch.equal(sa["model.blocks.2.attn.qkv.weight"], sb["model.blocks.2.attn.qkv.weight"])
    assert len(hist_a) == 2 and 0 <= hist_a[-1]["holdout_miou"] <= 1


def test_finetune_keeps_the_best_held_out_epoch(monkeypatch):
    """Early stopping: the returned weights are those of the best held-out epoch, and patience stops the run."""
    scores = iter([0.5, 0.7, 0.6, 0.4, 0.3])
    snapshots = []
    real = ft.score_split

    def fake(backbone, decoder, *args, **kwargs):
        snapshots.append({k: v.clone() for k, v in decoder.state_dict().items()})
        real(backbone, decoder, *args, **kwargs)
        return type("S", (), {"miou": next(scores)})()

    monkeypatch.setattr(ft, "score_split", fake)
    data = halves()
    cfg = ft.FinetuneConfig(**{**CFG.__dict__, "epochs": 5, "patience": 2})
    seg, hist = ft.finetune(backbone(), data, data, 2, cfg, seed=0)
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]  # epochs 3, 4 no better than 2: stop before 5
    assert all(torch.equal(v, snapshots[1][k]) for k, v in seg.decoder.state_dict().items())


def test_attention_loss_needs_propagation():
    data = halves()
    cfg = ft.FinetuneConfig(**{**CFG.__dict__, "decoder": "mlp"})
    with pytest.raises(ValueError, match="FinetuneConfig.decoder"):
        ft.finetune(backbone(), data, data, 2, cfg, seed=0, attention_loss_weight=1.0)


def test_paired_table_by_hand():
    from scipy import stats

    rows = pd.DataFrame({
        "seed": [0, 0, 1, 1, 2, 2], "arm": ["no loss", "attention loss"] * 3,
        "mIoU": [0.30, 0.33, 0.28, 0.32, 0.31, 0.345], "things mIoU": [0.1, 0.1, 0.2, 0.2, 0.3, 0.3],
        "excess before": [0.01, 0.01, 0.02, 0.02, 0.00, 0.00],
        "excess after": [0.02, 0.05, 0.02, 0.06, 0.01, 0.07]})
    table, ivs = ft.paired_table(rows)
    t = table.set_index("quantity")
    d = [0.03, 0.04, 0.035]  # attention loss − no loss, per seed: t interval [+0.023, +0.047]
    m, s = sum(d) / 3, pd.Series(d).std()
    half = stats.t.ppf(0.975, 2) * s / math.sqrt(3)
    row = t.loc["val mIoU: attention loss − no loss"]
    assert row["mean"] == pytest.approx(m) and row["lo"] == pytest.approx(m - half) and row["n"] == 3
    assert row["verdict"] == "above"
    assert t.loc["things mIoU: attention loss − no loss", "verdict"] == "no measurable difference"  # all 0
    assert t.loc["excess AUROC: attention loss, after − before", "mean"] == pytest.approx((0.04 + 0.04 + 0.07) / 3)
    assert t.loc["excess AUROC: no loss, after − before", "mean"] == pytest.approx((0.01 + 0.0 + 0.01) / 3)
    assert t.loc["excess AUROC after: attention loss − no loss", "mean"] == pytest.approx((0.03 + 0.04 + 0.06) / 3)
    assert ivs["val mIoU: attention loss − no loss"].method == "t"


def test_finetune_pair_end_to_end(tmp_path):
    from rtsseg.analysis.attention import excess_result
    from rtsseg.attention.groundtruth import GroundTruthSet
    from rtsseg.seg.train import load_segmenter

    images, masks = halves(6)
    sets = {k: TensorDataset(images, masks) for k in ("fit", "holdout", "val")}
    g = torch.Generator().manual_seed(1)
    gimg = torch.randint(0, 256, (8, 3, 32, 32), generator=g, dtype=torch.uint8)
    gts = torch.zeros(8, 32, 32, dtype=torch.bool)
    for i in range(8):
        gts[i, 4 * (i % 4): 4 * (i % 4) + 12, 8:20] = True
    gset = GroundTruthSet("fake frames", gimg, gts, torch.arange(8))
    cfg = ft.FinetuneConfig(**{**CFG.__dict__, "epochs": 1})
    pair = ft.finetune_pair(backbone, sets, 2, [0, 1], gset, functools.partial(excess_result, n_boot=50), cfg,
                            things=[1], save_dir=tmp_path, backbone_kwargs=KWARGS)
    rows = pair.rows
    assert len(rows) == 4 and list(rows.arm[:2]) == list(ft.ARMS)
    for _, r in rows.groupby("seed"):
        assert r["excess before"].nunique() == 1  # one start per seed, shared by both arms
    assert set(pair.differences.quantity) == set(ft.DIFFERENCES) and (pair.differences.n == 2).all()
    # the things mIoU of class 1 only is its IoU; the saved model re-scores to the reported val mIoU
    seg, config = load_segmenter(rows.checkpoint[1])
    assert config["finetuned"] and config["arm"] == rows.arm[1] and config["unfreeze_blocks"] == 1
    s = ft.score_split(seg.backbone, seg.decoder, images, masks, 2)
    assert s.miou == pytest.approx(rows.mIoU[1], abs=1e-6)
    assert rows["things mIoU"][1] == pytest.approx(s.iou[1], abs=1e-6)
    # the fine-tuned backbone differs from the start; the no-loss arm's excess is measured on its own weights
    start = backbone(0).state_dict()
    assert not torch.equal(seg.backbone.state_dict()["model.blocks.2.attn.qkv.weight"],
                           start["model.blocks.2.attn.qkv.weight"])


def test_script_help():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "finetune_attention.py"
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--unfreeze-blocks" in out.stdout and "--attention-loss-weight" in out.stdout
    args = __import__("runpy").run_path(str(script))["parse_args"](["--seeds", "0", "1", "--unfreeze-blocks", "2"])
    assert args.seeds == [0, 1] and args.unfreeze_blocks == 2 and args.decoder == "attn_all"
