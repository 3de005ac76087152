"""bf16 autocast on CPU: what must stay fp32 (BT loss, C, BN statistics, weights and their gradients), and a
short bf16 run following the fp32 run of the same seed is in ``tests/test_ssl_optim_precision.py``.

The CUDA counterpart of the loss check is ``tests/test_ssl_loss.py::test_autocast_bf16_computes_in_float32``.
"""

from __future__ import annotations


import torch

from rtsseg.ssl.model import BarlowTwins
from model_fakes import TinyBackbone


def test_bt_model_under_cpu_autocast_keeps_loss_bn_stats_and_grads_fp32():
    torch.manual_seed(0)
    model = BarlowTwins(TinyBackbone(), projector_dims=(32, 32, 16)).train()
    x1, x2 = torch.randn(8, 3, 16, 16), torch.randn(8, 3, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x1, x2)
        # the projector's last Linear ran in bf16 under autocast: the loss received bf16 embeddings ...
        assert out["z1"].dtype == torch.bfloat16
    # ... and still computed in fp32 (its own autocast-disabled block)
    for key in ("loss", "on_diag", "off_diag", "c"):
        assert out[key].dtype == torch.float32, key
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    for name, p in model.named_parameters():
        assert p.dtype == torch.float32 and p.grad is not None and p.grad.dtype == torch.float32, name
    for name, buf in model.named_buffers():
        if buf.is_floating_point():  # BatchNorm running statistics of the projector
            assert buf.dtype == torch.float32 and torch.isfinite(buf).all(), name


def test_bt_loss_under_cpu_autocast_matches_fp32_loss_of_the_same_bf16_inputs():
    """The loss itself adds no bf16 error: bf16 inputs give the fp32 loss of those (rounded) inputs."""
    from rtsseg.ssl.loss import BarlowTwinsLoss

    g = torch.Generator().manual_seed(1)
    z1, z2 = (torch.randn(32, 64, generator=g) * 10).bfloat16(), (torch.randn(32, 64, generator=g) * 10).bfloat16()
    ref = BarlowTwinsLoss()(z1.float(), z2.float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = BarlowTwinsLoss()(z1, z2)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
