"""LARS: parameter groups, update rule, learning-rate schedule."""

from __future__ import annotations


import pytest
import torch
from torch import nn

from rtsseg.schedule import cosine_scheduler
from rtsseg.ssl.lars import LARS, lars_param_groups, set_lr


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2, bias=False))


def test_groups_split_weights_from_biases_and_norms():
    groups = lars_param_groups(_model(), weight_decay=1e-6)
    weights, biases = groups
    assert weights["name"] == "weights" and biases["name"] == "biases"
    assert all(p.ndim > 1 for p in weights["params"]) and len(weights["params"]) == 2
    assert all(p.ndim == 1 for p in biases["params"]) and len(biases["params"]) == 3  # bias, bn weight, bn bias
    assert weights["weight_decay"] == 1e-6 and weights["lars"] is True
    assert biases["weight_decay"] == 0.0 and biases["lars"] is False


def test_step_matches_hand_computed_update():
    w = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # ||w|| = 5
    b = nn.Parameter(torch.tensor([1.0, -1.0]))
    opt = LARS(lars_param_groups([w, b], weight_decay=0.1), lr=0.0, momentum=0.9, eta=0.01)
    set_lr(opt, 2.0, 0.5)
    w.grad = torch.tensor([[0.0, 1.0]])
    b.grad = torch.tensor([0.2, 0.2])
    opt.step()
    g = torch.tensor([[0.3, 1.4]])  # grad + 0.1 * w
    trust = 0.01 * 5.0 / g.norm()
    torch.testing.assert_close(w.data, torch.tensor([[3.0, 4.0]]) - 2.0 * trust * g)
    torch.testing.assert_close(b.data, torch.tensor([1.0, -1.0]) - 0.5 * torch.tensor([0.2, 0.2]))  # no wd, no LARS
    # momentum: second step with the same gradient on b accumulates mu = 0.9 * g + g
    b_before = b.data.clone()
    b.grad = torch.tensor([0.2, 0.2])
    opt.step()
    torch.testing.assert_close(b.data, b_before - 0.5 * 1.9 * torch.tensor([0.2, 0.2]))


def test_zero_parameter_norm_falls_back_to_plain_sgd():
    w = nn.Parameter(torch.zeros(2, 2))
    opt = LARS([w], lr=1.0, weight_decay=0.0)
    w.grad = torch.ones(2, 2)
    opt.step()
    torch.testing.assert_close(w.data, -torch.ones(2, 2))


def test_lars_trains_a_linear_regression():
    torch.manual_seed(0)
    x = torch.randn(64, 5)
    target = x @ torch.randn(5, 1)
    model = nn.Linear(5, 1)
    opt = LARS(lars_param_groups(model, 0.0), lr=0.0)
    first = None
    lr_w, lr_b = cosine_scheduler(20.0, 0.02, 200, 10), cosine_scheduler(0.5, 0.0005, 200, 10)
    for step in range(200):
        set_lr(opt, lr_w[step], lr_b[step])
        loss = (model(x) - target).pow(2).mean()
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05 * first
