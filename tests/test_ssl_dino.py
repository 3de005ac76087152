"""DINO method pieces against independent references: the official formulas written out here, lightly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from rtsseg.ssl.dino import (
    DINOHead,
    DINOLoss,
    MultiCropWrapper,
    cancel_gradients_last_layer,
    clip_gradients,
    default_out_dim,
    ema_update,
    get_params_groups,
    teacher_temp_schedule,
)
from rtsseg.ssl.dino_augment import DinoMultiCrop, default_crops
from model_fakes import TinyBackbone


def _official_loss(student: np.ndarray, teacher: np.ndarray, center: np.ndarray, ncrops: int, t_s: float, t_t: float):
    """The loss of facebookresearch/dino main_dino.py DINOLoss.forward, in float64 NumPy."""

    def softmax(z):
        z = z - z.max(-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(-1, keepdims=True)

    s_chunks = np.split(student / t_s, ncrops)
    q_chunks = np.split(softmax((teacher - center) / t_t), 2)
    total, n = 0.0, 0
    for iq, q in enumerate(q_chunks):
        for v, s in enumerate(s_chunks):
            if v == iq:
                continue
            logp = s - s.max(-1, keepdims=True)
            logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
            total += (-q * logp).sum(-1).mean()
            n += 1
    return total / n, q_chunks


def _random_outputs(b=5, k=32, ncrops=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(ncrops * b, k, generator=g) * 3, torch.randn(2 * b, k, generator=g) * 3


@pytest.mark.parametrize("ncrops", [2, 5])
def test_loss_equals_official_formula_and_center_update(ncrops):
    k, b = 32, 5
    student, teacher = _random_outputs(b, k, ncrops)
    loss_fn = DINOLoss(k, ncrops, warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_epochs=3,
                       nepochs=10, center_momentum=0.9)
    center0 = torch.randn(1, k, generator=torch.Generator().manual_seed(9))
    loss_fn.center.copy_(center0)
    loss = loss_fn(student, teacher, epoch=1)
    t_t = 0.04 + (0.07 - 0.04) * 1 / 2  # linspace(0.04, 0.07, 3)[1]
    ref, q = _official_loss(student.double().numpy(), teacher.double().numpy(), center0.double().numpy(), ncrops, 0.1, t_t)
    assert loss.item() == pytest.approx(ref, rel=1e-5)
    # centre: EMA of the teacher batch mean
    expected_center = 0.9 * center0 + 0.1 * teacher.mean(0, keepdim=True)
    torch.testing.assert_close(loss_fn.center, expected_center)
    # collapse monitors: mean teacher entropy, KL = loss - entropy over the same pairs
    p = np.concatenate(q)
    h = -(p * np.log(p)).sum(-1).mean()
    assert loss_fn.last_stats["teacher_entropy"].item() == pytest.approx(h, rel=1e-4)
    assert loss_fn.last_stats["kl"].item() == pytest.approx(ref - h, rel=1e-4, abs=1e-5)
    assert loss_fn.last_stats["kl"].item() >= 0


def test_loss_equals_lightly():
    from lightly.loss import DINOLoss as LightlyDINOLoss

    k, b, ncrops = 64, 6, 6
    student, teacher = _random_outputs(b, k, ncrops, seed=3)
    ours = DINOLoss(k, ncrops, warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_epochs=5, nepochs=20)
    theirs = LightlyDINOLoss(k, warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_epochs=5)
    for epoch in (0, 2, 7):  # warm-up and after; centre evolves across the calls in both
        a = ours(student, teacher, epoch)
        c = theirs(list(teacher.chunk(2)), list(student.chunk(ncrops)), epoch=epoch)
        assert a.item() == pytest.approx(c.item(), rel=1e-5)
        torch.testing.assert_close(ours.center.view(-1), theirs.center.view(-1), atol=1e-6, rtol=1e-5)
        student, teacher = student.roll(1, 0), teacher * 0.5 + 1


def test_teacher_temperature_schedule():
    s = teacher_temp_schedule(0.04, 0.07, 30, 100)
    assert len(s) == 100 and s[0] == pytest.approx(0.04) and s[29] == pytest.approx(0.07) and s[99] == pytest.approx(0.07)
    loss = DINOLoss(8, 2, 0.04, 0.07, 30, 10)  # warm-up longer than the run: the index is clamped
    assert loss.teacher_temp_at(50) == pytest.approx(0.07)


def test_loss_rejects_bad_shapes_and_needs_two_crops():
    with pytest.raises(ValueError, match="ncrops"):
        DINOLoss(8, 1)
    with pytest.raises(ValueError, match="multiple"):
        DINOLoss(8, 3)(torch.randn(10, 8), torch.randn(4, 8), 0)


def test_head_shapes_normalised_last_layer_and_out_dim():
    assert default_out_dim(192) == 4096 and default_out_dim(384) == 8192 and default_out_dim(768) == 16384
    head = DINOHead(12, 40, hidden_dim=24, bottleneck_dim=8)
    x = torch.randn(7, 12)
    y = head(x)
    assert y.shape == (7, 40)
    # rows of the effective last-layer weight have unit norm, so logits are cosines: |y| <= 1
    w = head.last_layer.weight
    torch.testing.assert_close(w.norm(dim=1), torch.ones(40))
    assert y.abs().max() <= 1 + 1e-5
    g = head.last_layer.parametrizations.weight.original0
    assert not g.requires_grad
    assert DINOHead(12, 40, 24, 8, norm_last_layer=False).last_layer.parametrizations.weight.original0.requires_grad
    acts = [m for m in head.mlp if isinstance(m, nn.GELU)]
    lins = [m for m in head.mlp if isinstance(m, nn.Linear)]
    assert len(acts) == 2 and [m.out_features for m in lins] == [24, 24, 8]


def test_multicrop_wrapper_groups_by_resolution():
    torch.manual_seed(0)
    backbone, head = TinyBackbone(embed_dim=12), DINOHead(12, 20, 16, 8)
    model = MultiCropWrapper(backbone, head)
    crops = [torch.randn(3, 3, 16, 16), torch.randn(3, 3, 16, 16), torch.randn(3, 3, 8, 8), torch.randn(3, 3, 8, 8)]
    out = model(crops)
    ref = torch.cat([head(backbone(c)) for c in crops])
    assert out.shape == (12, 20)
    torch.testing.assert_close(out, ref)


def test_ema_update():
    torch.manual_seed(0)
    s, t = nn.Linear(4, 3), nn.Linear(4, 3)
    t_before = {k: v.clone() for k, v in t.state_dict().items()}
    ema_update(s, t, 0.996)
    for k, v in t.state_dict().items():
        torch.testing.assert_close(v, 0.996 * t_before[k] + 0.004 * s.state_dict()[k])
    ema_update(s, t, 0.0)  # momentum 0: teacher = student
    for k, v in t.state_dict().items():
        torch.testing.assert_close(v, s.state_dict()[k])


def test_clip_cancel_and_param_groups():
    torch.manual_seed(0)
    model = MultiCropWrapper(TinyBackbone(embed_dim=6), DINOHead(6, 10, 8, 4))
    model([torch.randn(4, 3, 8, 8)]).pow(2).sum().mul(100).backward()
    before = {n: p.grad.norm().item() for n, p in model.named_parameters() if p.grad is not None}
    norms = clip_gradients(model, 0.5)
    assert sorted(norms.tolist()) == pytest.approx(sorted(before.values()))
    for n, p in model.named_parameters():
        if p.grad is not None:  # each parameter clipped on its own (official), not the global norm
            assert p.grad.norm().item() == pytest.approx(min(before[n], 0.5), rel=1e-4)
    cancel_gradients_last_layer(0, model, freeze_last_layer=1)
    assert all(p.grad is None for n, p in model.named_parameters() if "last_layer" in n)
    assert model.head.mlp[0].weight.grad is not None
    groups = get_params_groups(model)
    assert groups[1]["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in groups[0]["params"]) and all(p.ndim == 1 for p in groups[1]["params"])
    n_trainable = sum(1 for p in model.parameters() if p.requires_grad)
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == n_trainable


@pytest.mark.parametrize("n_local", [0, 3])
def test_multicrop_shapes_and_determinism(n_local):
    spec = default_crops(64, n_local)
    assert spec.global_size == 64 and spec.local_size == 32
    assert spec.global_scale == ((0.4, 1.0) if n_local else (0.14, 1.0))
    aug = DinoMultiCrop(spec)
    x = torch.randint(0, 256, (5, 3, 64, 64), dtype=torch.uint8)
    crops = aug(x, torch.Generator().manual_seed(1))
    assert aug.ncrops == len(crops) == 2 + n_local
    assert [tuple(c.shape) for c in crops] == [(5, 3, 64, 64)] * 2 + [(5, 3, 32, 32)] * n_local
    assert all(c.dtype == torch.float32 and torch.isfinite(c).all() for c in crops)
    again = aug(x, torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(crops, again))
    assert not torch.equal(crops[0], crops[1])
    assert default_crops(224, 8, patch=16).local_size == 96 and math.isclose(default_crops(224).local_scale[1], 0.4)
