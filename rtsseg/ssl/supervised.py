"""Supervised baseline as a method of the one training engine: backbone + linear classifier trained with labels on
the pretraining images, ``train_supervised(cfg, data=None, val_data=None)``; with ``attn_loss_weight > 0`` the
attention-supervised control (:mod:`rtsseg.ssl.attention_supervised`).

    rtsseg pretrain supervised --backbone botnet_small --epochs 4 --augment padcrop

- Optimiser AdamW (no decay on biases, norms, CLS token, position embeddings), per-step learning rate from
  :func:`rtsseg.schedule.cosine_scheduler` (linear warm-up, cosine to 0); the loss in fp32.
- Augmentation ``augment``: ``"rrc"`` (RandomResizedCrop + flip) or ``"padcrop"`` (reflect-pad ``pad`` px + random
  crop of the original size + flip; the CIFAR recipe that suits 64 px images: botnet_small reached 17.5 % val top-1
  in 4 epochs with AdamW 2e-3, batch 128); both move the object boxes with the pixels
  (:mod:`rtsseg.ssl.supervised_augment`).
- History ``history.csv`` per epoch: epoch, step, loss, ce_loss, attn_loss, train_acc (epoch means of steps.csv),
  val_top1 (Tiny-ImageNet val, ``val_per_class`` images per class, centre view; NaN when 0), lr, wall_s.
  Checkpoint keys ``backbone`` (``build_backbone(name, weights=path)`` loads it), ``classifier``, ``num_classes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from rtsseg.models import build_backbone
from rtsseg.precision import AMP_CHOICES
from rtsseg.schedule import cosine_scheduler
from rtsseg.ssl.engine import fit
from rtsseg.ssl.lars import lars_param_groups
from rtsseg.ssl.method import OPERATIONAL_FIELDS, Method, adamw, register_method, schedule_value
from rtsseg.ssl.supervised_augment import _normalize, augment, center_resize, pad_crop_flip, random_resized_crop_flip
from rtsseg.ssl.supervised_data import check_data, data_fingerprint, tensor_fingerprint, tiny_root, top1_accuracy

#: the control's attention losses (rtsseg.attention.supervision): mass in the box, own box against the batch's
ATTN_LOSS_KINDS = ("mass", "contrastive", "both")
HISTORY_FIELDS = ["epoch", "step", "loss", "ce_loss", "attn_loss", "train_acc", "val_top1", "lr", "wall_s"]
CODE_MODULES = ("rtsseg.ssl.supervised", "rtsseg.ssl.supervised_augment", "rtsseg.ssl.supervised_data",
                "rtsseg.ssl.lars",
                "rtsseg.data.tinyimagenet", "rtsseg.data.io", "rtsseg.data.pack")
RUNTIME_FIELDS = ("data_dir", "cache_dir", *OPERATIONAL_FIELDS)
AUGMENTS = ("rrc", "padcrop")


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
    max_images_per_class: int | None = None  # None: every train image of the shared subset
    augment: str = "rrc"  # "rrc" (RandomResizedCrop + flip) | "padcrop" (reflect-pad + random crop + flip)
    crop_scale: tuple[float, float] = (0.25, 1.0)  # rrc: area fraction
    pad: int = 4  # padcrop: reflect padding in pixels
    val_per_class: int = 10  # Tiny-ImageNet val images per class for val top-1 each epoch (0: none)
    attn_loss_weight: float = 0.0  # > 0: attention-supervised positive control
    attn_loss_heads: tuple[int, ...] | None = None  # heads pulled towards the box (None: all)
    attn_layer: str | None = None  # recorded attention layer (None: the backbone's default)
    attn_loss_kind: str = "mass"  # "mass": -log(mass in the box) | "contrastive": own box vs the batch's | "both"
    amp: str = "auto"
    compile: str = "none"  # "none" | torch.compile mode "default", "reduce-overhead" (+ CUDA graphs), "max-autotune"
    data_dir: str | None = None  # tiny-imagenet-200 folder; default <data_root>/tiny-imagenet-200
    cache_dir: str | None = None  # tensor cache (default <runs_root>/cache)
    # operational (not part of the run identity)
    run_parent: str | None = None  # default <runs_root>/supervised/<backbone>_seed<seed>
    device: str | None = None  # default: cuda when available
    num_threads: int | None = None
    save_every_steps: int = 0  # 0: checkpoints at epoch ends only
    restart: bool = False
    progress: bool = True
    fault_at_step: int | None = None  # tests: SIGKILL after this step
    sync_every_steps: int = 1  # read losses and scalars back every this many steps (1: every step)

    def validate(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {AUGMENTS}, got {self.augment!r}")
        if self.amp not in AMP_CHOICES:
            raise ValueError(f"amp must be one of {AMP_CHOICES}, got {self.amp!r}")
        if self.attn_loss_weight < 0:
            raise ValueError(f"attn_loss_weight must be >= 0, got {self.attn_loss_weight}")
        if self.attn_loss_kind not in ATTN_LOSS_KINDS:
            raise ValueError(f"attn_loss_kind must be one of {ATTN_LOSS_KINDS}, got {self.attn_loss_kind!r}")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")

    def identity(self) -> dict:
        return SupervisedMethod(self).identity()


@register_method("supervised")
class SupervisedMethod(Method):
    """Supervised baseline: backbone + linear classifier, cross-entropy (attn_loss_weight > 0: the control)"""

    config_class = SupervisedConfig
    code_modules = CODE_MODULES
    step_fields = ["ce_loss", "attn_loss", "acc", "lr"]
    epoch_means = {"loss": "loss", "ce_loss": "ce_loss", "attn_loss": "attn_loss", "train_acc": "acc"}
    history_fields = HISTORY_FIELDS
    validate_at_start = False
    stream = 4
    location_fields = ("data_dir", "cache_dir")

    def __init__(self, cfg: SupervisedConfig, data=None, val_data=None) -> None:
        super().__init__(cfg)
        cfg.validate()
        if data is not None:  # handed tensors fail before any run folder is written
            check_data(data, cfg.attn_loss_weight > 0)
        self.data, self.val_data = data, val_data

    @classmethod
    def for_config(cls, cfg, data=None, val_data=None) -> Method:
        if cfg.attn_loss_weight > 0:  # the control, by its registered name (its module builds on this one)
            from rtsseg.ssl.method import method_class

            return method_class("attention-supervised")(cfg, data, val_data)
        return SupervisedMethod(cfg, data, val_data)

    def run_parent(self) -> Path:
        if self.cfg.run_parent is not None:
            return Path(self.cfg.run_parent)
        from rtsseg.config import runs_root

        return runs_root() / "supervised" / f"{self.cfg.backbone}_seed{self.cfg.seed}"

    def data_fingerprint(self) -> dict:
        return data_fingerprint(self.cfg, self.data, self.val_data)  # before the defaults fill in

    def _load_split(self, split: str, per_class: int | None):
        from rtsseg.data.tinyimagenet import load_tensors
        from rtsseg.ssl.pretrain_data import cache_dir

        return load_tensors(tiny_root(self.cfg), split, max_per_class=per_class, cache_dir=cache_dir(self.cfg),
                            progress=self.cfg.progress)

    def load_data(self, info) -> int:
        cfg = self.cfg
        data = self.data if self.data is not None else self._load_split("train", cfg.max_images_per_class)
        check_data(data, cfg.attn_loss_weight > 0)
        self.images, self.labels, self.boxes = data.images, data.labels.long(), getattr(data, "boxes", None)
        self.num_classes = len(data.classes) if hasattr(data, "classes") else int(self.labels.max()) + 1
        if self.val_data is None and cfg.val_per_class > 0 and info.is_main:
            self.val_data = self._load_split("val", cfg.val_per_class)
        return len(self.images)

    def build(self, ctx):
        cfg = self.cfg
        self.backbone = build_backbone(cfg.backbone).to(ctx.device)
        self.memory_format = getattr(self.backbone, "memory_format", torch.contiguous_format)  # NHWC for conv nets
        self.backbone = self.backbone.to(memory_format=self.memory_format)
        self.classifier = nn.Linear(self.backbone.embed_dim, self.num_classes).to(ctx.device)
        self.net = nn.Sequential(self.backbone, self.classifier)  # [B,3,S,S] -> logits [B,classes]
        groups = lars_param_groups(self.net, cfg.weight_decay)
        self.optimizer = adamw([{k: v for k, v in g.items() if k != "lars"} for g in groups], lr=cfg.lr)  # fused on CUDA
        self.lr_at = cosine_scheduler(cfg.lr, 0.0, ctx.total_steps, round(cfg.warmup_epochs * ctx.steps_per_epoch))
        return self.net

    def configure_optimizer(self):
        return self.optimizer

    def forward_loss(self, model, x, y, boxes) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits [B,classes], cross-entropy, attention loss = 0 here)."""
        logits = model(x)
        return logits, F.cross_entropy(logits.float(), y), torch.zeros((), device=x.device)

    def make_batch(self, idx, generator, step, ctx):
        cfg, boxes = self.cfg, self.boxes[idx] if self.boxes is not None else None
        x, bx = augment(cfg.augment, self.images[idx].to(ctx.device), generator, cfg.image_size, cfg.crop_scale,
                        cfg.pad, boxes)  # float [B,3,S,S] in [0,1], boxes [B,4] in output pixels (or None)
        x = _normalize(self.backbone, x).contiguous(memory_format=self.memory_format)
        return x, self.labels[idx].to(ctx.device), bx

    def training_step(self, model, batch, step, ctx):
        cfg, lr = self.cfg, float(self.lr_at[step])
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, y, bx = batch
        logits, ce, attn = self.forward_loss(model, x, y, bx)
        acc = (logits.argmax(1) == y).float().mean()
        return ce + cfg.attn_loss_weight * attn, {"ce_loss": ce.detach(), "attn_loss": attn.detach(),
                                                  "acc": acc, "lr": lr}  # tensors: the engine reads them back

    def validate(self, epoch, step, ctx):
        if not ctx.info.is_main:
            return {}
        val = float("nan")
        if self.val_data is not None and len(self.val_data.images):
            val = top1_accuracy(self.backbone, self.classifier, self.val_data.images, self.val_data.labels.long(),
                                self.cfg.image_size, ctx.device, ctx.amp_dtype)
            self.net.train()
        return {"val_top1": val, "lr": schedule_value(self.lr_at, step - 1)}

    def state_dict(self) -> dict:
        return {"backbone": self.backbone.state_dict(), "classifier": self.classifier.state_dict(),
                "num_classes": self.num_classes}

    def load_state_dict(self, state: dict) -> None:
        self.backbone.load_state_dict(state["backbone"])
        self.classifier.load_state_dict(state["classifier"])


def train_supervised(cfg: SupervisedConfig, data=None, val_data=None) -> Path:
    """Train (or resume, or skip when finished) ``backbone + Linear(embed_dim, classes)``; return the run folder.

    ``data`` (``images uint8 [N,3,H,W]``, ``labels int64 [N]``, optional ``boxes float [N,4]`` and ``classes``)
    defaults to the Tiny-ImageNet train tensors, ``val_data`` to ``val_per_class`` val images per class."""
    return fit(cfg, SupervisedMethod.for_config(cfg, data, val_data))


__all__ = ["SupervisedConfig", "SupervisedMethod", "train_supervised", "random_resized_crop_flip", "pad_crop_flip",
           "center_resize", "top1_accuracy", "data_fingerprint", "tensor_fingerprint", "HISTORY_FIELDS"]
