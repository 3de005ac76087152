"""The backbone attention interface: token grids agree with what a forward records, attention keeps its graph,
stages equal timm's own intermediates, CNNs say they have no attention, and a backbone that rtsseg has never
seen (defined here) works with capture, the recorder and the affinity code through the interface alone."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch
from torch import nn

from rtsseg.attention.capture import AttentionRecorder, capture_attention
from rtsseg.models import build_backbone
from rtsseg.models.backbone import AttentionLayout, Backbone, image_hw
from rtsseg.seg.affinity import backbone_outputs

SMALL = ("vit_small64", "swin_small64", "botnet_small")


@pytest.fixture(scope="module")
def backbones():
    torch.manual_seed(0)
    return {n: build_backbone(n).eval() for n in SMALL}


@pytest.mark.parametrize("name", SMALL)
def test_token_grid_is_the_recorded_grid(backbones, name):
    """token_grid (computed from sizes alone) equals the grid a real forward records, every layer, odd sizes too."""
    b = backbones[name]
    odd = {"swin_small64": [(40, 56), (44, 60)], "botnet_small": [(40, 40)]}  # odd grids in later stages
    sizes = [(64, 64), (48, 64), (32, 96)] + odd.get(name, [])
    for hw in sizes:
        x = torch.randn(1, 3, *hw)
        for layer in b.attention_layers():
            with torch.no_grad():
                rec = b.attention_record(x, layer)
            assert rec.layout.grid == b.token_grid(x, layer) == b.token_grid(hw, layer), (hw, layer)
            assert rec.layout.batch == 1 and rec.layout.prefix == b.num_prefix_tokens
            n_grid = rec.layout.grid[0] * rec.layout.grid[1]
            if rec.layout.window is None:  # global attention over prefix + grid tokens
                assert rec.attn.shape[-1] == rec.layout.prefix + n_grid
            else:
                wh, ww = rec.layout.window
                assert rec.attn.shape[-1] == wh * ww and rec.attn.shape[0] * wh * ww >= n_grid


@pytest.mark.parametrize("name", SMALL)
def test_attention_keeps_the_graph_in_train_mode(backbones, name):
    b = backbones[name]
    x = torch.randn(2, 3, 64, 64)
    b.train()
    try:
        attn = b.attention(x)
    finally:
        b.eval()
    assert attn.requires_grad
    torch.testing.assert_close(attn.sum(-1), torch.ones(attn.shape[:-1]))
    attn[..., 0].sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in b.parameters())
    b.zero_grad(set_to_none=True)
    with torch.no_grad():
        assert not b.attention(x).requires_grad


def test_default_queries_and_prefix(backbones):
    assert backbones["vit_small64"].default_query == "cls" and backbones["vit_small64"].num_prefix_tokens == 1
    for name in ("swin_small64", "botnet_small"):
        assert backbones[name].default_query == "received" and backbones[name].num_prefix_tokens == 0


@pytest.mark.parametrize("name", SMALL + ("resnet_small",))
def test_stages_equal_timm_intermediates(backbones, name):
    """``stages`` (hooks) against timm's own ``forward_intermediates`` (no hooks) and ``forward_features``."""
    b = backbones[name] if name in backbones else build_backbone(name).eval()
    x = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        got = b.stages(x)
        last = b.forward_features(x)
        if name == "vit_small64":
            blocks = [int(n.rsplit(".", 1)[1]) for n in b.stage_layers()]
            ref = b.model.forward_intermediates(x, indices=blocks, norm=False, output_fmt="NCHW",
                                                intermediates_only=True)
        else:
            ref = b.model.forward_intermediates(x, intermediates_only=True)
            ref = ref[1:-1] if name in ("botnet_small", "resnet_small") else ref[:-1]  # drop the stem, the last
    assert len(got) == len(ref) + 1
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r)
    torch.testing.assert_close(got[-1], last)


def test_resnet_has_no_attention():
    b = build_backbone("resnet_small").eval()
    x = torch.randn(1, 3, 64, 64)
    assert b.attention_layers() == []
    for call in (lambda: b.attention(x), lambda: b.token_grid(x), lambda: b.record_attention().__enter__(),
                 lambda: capture_attention(b, x), lambda: AttentionRecorder(b)):
        with pytest.raises(ValueError, match="no attention layers"):
            call()


