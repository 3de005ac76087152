"""Frozen image embeddings and what we read from them: a linear probe and a t-SNE map.

- :func:`extract_embeddings`: pooled ``backbone(x)`` of uint8 images, eval mode, no grad.
- :func:`linear_probe_accuracy`: multinomial logistic regression on standardised features, trained
  full-batch with L-BFGS (deterministic, no learning-rate schedule to tune), L2 penalty ``weight_decay``.
- :func:`tsne_2d`: scikit-learn t-SNE with PCA initialisation on L2-normalised features (cosine geometry,
  as the k-NN of :mod:`rtsseg.knn`).
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm


@torch.no_grad()
def extract_embeddings(
    backbone: nn.Module,
    images: torch.Tensor,  # uint8 [N,3,H,W]
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: bool = True,
    input_size: int | tuple[int, int] | None = None,
) -> torch.Tensor:
    """Pooled embeddings ``float32 [N,D]`` on the CPU.

    Each batch goes through ``backbone.prepare`` (float, resized to ``input_size`` when given, normalised)
    and then ``backbone(x) -> [B,D]``.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images [N,3,H,W], got {tuple(images.shape)}")
    was_training = backbone.training
    backbone = backbone.to(device).eval()
    out = []
    for start in tqdm(range(0, len(images), batch_size), desc="embeddings", disable=not progress, leave=False):
        x = backbone.prepare(images[start : start + batch_size].to(device), input_size)  # [B,3,S,S]
        out.append(backbone(x).float().cpu())  # [B,D]
    backbone.train(was_training)
    return torch.cat(out) if out else torch.empty(0, getattr(backbone, "embed_dim", 0))


def standardize(train_x: torch.Tensor, test_x: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero mean, unit variance per feature, with the statistics of ``train_x`` only."""
    mean, std = train_x.mean(0, keepdim=True), train_x.std(0, keepdim=True)
    return (train_x - mean) / (std + eps), (test_x - mean) / (std + eps)


def linear_probe_accuracy(
    train_x: torch.Tensor,  # [N,D]
    train_y: torch.Tensor,  # [N] int64
    test_x: torch.Tensor,  # [M,D]
    test_y: torch.Tensor,  # [M] int64
    num_classes: int,
    epochs: int = 100,
    lr: float = 1.0,
    weight_decay: float = 1e-4,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> float:
    """Top-1 accuracy (in [0, 1]) of a logistic regression trained on ``train_x`` and tested on ``test_x``.

    Loss: mean cross-entropy + ``weight_decay / 2 * ||W||²`` (bias not penalised), minimised full-batch by
    L-BFGS (strong-Wolfe line search) for at most ``epochs`` iterations, step size ``lr``.
    """
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise ValueError("features and labels differ in length")
    for name, y in (("train", train_y), ("test", test_y)):
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"{name} labels outside [0, {num_classes})")
    gen = torch.Generator().manual_seed(seed)
    xtr, xte = standardize(train_x.double(), test_x.double())
    xtr, xte = xtr.to(device), xte.to(device)
    ytr = train_y.long().to(device)
    weight = (torch.randn(num_classes, xtr.shape[1], generator=gen, dtype=torch.float64) * 0.01).to(device)
    weight.requires_grad_(True)
    bias = torch.zeros(num_classes, dtype=torch.float64, device=device, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=lr, max_iter=epochs, history_size=20,
                                  tolerance_grad=1e-9, tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(xtr @ weight.T + bias, ytr) + 0.5 * weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        pred = (xte @ weight.T + bias).argmax(1).cpu()
    return (pred == test_y.cpu()).double().mean().item()


def tsne_2d(features: torch.Tensor | np.ndarray, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """t-SNE of L2-normalised ``features [N,D]`` -> ``[N,2]`` (PCA init, deterministic for a seed)."""
    from sklearn.manifold import TSNE

    x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
    if x.dim() != 2:
        raise ValueError(f"expected features [N,D], got {tuple(x.shape)}")
    if not perplexity < len(x):
        raise ValueError(f"perplexity {perplexity} must be smaller than the number of points {len(x)}")
    x = F.normalize(x, dim=1).numpy()
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed)
    return tsne.fit_transform(x).astype(np.float32)


tsne = tsne_2d


def plot_tsne(
    points: np.ndarray,  # [N,2]
    labels: np.ndarray | torch.Tensor,  # [N] int
    class_names: Sequence[str],
    ax: plt.Axes | None = None,
    title: str | None = None,
    max_legend: int = 20,
    size: float = 6.0,
    point_size: float = 12.0,
    legend: bool = True,
) -> plt.Figure:
    """Scatter of the t-SNE points coloured by class; a legend (10 pt) when ``legend`` and at most ``max_legend``
    classes show. ``point_size`` is matplotlib's marker area in pt² (12 pt² ~ 21 px² at 96 dpi: a readable dot);
    with ``legend=False`` the caller draws one shared legend from ``ax.get_legend_handles_labels()``."""
    points, labels = np.asarray(points), np.asarray(labels)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) != len(labels):
        raise ValueError(f"expected points [N,2] and labels [N], got {points.shape} and {labels.shape}")
    fig = ax.figure if ax is not None else plt.figure(figsize=(size, size))
    ax = ax if ax is not None else fig.add_subplot(111)
    present = np.unique(labels)
    cmap = plt.get_cmap("tab20" if len(present) > 10 else "tab10")
    for i, c in enumerate(present):
        sel = labels == c
        name = class_names[c] if 0 <= c < len(class_names) else str(c)
        ax.scatter(points[sel, 0], points[sel, 1], s=point_size, color=cmap(i % cmap.N), label=name, alpha=0.8,
                   linewidths=0)
    if legend and len(present) <= max_legend:
        ax.legend(fontsize=10, markerscale=1.5, loc="best", frameon=False)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return fig
