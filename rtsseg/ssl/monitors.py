"""Per-epoch monitors of a Barlow Twins run: embedding spread (collapse check), weighted k-NN accuracy
(DINO: k = 20, T = 0.07, cosine) on a fixed labelled bank, and cross-correlation snapshots."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from rtsseg.knn import knn_accuracy


def embedding_std(z: torch.Tensor) -> float:
    """Mean over dimensions of the batch std of L2-normalised embeddings z [N, D].

    Collapse to a point gives 0; embeddings spread over the sphere give about 1/sqrt(D).
    """
    if z.shape[0] < 2:
        raise ValueError(f"embedding_std needs at least 2 embeddings, got {z.shape[0]}")
    return F.normalize(z.detach().float(), dim=1).std(dim=0).mean().item()


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    images: torch.Tensor,
    image_size: int,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> torch.Tensor:
    """Pooled backbone embeddings of uint8 images [N, 3, H, W] -> float32 [N, D] (CPU), eval mode.

    Inputs go through ``backbone.prepare`` (resize to ``image_size`` + normalise), the one input path.
    """
    was_training = backbone.training
    backbone.eval()
    feats = []
    for start in tqdm(range(0, len(images), batch_size), desc="features", disable=not progress, leave=False):
        x = backbone.prepare(images[start : start + batch_size].to(device), image_size)  # [b,3,S,S]
        feats.append(backbone(x).float().cpu())
    backbone.train(was_training)
    return torch.cat(feats)


class KNNMonitor:
    """k-NN accuracy of a backbone's pooled embeddings: bank = ``train_images``, queries = ``val_images``.

    ``monitor(backbone) -> dict(knn_acc, emb_std)``; ``emb_std`` is :func:`embedding_std` of the
    query embeddings (backbone representation, not projector output).
    """

    def __init__(
        self,
        train_images: torch.Tensor,  # uint8 [N, 3, H, W]
        train_labels: torch.Tensor,  # int64 [N]
        val_images: torch.Tensor,  # uint8 [M, 3, H, W]
        val_labels: torch.Tensor,  # int64 [M]
        image_size: int,
        num_classes: int | None = None,
        k: int = 20,
        temperature: float = 0.07,
        batch_size: int = 256,
    ) -> None:
        if len(train_images) != len(train_labels) or len(val_images) != len(val_labels):
            raise ValueError("k-NN monitor: images and labels differ in length")
        self.train_images, self.train_labels = train_images, train_labels.long()
        self.val_images, self.val_labels = val_images, val_labels.long()
        self.num_classes = int(num_classes or int(max(train_labels.max(), val_labels.max())) + 1)
        self.image_size, self.k, self.temperature, self.batch_size = image_size, k, temperature, batch_size

    @classmethod
    def from_tinyimagenet(
        cls,
        root: str | os.PathLike,
        image_size: int,
        train_per_class: int = 10,
        val_per_class: int = 5,
        cache_dir: str | os.PathLike | None = None,
        **kwargs,
    ) -> KNNMonitor:
        """Bank: the first ``train_per_class`` train images of each class; queries: ``val_per_class`` val images."""
        from rtsseg.data.tinyimagenet import load_tensors

        train = load_tensors(root, "train", max_per_class=train_per_class, cache_dir=cache_dir)
        val = load_tensors(root, "val", max_per_class=val_per_class, cache_dir=cache_dir)
        num_classes = len(train.classes) if hasattr(train, "classes") else None
        return cls(train.images, train.labels, val.images, val.labels, image_size, num_classes, **kwargs)

    def __call__(self, backbone: nn.Module, device: torch.device | str = "cpu", progress: bool = False) -> dict:
        bank = extract_features(backbone, self.train_images, self.image_size, self.batch_size, device, progress)
        query = extract_features(backbone, self.val_images, self.image_size, self.batch_size, device, progress)
        acc = knn_accuracy(bank, self.train_labels, query, self.val_labels, self.num_classes, self.k, self.temperature)
        return {"knn_acc": acc, "emb_std": embedding_std(query)}


def save_ccmatrix(c: torch.Tensor, path: str | os.PathLike, size: int = 64) -> Path:
    """Save the top-left ``size x size`` block of a cross-correlation matrix C [D, D] as float32 CPU tensor."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(c.detach()[:size, :size].float().cpu().clone(), path)
    return path
