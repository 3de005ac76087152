"""AttentionRecorder: differentiable maps equal capture_attention's in eval mode, gradients reach the weights,
flags and hooks restored."""

from __future__ import annotations

import pytest
import torch

from rtsseg.attention.capture import AttentionRecorder, capture_attention
from rtsseg.models import build_backbone


@pytest.mark.parametrize("name,layer", [("vit_small64", None), ("vit_small64", 1), ("swin_small64", None),
                                        ("swin_small64", 0), ("botnet_small", None)])
def test_recorder_matches_capture_and_has_gradients(name, layer):
    torch.manual_seed(0)
    b = build_backbone(name).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    ref = capture_attention(b, x, layer)
    module = dict(b.named_modules())[AttentionRecorder(b, layer).layer]
    module.fused_attn = True
    n_hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in b.modules())
    with AttentionRecorder(b, layer) as rec:
        out = b(x)
        assert module.fused_attn is False
        maps = rec.maps  # [B, heads, h, w]
    assert module.fused_attn is True
    assert n_hooks == sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in b.modules())
    assert maps.requires_grad and maps.shape == ref.shape
    torch.testing.assert_close(maps.detach(), ref, atol=1e-5, rtol=1e-4)
    # a loss on the maps alone reaches the parameters of the recorded layer
    (maps[:, :, 0, 0].sum() + 0 * out.sum()).backward()
    grads = [p.grad for n, p in b.named_parameters() if n.startswith(rec.layer.rsplit(".", 1)[0]) and "qkv" in n]
    assert grads and any(g is not None and g.abs().sum() > 0 for g in grads)


def test_recorder_in_train_mode_and_forward_features():
    torch.manual_seed(0)
    b = build_backbone("vit_small64").train()
    x = torch.randn(3, 3, 64, 64)
    with AttentionRecorder(b) as rec:
        b.forward_features(x)
    assert rec.maps.shape == (3, 6, 8, 8) and rec.maps.requires_grad
    torch.testing.assert_close(rec.maps.sum(dim=(-2, -1)), torch.ones(3, 6))
    with pytest.raises(RuntimeError, match="inside"):
        AttentionRecorder(b).maps