# --------------------------------------------------------------------------- a backbone rtsseg does not know
class ToySelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)

    def forward(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # [B, 1+N, C]
        b, n, c = t.shape
        q, k, v = self.qkv(t).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-1, -2) * (c // self.heads) ** -0.5).softmax(-1)  # [B, heads, 1+N, 1+N]
        return attn, (attn @ v).transpose(1, 2).reshape(b, n, c)


class ToyBackbone(Backbone):
    """Patch embedding, a CLS token, one 2-head self-attention: implements the interface and nothing else."""

    default_query = "cls"
    num_prefix_tokens = 1

    def __init__(self, dim: int = 8, heads: int = 2, patch: int = 4) -> None:
        super().__init__("toy", dim)
        self.patch, self._record = patch, None
        self.embed = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.attn = ToySelfAttention(dim, heads)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        f = self.embed(x)  # [B, C, h, w]
        b, c, h, w = f.shape
        attn, out = self.attn(torch.cat([self.cls.expand(b, -1, -1), f.flatten(2).transpose(1, 2)], 1))
        if self._record is not None:
            self._record.attn, self._record.layout = attn, AttentionLayout(grid=(h, w), batch=b, prefix=1)
        return out[:, 1:].transpose(1, 2).reshape(b, c, h, w)

    def attention_layers(self) -> list[str]:
        return ["attn"]

    def token_grid(self, x, layer=None) -> tuple[int, int]:
        hh, ww = image_hw(x)
        return hh // self.patch, ww // self.patch

    def stage_layers(self, blocks=None) -> list[str]:
        return ["embed"]

    @contextmanager
    def _recording(self, record):
        self._record = record
        try:
            yield
        finally:
            self._record = None


def _toy_reference(toy: ToyBackbone, x: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) by hand from the toy's weights: [B, heads, 1+N, 1+N]."""
    f = toy.embed(x).flatten(2).transpose(1, 2)  # [B, N, C]
    t = torch.cat([toy.cls.expand(len(x), -1, -1), f], 1)
    b, n, c = t.shape
    d = c // toy.attn.heads
    qkv = t @ toy.attn.qkv.weight.T + toy.attn.qkv.bias  # [B, 1+N, 3C]
    q = qkv[..., :c].reshape(b, n, -1, d).transpose(1, 2)
    k = qkv[..., c: 2 * c].reshape(b, n, -1, d).transpose(1, 2)
    return torch.softmax(q @ k.transpose(-1, -2) / d ** 0.5, dim=-1)


def test_a_new_backbone_works_everywhere_without_editing_rtsseg():
    torch.manual_seed(0)
    toy = ToyBackbone().eval()
    x = torch.randn(2, 3, 12, 16)  # grid 3 x 4
    with torch.no_grad():
        ref = _toy_reference(toy, x)  # [2, 2, 13, 13]
    cls = ref[:, :, 0, 1:]
    received = ref[:, :, 1:, 1:].mean(2)
    row = ref[:, :, 1 + 1 * 4 + 2, 1:]  # query token (1, 2)

    def on_grid(v):
        return (v / v.sum(-1, keepdim=True)).reshape(2, 2, 3, 4)

    torch.testing.assert_close(capture_attention(toy, x), on_grid(cls))  # the toy's default query: CLS
    torch.testing.assert_close(capture_attention(toy, x, query="received"), on_grid(received))
    torch.testing.assert_close(capture_attention(toy, x, layer=0, query=(1, 2)), on_grid(row))

    with AttentionRecorder(toy) as rec:
        out = toy(x)
    torch.testing.assert_close(rec.maps.detach(), on_grid(cls))
    (rec.maps[:, :, 0, 0].sum() + 0 * out.sum()).backward()
    assert toy.attn.qkv.weight.grad is not None and toy.attn.qkv.weight.grad.abs().sum() > 0
    assert toy._record is None  # recording switched off on exit

    outs = backbone_outputs(toy, x)
    patches = ref[:, :, 1:, 1:]
    assert outs.grid == (3, 4) and len(outs.stages) == 2
    torch.testing.assert_close(outs.affinity, patches / patches.sum(-1, keepdim=True))
    torch.testing.assert_close(outs.maps, on_grid(cls))
    with torch.no_grad():
        torch.testing.assert_close(outs.stages[0], toy.embed(x))
        torch.testing.assert_close(outs.stages[-1], toy.forward_features(x))
