"""LARS optimiser as in facebookresearch/barlowtwins ``main.py`` (schedule: :mod:`rtsseg.schedule`).

Update per parameter p with gradient g (group flags ``weight_decay`` and ``lars``):
    g <- g + wd * p                                     (wd = 0 for biases and norm parameters)
    g <- g * eta * ||p|| / ||g||   if lars and ||p||, ||g|| > 0   (trust ratio; skipped for ndim == 1)
    mu <- momentum * mu + g;   p <- p - lr * mu
Defaults: momentum 0.9, eta 0.001, weight decay 1e-6 (paper 1.5e-6). Learning rates 0.2 (weights) and
0.0048 (biases and norm parameters), both times batch/256; linear warmup (10 epochs) from 0, then cosine
to 0.001x of the peak.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def is_bias_or_norm(p: torch.Tensor) -> bool:
    """Biases and normalisation scales/shifts are the 1-D parameters."""
    return p.ndim == 1


def lars_param_groups(model: nn.Module | Iterable[torch.Tensor], weight_decay: float = 1e-6) -> list[dict]:
    """Two groups: ``weights`` (ndim > 1: weight decay and LARS adaptation) and ``biases`` (ndim == 1:
    neither). The trainer sets each group's ``lr`` with :func:`set_lr`."""
    params = model.parameters() if isinstance(model, nn.Module) else model
    weights, biases = [], []
    for p in params:
        if p.requires_grad:
            (biases if is_bias_or_norm(p) else weights).append(p)
    return [
        {"name": "weights", "params": weights, "weight_decay": weight_decay, "lars": True},
        {"name": "biases", "params": biases, "weight_decay": 0.0, "lars": False},
    ]


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You et al. 2017) with per-group ``weight_decay`` and ``lars`` flags.

    ``LARS(lars_param_groups(model, wd), lr=0.0)``; a plain parameter iterable puts every parameter in
    one group with ``lars=True``.
    """

    def __init__(
        self,
        params,
        lr: float = 0.0,
        weight_decay: float = 1e-6,
        momentum: float = 0.9,
        eta: float = 0.001,
        lars: bool = True,
    ) -> None:
        if lr < 0 or momentum < 0 or eta <= 0 or weight_decay < 0:
            raise ValueError(f"invalid LARS hyper-parameters lr={lr} momentum={momentum} eta={eta} wd={weight_decay}")
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, eta=eta, lars=lars)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad
                if group["weight_decay"] != 0:
                    d_p = d_p.add(p, alpha=group["weight_decay"])
                if group["lars"]:
                    p_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(d_p)
                    trust = torch.where(
                        (p_norm > 0) & (g_norm > 0), group["eta"] * p_norm / g_norm, torch.ones_like(p_norm)
                    )
                    d_p = d_p * trust
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p)
                mu = state["mu"]
                mu.mul_(group["momentum"]).add_(d_p)
                p.add_(mu, alpha=-group["lr"])
        return loss


def set_lr(optimizer: torch.optim.Optimizer, lr_weights: float, lr_biases: float) -> None:
    """Write the two learning rates into the ``weights`` / ``biases`` groups of :func:`lars_param_groups`."""
    for group in optimizer.param_groups:
        group["lr"] = lr_biases if group.get("name") == "biases" else lr_weights
