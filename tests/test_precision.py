"""bf16 autocast on CPU: what must stay fp32 (BT loss, C, BN statistics, weights and their gradients), and a
short bf16 run following the fp32 run of the same seed is in ``tests/test_ssl_optim_precision.py``.

The CUDA counterpart of the loss check is ``tests/test_ssl_loss.py::test_autocast_bf16_computes_in_float32``.
The fp16 + GradScaler path (``amp=auto`` on a GPU without bf16 tensor cores) runs here with CUDA mocked.
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


def test_auto_fp16_on_a_gpu_without_bf16_trains_with_a_grad_scaler(monkeypatch):
    """The T4 path with CUDA mocked: ``auto`` gives fp16 and :func:`grad_scaler` a live scaler; the step itself runs
    on CPU (CPU autocast has fp16 too): the loss and BatchNorm statistics stay fp32, the scaler multiplies the
    gradients, unscales them before the optimiser step and skips a step whose gradients overflowed."""
    from rtsseg import precision

    precision._log_once.cache_clear()
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    dtype = precision.autocast_dtype("auto", "cuda")
    assert dtype is torch.float16 and precision.precision_name(dtype) == "fp16"

    torch.manual_seed(0)
    model = BarlowTwins(TinyBackbone(), projector_dims=(32, 32, 16)).train()
    x1, x2 = torch.randn(8, 3, 16, 16), torch.randn(8, 3, 16, 16)

    def grads(scaler=None):
        model.zero_grad(set_to_none=True)
        with precision.autocast("cpu", dtype):
            out = model(x1, x2)
        assert out["z1"].dtype == torch.float16 and out["loss"].dtype == torch.float32
        (out["loss"] if scaler is None else scaler.scale(out["loss"])).backward()
        return [p.grad.clone() for p in model.parameters()]

    plain = grads()
    scaler = precision.grad_scaler("cpu", dtype)
    scaler._init_scale = 8.0  # a power of two (exact); 1024 overflows fp16 on this tiny net (the skip below)
    assert scaler.is_enabled()
    scaled = grads(scaler)
    for g, s in zip(plain, scaled):
        torch.testing.assert_close(s, 8.0 * g, rtol=1e-2, atol=1e-3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    scaler.step(opt)  # unscales in place, then steps
    scaler.update()
    for g, p, b in zip(plain, model.parameters(), before):
        torch.testing.assert_close(p.grad, g, rtol=1e-2, atol=1e-5)
        torch.testing.assert_close(p.detach(), b - 0.1 * p.grad, rtol=1e-5, atol=1e-6)
    for name, buf in model.named_buffers():
        if buf.is_floating_point():
            assert buf.dtype == torch.float32, name

    grads(scaler)
    next(model.parameters()).grad[0] = float("inf")  # an fp16 overflow
    before = [p.detach().clone() for p in model.parameters()]
    scale = scaler.get_scale()
    scaler.step(opt)
    scaler.update()
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))  # the step was skipped
    assert scaler.get_scale() == scale / 2


def test_cpu_bf16_autocast_runs_attention_on_the_math_kernel():
    """The CPU flash kernel's bf16 backward is slow (precision.autocast's docstring): under bf16 the graph holds
    the math kernel's ops, in fp32 (no autocast) the flash kernel; both give the same function."""
    import torch.nn.functional as F

    from rtsseg.precision import autocast

    q, k, v = (torch.randn(2, 3, 17, 8, requires_grad=True) for _ in range(3))
    with autocast("cpu", torch.bfloat16):
        o_bf16 = F.scaled_dot_product_attention(q, k, v)
    assert "Flash" not in type(o_bf16.grad_fn).__name__
    o32 = F.scaled_dot_product_attention(q, k, v)
    assert "Flash" in type(o32.grad_fn).__name__
    torch.testing.assert_close(o_bf16.float(), o32, atol=3e-2, rtol=3e-2)
    o_bf16.float().sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()
