"""Weighted k-NN classification on frozen embeddings, as in DINO's ``eval_knn.py`` (k=20, T=0.07).

Each test embedding votes with its k most cosine-similar training embeddings, each vote weighted
by exp(similarity / T); the class with the largest summed weight wins.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def knn_predict(
    train_features: torch.Tensor,  # [N, D]
    train_labels: torch.Tensor,  # [N] int64
    test_features: torch.Tensor,  # [M, D]
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Return predicted labels ``[M]`` by temperature-weighted k-NN voting on cosine similarity."""
    if train_features.shape[0] != train_labels.shape[0]:
        raise ValueError(f"{train_features.shape[0]} train features but {train_labels.shape[0]} labels")
    k = min(k, train_features.shape[0])
    bank = F.normalize(train_features.float(), dim=1)  # [N, D]
    preds = []
    for start in range(0, test_features.shape[0], chunk_size):
        query = F.normalize(test_features[start : start + chunk_size].float(), dim=1)  # [m, D]
        sim, idx = (query @ bank.T).topk(k, dim=1)  # [m, k]
        weights = (sim / temperature).exp()  # [m, k]
        votes = torch.zeros(query.shape[0], num_classes, dtype=weights.dtype)
        votes.scatter_add_(1, train_labels[idx], weights)  # [m, C]
        preds.append(votes.argmax(dim=1))
    return torch.cat(preds)


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
) -> float:
    """Top-1 accuracy (in [0, 1]) of :func:`knn_predict`."""
    pred = knn_predict(train_features, train_labels, test_features, num_classes, k, temperature)
    return (pred == test_labels).float().mean().item()
