"""Affinity capture against capture.py, the output cache's identity, decoder training, carving, resume."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

import rtsseg.seg.train as segtrain
from rtsseg.attention.capture import capture_attention_weights, grid_maps, swin_maps
from rtsseg.models import build_backbone
from rtsseg.seg.affinity import backbone_outputs, swin_full_affinity
from rtsseg.seg.decoders import make_decoder
from rtsseg.seg.train import (
    carve_by_sequence,
    cached_outputs,
    evaluate_store,
    train_decoder,
)


@pytest.fixture(scope="module")
def backbones():
    torch.manual_seed(0)
    return {n: build_backbone(n, img_size=64).eval() for n in ("vit_small64", "swin_small64", "botnet_small")}


@pytest.mark.parametrize("name", ["vit_small64", "swin_small64", "botnet_small"])
def test_affinity_rows_equal_capture_queries(backbones, name):
    """Every row of the full affinity, put on the grid, is capture.py's (row, col) query map."""
    bb = backbones[name]
    x = torch.randn(2, 3, 48, 64)
    out = backbone_outputs(bb, x)
    h, w = out.grid
    assert out.affinity.shape[-1] == h * w and out.maps.shape[-2:] == (h, w)
    assert torch.allclose(out.affinity.sum(-1), torch.ones(()), atol=1e-5)
    assert out.stages[-1].shape[-2:] == bb.forward_features(x).shape[-2:]
    rec = capture_attention_weights(bb, x)
    for r, c in [(0, 0), (h - 1, w - 1), (h // 2, 1)]:
        if name == "swin_small64":
            ref = swin_maps(rec["attn"], 2, rec["grid"], rec["window"], rec["shift"], (r, c))
        else:
            ref = grid_maps(rec["attn"], rec["grid"], rec.get("num_prefix_tokens", 0), (r, c))
        assert torch.allclose(out.affinity[:, :, r * w + c].reshape(2, -1, h, w), ref, atol=1e-5)


def test_swin_affinity_with_shifted_padded_windows(backbones):
    bb = backbones["swin_small64"]
    x = torch.randn(1, 3, 40, 56)  # stage-2 grid 10x14: padding to 16x16 windows of 8
    layer = "model.layers.1.blocks.0.attn"
    rec = capture_attention_weights(bb, x, layer)
    full = swin_full_affinity(rec["attn"], 1, rec["grid"], rec["window"], (3, 3))
    assert torch.allclose(full.sum(-1), torch.ones(()), atol=1e-5)
    h, w = rec["grid"]
    for r, c in [(0, 0), (h - 1, w - 1), (5, 9)]:
        ref = swin_maps(rec["attn"], 1, rec["grid"], rec["window"], (3, 3), (r, c))
        assert torch.allclose(full[:, :, r * w + c].reshape(1, -1, h, w), ref, atol=1e-5)


def test_carve_by_sequence_holds_out_contiguous_tail_of_each_sequence():
    stems = [f"A_{i:03d}" for i in range(10)] + [f"B_{i:03d}" for i in range(5)]
    train, held = carve_by_sequence(stems, 0.2)
    assert [stems[i] for i in held] == ["A_008", "A_009", "B_004"]
    assert sorted(train + held) == list(range(15))


def tiny_dataset(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    masks = torch.randint(0, 3, (n, 40, 40), generator=g)
    masks[:, :4] = 255
    return TensorDataset(images, masks)


def test_cache_reused_and_invalidated(tmp_path, monkeypatch, backbones):
    bb = build_backbone("vit_small64", img_size=64).eval()
    data = tiny_dataset()
    calls = []
    real = segtrain.compute_outputs
    monkeypatch.setattr(segtrain, "compute_outputs", lambda *a, **k: calls.append(1) or real(*a, **k))
    pre = {"dataset": "fake", "split": "train", "input_size": [32, 32]}
    first = cached_outputs(bb, data, pre, tmp_path)
    again = cached_outputs(bb, data, pre, tmp_path)
    assert len(calls) == 1 and len(list(tmp_path.glob("*.pt"))) == 1
    assert torch.equal(first.affinity[0], again.affinity[0]) and torch.equal(first.masks[3], again.masks[3])
    cached_outputs(bb, data, {**pre, "input_size": [32, 48]}, tmp_path)  # preprocessing changed
    assert len(calls) == 2
    with torch.no_grad():
        bb.model.blocks[0].mlp.fc1.weight.add_(0.01)  # weights changed
    cached_outputs(bb, data, pre, tmp_path)
    assert len(calls) == 3
    monkeypatch.setattr(segtrain, "code_digest", lambda *a: "other code")  # code changed
    cached_outputs(bb, data, pre, tmp_path)
    assert len(calls) == 4 and len(list(tmp_path.glob("*.pt"))) == 4


def test_training_learns_resumes_and_stops_early(tmp_path):
    bb = build_backbone("vit_small64", img_size=64, depth=2).eval()
    store = segtrain.compute_outputs(bb, tiny_dataset(6), batch_size=3)
    val = segtrain.compute_outputs(bb, tiny_dataset(3, seed=1), batch_size=3)
    dec = make_decoder("attn_all", store.in_dims, 3, store.num_heads, embed_dim=8, fuse_dim=8)
    dec, hist = train_decoder(dec, store, 3, val=val, epochs=4, lr=1e-2, batch_size=3, label_stride=2,
                              run_parent=tmp_path / "a")
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4] and hist[-1]["ce"] < hist[0]["ce"]
    best = max(h["val_miou"] for h in hist)  # held-out mIoU is scored at the label stride
    assert evaluate_store(dec, val, 3, label_stride=2).miou == pytest.approx(best)  # best state kept
    # resume: 2 epochs, then the same run to 4 epochs equals the uninterrupted one
    d1 = make_decoder("attn_all", store.in_dims, 3, store.num_heads, embed_dim=8, fuse_dim=8)
    torch.manual_seed(5)
    d2 = make_decoder("attn_all", store.in_dims, 3, store.num_heads, embed_dim=8, fuse_dim=8)
    d2.load_state_dict(d1.state_dict())
    full, _ = train_decoder(d1, store, 3, epochs=4, lr=1e-2, batch_size=3, run_parent=tmp_path / "b")
    from rtsseg.rundir import latest_run

    assert torch.load(latest_run(tmp_path / "b") / "checkpoint.pt", weights_only=True)["epoch"] == 4
    _, h1 = train_decoder(d2, store, 3, epochs=4, lr=1e-2, batch_size=3, run_parent=tmp_path / "c", stop_after=2)
    assert len(h1) == 2
    d3 = make_decoder("attn_all", store.in_dims, 3, store.num_heads, embed_dim=8, fuse_dim=8)  # fresh process
    part, h2 = train_decoder(d3, store, 3, epochs=4, lr=1e-2, batch_size=3, run_parent=tmp_path / "c")
    assert [h["epoch"] for h in h2] == [1, 2, 3, 4]
    for k, v in full.state_dict().items():
        assert torch.allclose(v.float(), part.state_dict()[k].float(), atol=1e-6), k


def test_state_digest_covers_buffers_and_scalars():
    from rtsseg.seg.train import state_digest

    bn = torch.nn.BatchNorm2d(3)  # num_batches_tracked is a 0-dim int64 buffer
    before = state_digest(bn)
    bn.running_mean += 1
    assert state_digest(bn) != before
    bn.running_mean -= 1
    assert state_digest(bn) == before
    bn.num_batches_tracked += 1
    assert state_digest(bn) != before


@pytest.mark.parametrize("size,stride", [((40, 40), 2), ((37, 50), 3), ((360, 480), 4), ((9, 7), 1)])
def test_strided_logits_equal_interpolate_then_slice(size, stride):
    import torch.nn.functional as F

    from rtsseg.seg.train import strided_logits

    logits = torch.randn(2, 5, 6, 8, dtype=torch.float64)
    ref = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)[..., ::stride, ::stride]
    assert torch.allclose(strided_logits(logits, size, stride), ref, atol=1e-10)


def test_training_with_the_attention_supervision_loss():
    bb = build_backbone("vit_small64", img_size=64, depth=2).eval()
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    masks = torch.zeros(4, 32, 32, dtype=torch.long)
    masks[:, :, 16:] = 1  # left half class 0, right half class 1: every token is pure
    store = segtrain.compute_outputs(bb, TensorDataset(images, masks))
    dec = make_decoder("attn_all", store.in_dims, 2, store.num_heads, embed_dim=8, fuse_dim=8)
    _, hist = train_decoder(dec, store, 2, epochs=2, lr=1e-2, batch_size=2, attention_loss_weight=1.0)
    assert all(h["attn_loss"] > 0 for h in hist)
    with pytest.raises(ValueError, match="propagate"):
        train_decoder(make_decoder("mlp", store.in_dims, 2, store.num_heads), store, 2, epochs=1,
                      attention_loss_weight=1.0)
