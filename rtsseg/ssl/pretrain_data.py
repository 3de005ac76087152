"""The images and the k-NN monitor of the self-supervised methods (Barlow Twins, DINO): Tiny-ImageNet train
images held as one uint8 tensor, or class-coloured noise (``data="synthetic"``: tests, smoke runs).

Labels are never used for training; they enter only through the k-NN monitor (:class:`KNNMonitor`: bank = the
first ``knn_train_per_class`` train images per class, queries = the first ``knn_val_per_class`` val images).
"""

from __future__ import annotations

from pathlib import Path

import torch

from rtsseg.ssl.monitors import KNNMonitor

#: the data modules whose source shapes what a Tiny-ImageNet run reads (its code digest)
DATA_CODE = ("rtsseg.ssl.pretrain_data", "rtsseg.ssl.monitors", "rtsseg.knn", "rtsseg.data.tinyimagenet",
             "rtsseg.data.io", "rtsseg.data.pack")


def synthetic_dataset(
    n: int, num_classes: int, size: int, seed: int, class_seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-coloured noise images: uint8 [n, 3, size, size] and labels int64 [n] (tests, smoke runs).

    The class colours come from ``class_seed`` (shared by every split), the noise from ``seed``."""
    labels = torch.arange(n) % num_classes
    colours = torch.rand(num_classes, 3, 1, 1, generator=torch.Generator().manual_seed(class_seed)) * 0.6 + 0.2
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(n, 3, size, size, generator=g) * 0.4 - 0.2
    return ((colours[labels] + noise).clamp(0, 1) * 255).to(torch.uint8), labels


def tiny_imagenet_root(cfg) -> Path:
    from rtsseg.config import data_root

    root = data_root(cfg.data_root)
    return root / "tiny-imagenet-200" if (root / "tiny-imagenet-200").is_dir() else root


def cache_dir(cfg) -> Path:
    from rtsseg.config import runs_root

    return Path(cfg.cache_dir) if cfg.cache_dir else runs_root() / "cache"


def load_training_images(cfg) -> torch.Tensor:
    """uint8 [N, 3, H, W] pretraining images (labels are never used for training)."""
    if cfg.data == "synthetic":
        return synthetic_dataset(cfg.synthetic_images, cfg.synthetic_classes, 32, cfg.seed)[0]
    if cfg.data == "tinyimagenet":
        from rtsseg.data.tinyimagenet import load_tensors

        return load_tensors(tiny_imagenet_root(cfg), "train", cfg.max_images_per_class, cache_dir(cfg)).images
    raise ValueError(f"unknown data {cfg.data!r}: use 'tinyimagenet' or 'synthetic'")


def data_fingerprint(cfg) -> dict:
    """The data a pretraining run reads (part of its identity, :mod:`rtsseg.data.fingerprint`): the training
    images, the k-NN monitor's bank and its queries, from one listing of each split. Another data set (2 or 3
    images per class, a changed label file) is another run; the same files in another folder are the same run.
    Synthetic data is fully described by the config."""
    if cfg.data == "synthetic":
        return {"dataset": "synthetic"}
    from rtsseg.data.tinyimagenet import TinyImageNet

    root = tiny_imagenet_root(cfg)
    train, val = TinyImageNet(root, "train"), TinyImageNet(root, "val")
    return {"train": train.fingerprint(cfg.max_images_per_class), "knn_bank": train.fingerprint(cfg.knn_train_per_class),
            "knn_queries": val.fingerprint(cfg.knn_val_per_class)}


def run_config(identity: dict, cfg, device) -> dict:
    """``identity`` + the precision ``cfg.amp`` resolves to on ``device`` + the data fingerprint: the content of a
    self-supervised run's identity (the engine adds the method's name, :func:`rtsseg.ssl.engine.run_config`)."""
    from rtsseg.precision import autocast_dtype, precision_name

    return {**identity, "precision": precision_name(autocast_dtype(cfg.amp, device)),
            "data_fingerprint": data_fingerprint(cfg)}


def build_knn_monitor(cfg) -> KNNMonitor:
    kw = dict(k=cfg.knn_k, temperature=cfg.knn_temperature)
    if cfg.data == "synthetic":
        k = cfg.synthetic_classes
        xt, yt = synthetic_dataset(k * cfg.knn_train_per_class, k, 32, cfg.seed + 1)
        xv, yv = synthetic_dataset(k * cfg.knn_val_per_class, k, 32, cfg.seed + 2)
        return KNNMonitor(xt, yt, xv, yv, cfg.image_size, cfg.synthetic_classes, **kw)
    return KNNMonitor.from_tinyimagenet(
        tiny_imagenet_root(cfg), cfg.image_size, cfg.knn_train_per_class, cfg.knn_val_per_class, cache_dir(cfg), **kw
    )


class UnlabelledImages:
    """The data half shared by the methods that pretrain on the unlabelled Tiny-ImageNet images with a k-NN monitor
    (Barlow Twins, DINO): a :class:`rtsseg.ssl.method.Method` mixin (list it first among the bases)."""

    def data_fingerprint(self) -> dict:
        return data_fingerprint(self.cfg)

    def load_data(self, info) -> int:
        self.images = load_training_images(self.cfg)  # uint8 [N, 3, H, W]
        self.knn = build_knn_monitor(self.cfg) if info.is_main else None
        return len(self.images)
