"""Barlow Twins loss: official semantics, equality with lightly, collapse, autocast."""

from __future__ import annotations

import pytest
import torch

from rtsseg.ssl.loss import BarlowTwinsLoss, off_diagonal
from rtsseg.ssl.projector import GlobalBatchNorm1d, Projector


def direct_formula(z1: torch.Tensor, z2: torch.Tensor, lambd: float) -> torch.Tensor:
    """Element-by-element reading of the paper, in float64."""
    z1, z2 = z1.double(), z2.double()
    n, d = z1.shape
    bn = lambda z: (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + 1e-5)  # noqa: E731
    a, b = bn(z1), bn(z2)
    loss = torch.zeros((), dtype=torch.float64)
    for i in range(d):
        for j in range(d):
            c_ij = (a[:, i] * b[:, j]).sum() / n
            loss = loss + ((1 - c_ij) ** 2 if i == j else lambd * c_ij**2)
    return loss


def test_off_diagonal_picks_exactly_the_off_diagonal():
    c = torch.arange(16.0).view(4, 4)
    expected = c[~torch.eye(4, dtype=torch.bool)]
    assert torch.equal(off_diagonal(c), expected)


def test_equals_direct_formula():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(12, 6, generator=g) * 3 + 1, torch.randn(12, 6, generator=g)
    out = BarlowTwinsLoss(lambd=0.0051).terms(z1, z2)
    assert out["loss"].item() == pytest.approx(direct_formula(z1, z2, 0.0051).item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx((out["on_diag"] + 0.0051 * out["off_diag"]).item(), rel=1e-6)
    assert out["c"].shape == (6, 6) and out["c"].dtype == torch.float32


def test_default_lambda_is_the_paper_value():
    assert BarlowTwinsLoss().lambd == 0.0051


def test_equals_lightly_on_one_process():
    lightly_loss = pytest.importorskip("lightly.loss")
    g = torch.Generator().manual_seed(1)
    z1 = torch.randn(32, 64, generator=g, requires_grad=True)
    z2 = torch.randn(32, 64, generator=g, requires_grad=True)
    ours = BarlowTwinsLoss(lambd=0.0051)(z1, z2)
    (ga1, ga2) = torch.autograd.grad(ours, (z1, z2))
    theirs = lightly_loss.BarlowTwinsLoss(lambda_param=0.0051)(z1, z2)
    (gb1, gb2) = torch.autograd.grad(theirs, (z1, z2))
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)
    torch.testing.assert_close(ga1, gb1, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ga2, gb2, rtol=1e-4, atol=1e-6)


def test_perfectly_correlated_decorrelated_views_give_zero_loss():
    # orthogonal, centred columns with unit variance: C = I exactly
    q, _ = torch.linalg.qr(torch.randn(64, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2)))
    z = q - q.mean(0)
    z = (z / z.std(0, unbiased=False)).float()
    loss = BarlowTwinsLoss()(z, z)
    assert loss.item() < 0.5  # only the off-diagonal residue of centring remains
    assert BarlowTwinsLoss()(z, -z).item() > 3.9 * 8  # anti-correlated: (1 - (-1))^2 per feature


def test_collapse_constant_embeddings_is_finite_and_equals_dim():
    d = 10
    z = torch.full((16, d), 3.0, requires_grad=True)
    out = BarlowTwinsLoss().terms(z, z.detach().clone())
    assert torch.isfinite(out["loss"])
    assert out["loss"].item() == pytest.approx(float(d))  # documented: C = 0 -> loss = D
    assert out["off_diag"].item() == 0.0
    (grad,) = torch.autograd.grad(out["loss"], z)
    assert torch.isfinite(grad).all()


def test_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        BarlowTwinsLoss()(torch.randn(4, 3), torch.randn(4, 5))


def test_autocast_bf16_computes_in_float32():
    g = torch.Generator().manual_seed(3)
    z1, z2 = torch.randn(16, 32, generator=g) * 100, torch.randn(16, 32, generator=g) * 100
    ref = BarlowTwinsLoss().terms(z1, z2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = BarlowTwinsLoss().terms(z1.bfloat16(), z2.bfloat16())
    assert out["loss"].dtype == torch.float32 and out["c"].dtype == torch.float32
    assert torch.isfinite(out["loss"])
    # inputs rounded to bf16 only: the loss is still close to the fp32 value
    assert out["loss"].item() == pytest.approx(ref["loss"].item(), rel=2e-2)


def test_projector_shapes_and_no_bias_on_linears():
    proj = Projector(16, (32, 32, 8))
    assert proj(torch.randn(5, 16)).shape == (5, 8)
    linears = [m for m in proj if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 3 and all(m.bias is None for m in linears)
    assert sum(isinstance(m, GlobalBatchNorm1d) for m in proj) == 2
    with pytest.raises(ValueError):
        Projector(16, ())


def test_global_batchnorm_equals_batchnorm_on_one_process():
    bn, ref = GlobalBatchNorm1d(6), torch.nn.BatchNorm1d(6)
    x = torch.randn(10, 6)
    torch.testing.assert_close(bn(x), ref(x))
    torch.testing.assert_close(bn.running_var, ref.running_var)


def test_concatenated_views_equal_separate_views_for_a_batchnorm_free_backbone():
    from rtsseg.ssl.model import BarlowTwins
    from model_fakes import TinyBackbone

    torch.manual_seed(0)
    model = BarlowTwins(TinyBackbone(), (16, 8))
    assert model.concat_views
    y1, y2 = torch.randn(6, 3, 16, 16), torch.randn(6, 3, 16, 16)
    together = model(y1, y2)["loss"]
    model.concat_views = False
    torch.testing.assert_close(model(y1, y2)["loss"], together, rtol=1e-5, atol=1e-5)
    with_bn = TinyBackbone()
    with_bn.features.insert(1, torch.nn.BatchNorm2d(8))
    assert not BarlowTwins(with_bn, (16, 8)).concat_views  # BatchNorm statistics stay per view
