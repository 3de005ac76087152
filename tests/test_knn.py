"""DINO weighted k-NN: separable clusters, temperature weighting, input checks."""

from __future__ import annotations

import math

import pytest
import torch

from rtsseg.knn import knn_accuracy, knn_predict


def clusters(n_per_class: int, num_classes: int, dim: int, seed: int, spread: float = 0.05):
    g = torch.Generator().manual_seed(seed)
    centres = torch.eye(num_classes, dim) * 3  # orthogonal directions: cosine-separable
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    return centres[labels] + spread * torch.randn(len(labels), dim, generator=g), labels


def test_separable_clusters_give_100_percent():
    tx, ty = clusters(20, 5, 16, seed=0)
    vx, vy = clusters(10, 5, 16, seed=1)
    assert knn_accuracy(tx, ty, vx, vy, num_classes=5, k=10) == 1.0


def test_chunking_does_not_change_predictions():
    tx, ty = clusters(20, 5, 16, seed=0, spread=1.5)
    vx, _ = clusters(10, 5, 16, seed=1, spread=1.5)
    a = knn_predict(tx, ty, vx, 5, k=7, chunk_size=3)
    b = knn_predict(tx, ty, vx, 5, k=7, chunk_size=1000)
    assert torch.equal(a, b)


def test_temperature_weighting_beats_majority():
    # query on the x axis; one class-0 neighbour at cosine 1, two class-1 neighbours at cosine 0.5
    s = math.sqrt(3) / 2
    train = torch.tensor([[1.0, 0.0], [0.5, s], [0.5, -s], [-1.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 0])
    query = torch.tensor([[2.0, 0.0]])  # norm does not matter: cosine similarity
    # T = 0.07: exp(1/0.07) > 2 exp(0.5/0.07), the close neighbour wins against the majority of k=3
    assert knn_predict(train, labels, query, 2, k=3, temperature=0.07).item() == 0
    # a large temperature makes the weights nearly equal: plain majority vote
    assert knn_predict(train, labels, query, 2, k=3, temperature=100.0).item() == 1


def test_k_larger_than_bank_is_clamped():
    train, labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])
    assert knn_predict(train, labels, torch.tensor([[1.0, 0.1]]), 2, k=20).item() == 0


def test_label_count_mismatch_raises():
    with pytest.raises(ValueError):
        knn_predict(torch.randn(4, 3), torch.zeros(3, dtype=torch.long), torch.randn(2, 3), 2)
