"""Barlow Twins loss with the semantics of facebookresearch/barlowtwins ``main.py``.

    z_hat = BN(z)                      BatchNorm1d(affine=False) over the *global* batch,
                                       biased variance, eps = 1e-5 (SyncBatchNorm in the official code)
    C     = sum_ranks z1_hat^T z2_hat / N_global                        [D, D]
    L     = sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2            lambd = 0.0051

The statistics and the all-reduce are autograd-aware (see :mod:`rtsseg.ssl.distributed`), so a DDP run
gives the single-process gradient on the same global batch. The loss always runs in float32 with autocast
switched off (BN of bf16/fp16 embeddings is a known source of NaN: VISSL #543, barlowtwins #53).

Collapse: if a feature is constant over the batch its variance is 0 and BN maps it to 0 (the eps keeps
the division finite), so its row and column of C are 0. Fully constant embeddings give C = 0 and
``L = D`` exactly (on_diag = D, off_diag = 0), a finite value, not NaN.
"""

from __future__ import annotations

import torch
from torch import nn

from rtsseg.ssl.distributed import all_reduce_sum, global_batch_size, global_mean_var


def off_diagonal(c: torch.Tensor) -> torch.Tensor:
    """Flattened off-diagonal entries of a square matrix: [D, D] -> [D*(D-1)]."""
    d, d2 = c.shape
    if d != d2:
        raise ValueError(f"off_diagonal needs a square matrix, got {tuple(c.shape)}")
    return c.flatten()[:-1].view(d - 1, d + 1)[:, 1:].flatten()


def batch_normalize(z: torch.Tensor, n_global: int, eps: float = 1e-5) -> torch.Tensor:
    """BatchNorm1d(affine=False) in training mode over the global batch: [n, D] -> [n, D]."""
    mean, var = global_mean_var(z, n_global)  # [D], [D]
    return (z - mean) / torch.sqrt(var + eps)


class BarlowTwinsLoss(nn.Module):
    """Barlow Twins redundancy-reduction loss; ``forward(z1 [n, D], z2 [n, D]) -> scalar``.

    ``n`` is the local batch; under ``torch.distributed`` the normalisation and C use the global batch.
    """

    def __init__(self, lambd: float = 0.0051, eps: float = 1e-5) -> None:
        super().__init__()
        self.lambd = lambd
        self.eps = eps

    def terms(self, z1: torch.Tensor, z2: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return ``dict(loss, on_diag, off_diag, c)`` with ``loss = on_diag + lambd * off_diag``.

        on_diag = sum_i (1 - C_ii)^2, off_diag = sum_{i != j} C_ij^2 (unweighted), c = C [D, D] (float32).
        """
        if z1.shape != z2.shape or z1.ndim != 2:
            raise ValueError(f"z1 and z2 must both be [N, D]; got {tuple(z1.shape)} and {tuple(z2.shape)}")
        with torch.autocast(device_type=z1.device.type, enabled=False):
            z1, z2 = z1.float(), z2.float()
            n = global_batch_size(z1.shape[0])
            c = batch_normalize(z1, n, self.eps).T @ batch_normalize(z2, n, self.eps)  # [D, D]
            c = all_reduce_sum(c / n)  # [D, D]
            on_diag = (torch.diagonal(c) - 1).pow(2).sum()
            off_diag = off_diagonal(c).pow(2).sum()
            loss = on_diag + self.lambd * off_diag
        return {"loss": loss, "on_diag": on_diag, "off_diag": off_diag, "c": c}

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return self.terms(z1, z2)["loss"]

    def extra_repr(self) -> str:
        return f"lambd={self.lambd}, eps={self.eps}"
