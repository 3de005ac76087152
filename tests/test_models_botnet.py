"""BoTNet: weights copied from the source ResNet, MHSA with relative positions, stride-2 pooling block."""

from __future__ import annotations

import re

import pytest
import torch

from rtsseg.models.botnet import MHSA, RelPosEmb2d, _resize_table, create_botnet50, to_botnet
from rtsseg.models.resnet import create_resnet50, create_resnet_small

REPLACED = re.compile(r"^layer4\.\d+\.conv2\.weight$")


def _assert_copied(source_sd: dict, bot_sd: dict) -> None:
    copied = 0
    for k, v in source_sd.items():
        if REPLACED.match(k):
            assert k not in bot_sd
            continue
        assert torch.equal(bot_sd[k], v), k
        copied += 1
    assert copied == len(source_sd) - sum(bool(REPLACED.match(k)) for k in source_sd)


def test_botnet_small_copies_every_other_tensor() -> None:
    torch.manual_seed(0)
    src = create_resnet_small()
    bot = to_botnet(src, "botnet_small", img_size=64)
    _assert_copied(src.model.state_dict(), bot.model.state_dict())
    assert bot.family == "botnet" and bot.attention_layers() == ["model.layer4.0.conv2", "model.layer4.1.conv2"]
    assert bot.model.layer4[0].conv2.pos_embed.feat_size == (16, 16)  # stride-2 block: attention at 16x16
    assert bot.model.layer4[1].conv2.pos_embed.feat_size == (8, 8)


@pytest.mark.slow
def test_botnet50_copies_resnet50() -> None:
    torch.manual_seed(0)
    src = create_resnet50()
    bot = create_botnet50(source=src, img_size=224)
    _assert_copied(src.model.state_dict(), bot.model.state_dict())
    assert [b.conv2.num_heads for b in bot.model.layer4] == [4, 4, 4]
    assert bot.model.layer4[0].conv2.pos_embed.feat_size == (14, 14)
    assert bot.forward_features(torch.randn(1, 3, 224, 224)).shape == (1, 2048, 7, 7)


def test_mhsa_stride2_pools_after_attention() -> None:
    torch.manual_seed(0)
    m = MHSA(16, (8, 8), num_heads=4, stride=2)
    x = torch.randn(2, 16, 8, 8)
    y = m(x)
    assert y.shape == (2, 16, 4, 4)
    m.pool = torch.nn.Identity()
    assert torch.allclose(y, torch.nn.functional.avg_pool2d(m(x), 2), atol=1e-6)


def test_mhsa_fused_equals_unfused_and_manual() -> None:
    torch.manual_seed(0)
    m = MHSA(16, (4, 5), num_heads=2)
    x = torch.randn(2, 16, 4, 5)
    y = m(x)
    m.fused_attn = True
    assert torch.allclose(m(x), y, atol=1e-5)
    # manual: logits[(y,x),(y',x')] = (q.k + q.r_h[y'-y] + q.r_w[x'-x]) / sqrt(d)
    q, k, v = m.qkv(x).reshape(2, 3, 2, 8, 20).transpose(-1, -2).unbind(1)
    pos = torch.zeros(2, 2, 20, 20)
    for i in range(20):
        for j in range(20):
            dy, dx = j // 5 - i // 5, j % 5 - i % 5
            pos[:, :, i, j] = (q[:, :, i] * (m.pos_embed.rel_h[dy + 3] + m.pos_embed.rel_w[dx + 4])).sum(-1)
    attn = ((q @ k.transpose(-1, -2) + pos) * 8 ** -0.5).softmax(-1)
    manual = (attn @ v).transpose(-1, -2).reshape(2, 16, 4, 5)
    assert torch.allclose(manual, y, atol=1e-5)


def test_relpos_other_size_interpolates() -> None:
    torch.manual_seed(0)
    rel = RelPosEmb2d((4, 4), 8)  # 7 offsets per axis
    q = torch.randn(1, 2, 36, 8)
    assert rel(q, (6, 6)).shape == (1, 2, 36, 36)
    table = _resize_table(rel.rel_h, 11)  # offsets -5..5 from -3..3: ends and zero offset are kept
    assert torch.equal(_resize_table(rel.rel_h, 7), rel.rel_h)
    for new, old in [(0, 0), (5, 3), (10, 6)]:
        assert torch.allclose(table[new], rel.rel_h[old], atol=1e-6)


def test_botnet_runs_at_another_size() -> None:
    torch.manual_seed(0)
    bot = to_botnet(create_resnet_small(), "botnet_small", img_size=64)
    assert bot.forward_features(torch.randn(1, 3, 96, 96)).shape == (1, bot.embed_dim, 12, 12)
