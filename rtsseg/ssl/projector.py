"""Barlow Twins projector: (Linear without bias - BN - ReLU) x 2, then Linear without bias.

Widths 8192-8192-8192 in the paper. The hidden BatchNorms are :class:`GlobalBatchNorm1d`: on one
process they are exactly ``nn.BatchNorm1d``; under ``torch.distributed`` they normalise with the
statistics of the global batch (what SyncBatchNorm does in the official code, but also on CPU/gloo).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rtsseg.ssl.distributed import global_batch_size, global_mean_var, is_distributed


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` whose training-mode statistics span all ranks (differentiably).

    Same parameters and buffers as ``nn.BatchNorm1d`` (state dicts are interchangeable); running
    statistics are updated with the global mean and the unbiased global variance.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [n, C]
        if not (self.training and is_distributed()):
            return super().forward(x)
        n = global_batch_size(x.shape[0])
        x = x.float()  # statistics in fp32 also under bf16 autocast (the running buffers are fp32)
        mean, var = global_mean_var(x, n)  # [C], [C] (biased)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(var.detach() * n / max(n - 1, 1), m)
        y = (x - mean) / torch.sqrt(var + self.eps)
        if self.affine:
            y = y * self.weight + self.bias
        return y


class Projector(nn.Sequential):
    """``Projector(in_dim, dims=(8192, 8192, 8192))``: [N, in_dim] -> [N, dims[-1]]."""

    def __init__(self, in_dim: int, dims: Sequence[int] = (8192, 8192, 8192)) -> None:
        dims = [int(d) for d in dims]
        if not dims or min(dims) <= 0:
            raise ValueError(f"projector dims must be positive widths, got {dims}")
        sizes = [int(in_dim), *dims]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-2], sizes[1:-1]):
            layers += [nn.Linear(a, b, bias=False), GlobalBatchNorm1d(b), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(sizes[-2], sizes[-1], bias=False))
        super().__init__(*layers)
        self.in_dim = int(in_dim)
        self.out_dim = sizes[-1]
