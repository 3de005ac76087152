"""The data of the supervised methods: the Tiny-ImageNet files (or tensors handed in) a run reads, their
fingerprint (part of the run identity) and the val top-1 on centre views."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torch.nn as nn

from rtsseg.precision import autocast
from rtsseg.ssl.supervised_augment import _normalize, center_resize


def tiny_root(cfg) -> Path:
    from rtsseg.data.tinyimagenet import tinyimagenet_root

    return Path(cfg.data_dir) if cfg.data_dir is not None else tinyimagenet_root()


def tensor_fingerprint(data) -> dict:
    """sha256 of the tensors a run was handed (``images``, ``labels``, ``boxes`` where present): the data
    identity of a run trained on tensors rather than on the data set's files (tests, experiments)."""
    h = hashlib.sha256()
    for name in ("images", "labels", "boxes"):
        t = getattr(data, name, None)
        if t is not None:
            t = torch.as_tensor(t).contiguous()
            h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode() + t.numpy().tobytes())
    return {"tensors_sha256": h.hexdigest()[:16], "n": len(data.images)}


def data_fingerprint(cfg, data=None, val_data=None) -> dict:
    """The data of a supervised run (part of its identity): the Tiny-ImageNet train and val files it reads
    (:meth:`rtsseg.data.tinyimagenet.TinyImageNet.fingerprint`), or the tensors it was handed."""
    from rtsseg.data.tinyimagenet import TinyImageNet

    out = {"train": tensor_fingerprint(data) if data is not None
           else TinyImageNet(tiny_root(cfg), "train").fingerprint(cfg.max_images_per_class)}
    if val_data is not None:
        out["val"] = tensor_fingerprint(val_data)
    elif cfg.val_per_class > 0:
        out["val"] = TinyImageNet(tiny_root(cfg), "val").fingerprint(cfg.val_per_class)
    return out


@torch.no_grad()
def top1_accuracy(backbone: nn.Module, classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                  image_size: int, device: torch.device, amp_dtype: torch.dtype | None, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``classifier(backbone(.))`` on centre views (eval mode; the caller restores train mode)."""
    backbone.eval()
    classifier.eval()
    correct = 0
    for i in range(0, len(images), batch_size):
        x = _normalize(backbone, center_resize(images[i : i + batch_size].to(device), image_size))
        with autocast(device, amp_dtype):
            logits = classifier(backbone(x))
        correct += (logits.float().argmax(1).cpu() == labels[i : i + batch_size]).sum().item()
    return correct / max(len(images), 1)


def check_data(data, needs_boxes: bool) -> None:
    images, labels = data.images, data.labels
    if images.dim() != 4 or images.shape[1] != 3 or len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"expected images [N,3,H,W] and labels [N], got {tuple(images.shape)}, {tuple(labels.shape)}")
    if needs_boxes and getattr(data, "boxes", None) is None:
        raise ValueError("attn_loss_weight > 0 needs data with boxes [N,4]: use Tiny-ImageNet (it has train boxes)")


__all__ = ["tiny_root", "tensor_fingerprint", "data_fingerprint", "top1_accuracy", "check_data"]
