"""LARS: parameter groups (CLS token / position embeddings excluded) and the update rule."""

from __future__ import annotations

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


def test_multi_tensor_step_equals_the_per_parameter_loop():
    """foreach=True (the default) against the loop (foreach=False) over 8 steps: a group with weight decay and LARS,
    one with neither, one with LARS only, and parameters whose grad is None on some steps (skipped: no update, no
    momentum). Tolerance 1e-6 relative, 1e-8 absolute (on this CPU they are bit for bit equal: the multi-tensor
    ops run per tensor there; a GPU's fused kernels may round the norms otherwise)."""
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(16, 5), nn.Linear(5, 3))
            for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    extra = [nn.Parameter(torch.randn(2, 3)) for _ in range(2)]  # a third group: LARS without weight decay
    extra[1].data.copy_(extra[0].data)
    opts = [LARS([*lars_param_groups(net, weight_decay=1e-3), {"params": [e], "weight_decay": 0.0, "lars": True}],
                 foreach=foreach) for net, e, foreach in zip(nets, extra, (False, True))]
    assert not opts[0].foreach and opts[1].foreach
    x = torch.randn(6, 3, 4, 4)
    for step in range(8):
        for net, e, opt in zip(nets, extra, opts):
            set_lr(opt, 0.5, 0.01)
            opt.zero_grad()
            (net(x).pow(2).sum() + (e * x[0, 0, :2, :3]).sum() ** 2).backward()
            if step % 3 == 0:
                net[4].weight.grad = None  # a weight without gradient this step
            if step % 4 == 1:
                net[1].bias.grad = None  # a norm parameter without gradient this step
            opt.step()
    for a, b in zip([*nets[0].parameters(), extra[0]], [*nets[1].parameters(), extra[1]]):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-8)
    for a, b in zip(opts[0].state.values(), opts[1].state.values()):
        torch.testing.assert_close(b["mu"], a["mu"], rtol=1e-6, atol=1e-8)
    assert len(opts[1].state) == len(opts[0].state) == 9  # every parameter has stepped at least once
    assert opts[1].state_dict()["param_groups"][0].keys() == opts[0].state_dict()["param_groups"][0].keys()
