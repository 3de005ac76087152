"""Attention capture: rows sum to 1, ViT CLS attention equals a manual softmax(qk^T/sqrt(d)), outputs unchanged,
Swin windows re-assembled on the grid (shift undone), BoTNet maps."""

from __future__ import annotations

import pytest
import torch

from rtsseg.attention.capture import (capture_attention, capture_attention_weights, swin_maps, window_token_index)
from rtsseg.models import build_backbone


def _build(name: str):
    torch.manual_seed(0)
    return build_backbone(name).eval()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name,layer", [("vit_small64", 0), ("vit_small64", None), ("swin_small64", 0),
                                        ("swin_small64", 1), ("swin_small64", None), ("botnet_small", 0),
                                        ("botnet_small", None)])
def test_rows_and_maps_sum_to_one(name: str, layer, x) -> None:
    b = _build(name)
    attn = capture_attention_weights(b, x, layer)["attn"]
    assert torch.allclose(attn.sum(-1), torch.ones(()), atol=1e-5)
    for query in [None, "received", (3, 5)]:
        maps = capture_attention(b, x, layer, query=query)
        assert maps.shape[:2] == (2, attn.shape[1]) and (maps >= 0).all()
        assert torch.allclose(maps.sum(dim=(-2, -1)), torch.ones(()), atol=1e-5)


@pytest.mark.parametrize("name", ["vit_small64", "swin_small64", "botnet_small"])
def test_capture_leaves_outputs_and_flags_unchanged(name: str, x) -> None:
    b = _build(name)
    layer = b.attention_layers()[-1]
    module = dict(b.named_modules())[layer]
    module.fused_attn = True  # as with timm's default fused attention
    with torch.no_grad():
        before = b(x)
    rec = capture_attention_weights(b, x)
    assert module.fused_attn is True
    assert torch.allclose(rec["output"], before, atol=1e-5)
    with torch.no_grad():
        assert torch.equal(b(x), before)


def test_vit_cls_attention_equals_manual_softmax(x) -> None:
    b = _build("vit_small64")
    block = b.model.blocks[2]
    seen = {}
    handle = block.register_forward_pre_hook(lambda m, a: seen.__setitem__("x", a[0]))
    rec = capture_attention_weights(b, x, layer=2)
    handle.remove()
    attn_mod = block.attn
    t = block.norm1(seen["x"])  # [B, 1+N, C]
    bsz, n, c = t.shape
    q, k, _ = attn_mod.qkv(t).reshape(bsz, n, 3, attn_mod.num_heads, c // attn_mod.num_heads).permute(2, 0, 3, 1, 4)
    manual = (q @ k.transpose(-1, -2) / (c // attn_mod.num_heads) ** 0.5).softmax(-1)  # [B, heads, 1+N, 1+N]
    assert torch.allclose(rec["attn"], manual, atol=1e-5)
    maps = capture_attention(b, x, layer=2, query="cls")
    cls = manual[:, :, 0, 1:]
    assert torch.allclose(maps, (cls / cls.sum(-1, keepdim=True)).reshape(2, -1, 8, 8), atol=1e-5)


def test_window_index_undoes_shift() -> None:
    idx = window_token_index((4, 4), (2, 2), (1, 1))  # 4 windows of 4 tokens
    assert idx.shape == (4, 4)
    # token (0,0) moves to shifted (3,3): the last window holds original (3,3), (3,0), (0,3), (0,0)
    assert sorted(idx[3].tolist()) == sorted([3 * 4 + 3, 3 * 4 + 0, 0 * 4 + 3, 0])
    assert torch.equal(idx[0], torch.tensor([5, 6, 9, 10]))
    padded = window_token_index((3, 3), (2, 2), (0, 0))
    assert (padded == -1).sum() == 16 - 9


def test_swin_maps_known_answers() -> None:
    torch.manual_seed(0)
    attn = torch.rand(4, 2, 4, 4).softmax(-1)  # B=1, 4 windows, 2 heads
    maps = swin_maps(attn, 1, (4, 4), (2, 2), (1, 1), (0, 0))
    support = {(r, c) for r, c in (maps[0, 0] > 0).nonzero().tolist()}
    assert support == {(3, 3), (3, 0), (0, 3), (0, 0)}
    assert torch.allclose(maps[0, :, 0, 0], attn[3, :, 3, 3])  # (0,0) is the 4th token of the last window
    uniform = swin_maps(torch.full((4, 1, 4, 4), 0.25), 1, (4, 4), (2, 2), (1, 1), "received")
    assert torch.allclose(uniform, torch.full((1, 1, 4, 4), 1 / 16))


def test_swin_single_window_equals_window_map(x) -> None:
    """Last stage of swin_small64: window = full 8x8 grid, so the map is the single window's own map."""
    b = _build("swin_small64")
    rec = capture_attention_weights(b, x)
    assert rec["grid"] == (8, 8) and rec["window"] == (8, 8) and rec["shift"] == (0, 0)
    attn = rec["attn"]  # [B*1, heads, 64, 64]
    assert torch.allclose(capture_attention(b, x, query="received"), attn.mean(2).reshape(2, -1, 8, 8), atol=1e-6)
    row = attn[:, :, 2 * 8 + 6].reshape(2, -1, 8, 8)
    assert torch.allclose(capture_attention(b, x, query=(2, 6)), row, atol=1e-6)


def test_bad_requests(x) -> None:
    with pytest.raises(ValueError, match="no attention layers"):
        capture_attention(_build("resnet_small"), x)
    swin = _build("swin_small64")
    with pytest.raises(ValueError, match="CLS"):
        capture_attention(swin, x, query="cls")
    with pytest.raises(ValueError, match="outside"):
        capture_attention(swin, x, query=(8, 0))
    with pytest.raises(KeyError, match="not an attention layer"):
        capture_attention(swin, x, layer="model.norm")


def test_swin_padded_windows_other_input_size() -> None:
    """96x80 px on swin_small64 (dynamic size): grids 48x40, 24x20, 12x10 are padded to multiples of 8."""
    torch.manual_seed(0)
    b = build_backbone("swin_small64", dynamic_img_size=True).eval()
    x = torch.randn(1, 3, 96, 80)
    for layer, grid in [(0, (48, 40)), (1, (24, 20)), (None, (12, 10))]:
        maps = capture_attention(b, x, layer)
        assert maps.shape[-2:] == grid
        assert torch.allclose(maps.sum((-2, -1)), torch.ones(()), atol=1e-5)
