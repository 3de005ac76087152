"""Supervised baseline with the pretraining budget: the same backbone, images, size and epochs as the
Barlow Twins run, trained with labels (cross-entropy on a linear classifier; AdamW, warmup + cosine).

Augmentation is the classic supervised pair, random resized crop + horizontal flip, done batched on the
device with one ``grid_sample`` per batch (:func:`random_resized_crop_flip`). Unlike torchvision's
rejection sampling, a crop whose side would exceed the image is clamped to it.

``train_supervised(cfg)`` writes into ``cfg.run_dir``: ``checkpoint.pt`` (keys ``backbone`` — a state_dict
that ``build_backbone(name, weights=path)`` loads —, ``classifier``, ``optimizer``, ``epoch``, ``config``),
``history.csv`` (epoch, loss, train_acc, lr, wall_s) and ``config.json``; files are replaced atomically at
each epoch boundary, and a run restarts from its checkpoint. Every epoch draws its order and
augmentations from a generator seeded with ``(seed, epoch)``, so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from rtsseg.checkpoint import load_checkpoint


@dataclass
class SupervisedConfig:
    backbone: str = "resnet_small"
    image_size: int = 64
    epochs: int = 100
    batch_size: int = 256
    lr: float = 1e-3  # AdamW peak learning rate
    weight_decay: float = 0.05
    warmup_epochs: float = 5.0
    seed: int = 0
    max_images_per_class: int | None = None  # None: the 100 train images per class of the shared subset
    crop_scale: tuple[float, float] = (0.25, 1.0)  # RandomResizedCrop area fraction
    data_dir: str | None = None  # tiny-imagenet-200 folder; default <data_root>/tiny-imagenet-200
    run_dir: str | None = None  # default <runs_root>/supervised/<backbone>_<size>px_<epochs>ep_seed<seed>
    device: str | None = None  # default: cuda when available
    amp: bool = True  # bfloat16 autocast on CUDA
    progress: bool = True

    def resolved_run_dir(self) -> Path:
        if self.run_dir is not None:
            return Path(self.run_dir)
        from rtsseg.config import runs_root

        name = f"{self.backbone}_{self.image_size}px_{self.epochs}ep_seed{self.seed}"
        return runs_root() / "supervised" / name


def random_resized_crop_flip(
    images: torch.Tensor,  # uint8 [B,3,H,W] (or float in [0,1])
    size: int,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.25, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip_p: float = 0.5,
) -> torch.Tensor:
    """Batched RandomResizedCrop + horizontal flip -> float in [0, 1] ``[B,3,size,size]`` (bilinear).

    Random numbers come from ``generator`` (CPU) so results do not depend on the device.
    """
    b = images.shape[0]
    x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    area = torch.empty(b).uniform_(*scale, generator=generator)  # fraction of the image area
    log_r = torch.empty(b).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    r = log_r.exp()  # width / height
    w = (area * r).sqrt().clamp(max=1.0)  # crop width as a fraction of the image width
    h = (area / r).sqrt().clamp(max=1.0)
    cx = (torch.rand(b, generator=generator) * 2 - 1) * (1 - w)  # crop centre in [-1, 1] coordinates
    cy = (torch.rand(b, generator=generator) * 2 - 1) * (1 - h)
    flip = torch.where(torch.rand(b, generator=generator) < flip_p, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = w * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    grid = F.affine_grid(theta.to(x.device), [b, 3, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False).clamp(0, 1)


def center_resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``[B,3,H,W]`` -> float in [0,1] ``[B,3,size,size]`` (no augmentation)."""
    x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warmup over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return base * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_write_text(text: str, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_history(rows: list[dict], path: Path) -> None:
    fields = ["epoch", "loss", "train_acc", "lr", "wall_s"]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _load_train_tensors(cfg: SupervisedConfig):
    from rtsseg.config import runs_root
    from rtsseg.data.tinyimagenet import load_tensors, tinyimagenet_root

    root = Path(cfg.data_dir) if cfg.data_dir is not None else tinyimagenet_root()
    return load_tensors(root, "train", max_per_class=cfg.max_images_per_class, cache_dir=runs_root() / "cache",
                        progress=cfg.progress)


def train_supervised(
    cfg: SupervisedConfig,
    backbone_factory: Callable[[str], nn.Module] | None = None,
    data=None,
) -> Path:
    """Train ``backbone + Linear(embed_dim, classes)`` with cross-entropy; return the run directory.

    ``backbone_factory(name)`` defaults to ``rtsseg.models.build_backbone``; ``data`` (an object with
    ``images uint8 [N,3,H,W]`` and ``labels int64 [N]``) defaults to the Tiny-ImageNet train tensors.
    """
    from rtsseg.config import default_device

    run_dir = cfg.resolved_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / "checkpoint.pt"
    device = torch.device(cfg.device) if cfg.device else default_device()
    if backbone_factory is None:
        from rtsseg.models import build_backbone as backbone_factory
    data = data if data is not None else _load_train_tensors(cfg)
    images, labels = data.images, data.labels.long()
    if images.dim() != 4 or images.shape[1] != 3 or len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"expected images [N,3,H,W] and labels [N], got {tuple(images.shape)}, {tuple(labels.shape)}")
    num_classes = int(labels.max()) + 1 if not hasattr(data, "classes") else len(data.classes)

    torch.manual_seed(cfg.seed)
    backbone = backbone_factory(cfg.backbone).to(device)
    classifier = nn.Linear(backbone.embed_dim, num_classes).to(device)
    params = [{"params": [p for p in [*backbone.parameters(), *classifier.parameters()] if p.ndim > 1]},
              {"params": [p for p in [*backbone.parameters(), *classifier.parameters()] if p.ndim <= 1],
               "weight_decay": 0.0}]  # no decay on biases and norm weights
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(images) / cfg.batch_size)
    total, warmup = cfg.epochs * steps_per_epoch, round(cfg.warmup_epochs * steps_per_epoch)

    start_epoch, history = 0, []
    if ckpt_path.exists():
        state = load_checkpoint(ckpt_path, map_location=device)
        backbone.load_state_dict(state["backbone"])
        classifier.load_state_dict(state["classifier"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, history = state["epoch"], state["history"]
    _atomic_write_text(json.dumps(asdict(cfg), indent=2, default=str), run_dir / "config.json")

    images, labels = images.to(device), labels.to(device)
    use_amp = cfg.amp and device.type == "cuda"
    for epoch in tqdm(range(start_epoch, cfg.epochs), desc="supervised", disable=not cfg.progress,
                      initial=start_epoch, total=cfg.epochs):
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        backbone.train()
        classifier.train()
        t0, loss_sum, correct = time.perf_counter(), 0.0, 0
        order = torch.randperm(len(images), generator=gen).to(device)
        for i, start in enumerate(range(0, len(images), cfg.batch_size)):
            lr = lr_at(epoch * steps_per_epoch + i, total, warmup, cfg.lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            idx = order[start : start + cfg.batch_size]
            x = backbone.normalize(random_resized_crop_flip(images[idx], cfg.image_size, gen, cfg.crop_scale))
            y = labels[idx]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = classifier(backbone(x))  # [B,classes]
                loss = F.cross_entropy(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == y).sum().item()
        history.append({"epoch": epoch + 1, "loss": loss_sum / len(images), "train_acc": correct / len(images),
                        "lr": lr, "wall_s": time.perf_counter() - t0})
        _atomic_torch_save({"backbone": backbone.state_dict(), "classifier": classifier.state_dict(),
                            "optimizer": optimizer.state_dict(), "epoch": epoch + 1, "history": history,
                            "config": asdict(cfg), "num_classes": num_classes}, ckpt_path)
        _write_history(history, run_dir / "history.csv")
    return run_dir
