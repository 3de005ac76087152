"""``Backbone.memory_format``: conv backbones prefer channels-last, and running them so changes nothing but speed."""

from __future__ import annotations

import pytest
import torch

from rtsseg.models import build_backbone


@pytest.mark.parametrize("name,expected", [
    ("resnet_small", torch.channels_last), ("botnet_small", torch.channels_last),
    ("vit_small64", torch.contiguous_format), ("swin_small64", torch.contiguous_format),
])
def test_preferred_memory_format(name, expected):
    assert build_backbone(name).memory_format == expected


@pytest.mark.parametrize("name", ["resnet_small", "botnet_small"])
def test_channels_last_gives_the_same_outputs_and_gradients(name):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    ref = build_backbone(name).train()
    cl = build_backbone(name).train()
    cl.load_state_dict(ref.state_dict())
    cl = cl.to(memory_format=cl.memory_format)
    x = torch.randn(4, 3, 64, 64)
    out_ref = ref(x)
    out_cl = cl(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out_cl, out_ref, rtol=1e-4, atol=1e-5)
    out_ref.square().sum().backward()
    out_cl.square().sum().backward()
    conv = next(n for n, m in cl.named_modules() if isinstance(m, torch.nn.Conv2d))
    w_cl, w_ref = dict(cl.named_modules())[conv].weight, dict(ref.named_modules())[conv].weight
    assert w_cl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(w_cl.grad, w_ref.grad, rtol=1e-3, atol=1e-5)
