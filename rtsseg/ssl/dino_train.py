"""DINO (facebookresearch/dino ``main_dino.py``) as a method of the one training engine: ``pretrain_dino(cfg)``.

    rtsseg pretrain dino --backbone vit_small64 --epochs 10 --run-parent runs/dino
    torchrun --standalone --nproc_per_node=2 -m rtsseg.ssl.engine dino ...

- Student = backbone + :class:`~rtsseg.ssl.dino.DINOHead` (:class:`~rtsseg.ssl.dino.MultiCropWrapper`), teacher
  = a copy without gradients, updated after every step by EMA with the momentum of a cosine base -> 1; the base
  follows the run length (:mod:`rtsseg.ssl.dino_schedule`: the teacher keeps at most 5 % of its random init)
  unless ``momentum_teacher`` fixes it. The teacher sees the 2 global crops, the student all 2 + N
  (:class:`~rtsseg.ssl.dino_augment.DinoMultiCrop`). DDP wraps the student; the centre is all-reduced.
- AdamW (no decay on biases and norms), lr = ``lr x batch / 256`` after a linear warm-up, cosine to ``min_lr``;
  weight decay cosine ``weight_decay -> weight_decay_end``; per-parameter gradient clipping at ``clip_grad``; the
  head's last layer frozen for the first ``freeze_last_layer`` epochs; the teacher temperature warms up per step
  over ``warmup_teacher_temp_epochs`` (fractions allowed: a share of a short run); the loss in fp32.
- ``checkpoint.pt`` holds the TEACHER backbone under ``"backbone"`` (what DINO evaluates), plus ``student``,
  ``teacher`` (wrappers incl. heads) and ``center``. History columns: knn_acc / emb_std (teacher backbone),
  loss / teacher_entropy / kl (fixed monitor crops, centre untouched), train_loss / train_entropy / train_kl
  (epoch means), and the schedules at the epoch's last step: lr, wd, momentum, teacher_temp; wall_s.
"""

from __future__ import annotations

import copy
import typing
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from rtsseg.precision import AMP_CHOICES, autocast
from rtsseg.sampling import batch_indices, epoch_permutation, step_generator
from rtsseg.schedule import cosine_scheduler
from rtsseg.ssl import distributed as D
from rtsseg.ssl.dino import (DINOHead, DINOLoss, MultiCropWrapper, cancel_gradients_last_layer, clip_gradients,
                             default_out_dim, ema_update, get_params_groups)
from rtsseg.ssl.dino_augment import CropSpec, DinoMultiCrop, default_crops
from rtsseg.ssl.dino_schedule import momentum_schedule, teacher_momentum_base, warmup_steps
from rtsseg.ssl.engine import NonFiniteLossError, fit
from rtsseg.ssl.method import OPERATIONAL_FIELDS, Context, Method, adamw, register_method, schedule_value
from rtsseg.ssl.pretrain_data import DATA_CODE, UnlabelledImages

HISTORY_FIELDS = [
    "epoch", "step", "knn_acc", "emb_std", "loss", "teacher_entropy", "kl", "train_loss", "train_entropy",
    "train_kl", "lr", "wd", "momentum", "teacher_temp", "wall_s",
]
STEP_FIELDS = ["step", "epoch", "loss", "teacher_entropy", "kl", "lr", "wd", "momentum", "teacher_temp"]
CODE = ("rtsseg.ssl.dino_train", "rtsseg.ssl.dino", "rtsseg.ssl.dino_augment", "rtsseg.ssl.dino_schedule",
        "rtsseg.ssl.augment", *DATA_CODE)
OPERATIONAL = ("data_root", "cache_dir", *OPERATIONAL_FIELDS)


@dataclass
class DinoConfig:
    """Every knob of a DINO run (``batch_size`` is the global batch over all ranks). Defaults: main_dino.py's,
    except the head width (:func:`rtsseg.ssl.dino.default_out_dim`), the crop sizes (scaled to 64 px) and the
    teacher momentum (None: from the run length, :func:`rtsseg.ssl.dino_schedule.teacher_momentum_base`)."""

    backbone: str = "vit_small64"
    weights: str | None = None
    data: str = "tinyimagenet"  # "tinyimagenet" | "synthetic"
    data_root: str | None = None
    cache_dir: str | None = None
    image_size: int = 64  # the global crop size
    epochs: int = 10
    batch_size: int = 128
    lr: float = 5e-4  # at batch 256 (scaled linearly with batch_size)
    min_lr: float = 1e-6
    warmup_epochs: float = 10.0
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    momentum_teacher: float | None = None  # None: from the run length (the teacher keeps <= 5 % of its init)
    clip_grad: float = 3.0  # 0: no clipping
    freeze_last_layer: float = 1.0  # epochs (fractions allowed: short runs freeze a fraction of their single epoch)
    out_dim: int | None = None  # None: default_out_dim(embed_dim)
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    norm_last_layer: bool = True
    use_bn_in_head: bool = False
    warmup_teacher_temp: float = 0.04
    teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: float = 0.0  # per-step linear warm-up over this many epochs (fractions allowed)
    student_temp: float = 0.1
    center_momentum: float = 0.9
    n_local_crops: int = 6
    local_size: int | None = None  # None: default_crops(image_size)
    global_scale: tuple[float, ...] | None = None  # None: (0.4, 1) with local crops, (0.14, 1) without
    local_scale: tuple[float, ...] = (0.05, 0.4)
    blur_sigma: tuple[float, ...] = (0.1, 2.0)
    max_images_per_class: int | None = None
    knn_train_per_class: int = 10
    knn_val_per_class: int = 5
    knn_k: int = 20
    knn_temperature: float = 0.07
    synthetic_images: int = 256
    synthetic_classes: int = 4
    seed: int = 0
    amp: str = "auto"
    compile: str = "none"  # "none" | torch.compile mode "default", "reduce-overhead" (+ CUDA graphs), "max-autotune"
    # operational (not part of the run identity)
    run_parent: str | None = None  # runs go to <run_parent>/<identity>; default runs_root()/dino/<backbone>
    device: str | None = None
    num_threads: int | None = None
    save_every_steps: int = 0
    restart: bool = False
    progress: bool = True
    fault_at_step: int | None = None  # tests: SIGKILL after this step
    sync_every_steps: int = 1  # read losses and scalars back every this many steps (1: every step)

    def validate(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.amp not in AMP_CHOICES:
            raise ValueError(f"amp must be one of {AMP_CHOICES}, got {self.amp!r}")
        if self.momentum_teacher is not None and not 0 <= self.momentum_teacher <= 1:
            raise ValueError(f"momentum_teacher must be in [0, 1] (or None: from the run length), got {self.momentum_teacher}")
        for name in ("warmup_epochs", "warmup_teacher_temp_epochs", "freeze_last_layer"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


def identity_config(cfg: DinoConfig) -> dict:
    """The fields that shape the result (the run identity); ``amp`` included: bf16 changes the numbers."""
    return DinoMethod(cfg).identity()


def config_from_params(params: dict, **overrides) -> DinoConfig:
    """A :class:`DinoConfig` from a notebook's parameters: every key that names a field is used (lists become
    tuples), the others (``profile``, ``backbones``, ``seeds``...) are ignored; ``overrides`` win."""
    hints = typing.get_type_hints(DinoConfig)
    values = {}
    for f in fields(DinoConfig):
        if f.name in overrides or f.name in params:
            v = overrides[f.name] if f.name in overrides else params[f.name]
            values[f.name] = tuple(v) if isinstance(v, list) else v
            if isinstance(v, int) and not isinstance(v, bool) and hints[f.name] in (float, float | None):
                values[f.name] = float(v)
    return DinoConfig(**values)


def crop_spec(cfg: DinoConfig, patch: int = 8) -> CropSpec:
    spec = default_crops(cfg.image_size, cfg.n_local_crops, patch)
    return CropSpec(spec.global_size, cfg.local_size or spec.local_size, cfg.n_local_crops,
                    tuple(cfg.global_scale) if cfg.global_scale else spec.global_scale, tuple(cfg.local_scale))


def build_models(cfg: DinoConfig) -> tuple[MultiCropWrapper, MultiCropWrapper]:
    """Student and teacher (same initial weights; teacher without gradients)."""
    from rtsseg.models import build_backbone

    backbone = build_backbone(cfg.backbone, cfg.weights)
    out_dim = cfg.out_dim or default_out_dim(int(backbone.embed_dim))
    head = DINOHead(int(backbone.embed_dim), out_dim, cfg.hidden_dim, cfg.bottleneck_dim,
                    use_bn=cfg.use_bn_in_head, norm_last_layer=cfg.norm_last_layer)
    student = MultiCropWrapper(backbone, head)
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad = False
    return student, teacher


@register_method("dino")
class DinoMethod(UnlabelledImages, Method):
    """DINO pretraining (facebookresearch/dino)"""

    config_class = DinoConfig
    code_modules = CODE
    step_fields = STEP_FIELDS[3:]
    epoch_means = {"train_loss": "loss", "train_entropy": "teacher_entropy", "train_kl": "kl"}
    history_fields = HISTORY_FIELDS
    default_parent = "dino"
    stream, monitor_stream = 2, 3  # rtsseg.sampling streams of the training and monitor crops (BT: 0, 1)

    def build(self, ctx: Context) -> torch.nn.Module:
        cfg, spe, total = self.cfg, ctx.steps_per_epoch, ctx.total_steps
        student, teacher = build_models(cfg)
        self.student, self.teacher = student.to(ctx.device), teacher.to(ctx.device)
        self.backbone = self.teacher.backbone
        bb = self.student.backbone
        self.aug = DinoMultiCrop(crop_spec(cfg, getattr(bb, "patch_size", 8)), bb.mean, bb.std, tuple(cfg.blur_sigma))
        # the temperature schedule in steps (DINOLoss's "epochs" are our steps): warm-up as a share of the run
        self.loss = DINOLoss(self.student.head.out_dim, self.aug.ncrops, cfg.warmup_teacher_temp, cfg.teacher_temp,
                             warmup_steps(cfg.warmup_teacher_temp_epochs, spe), total, cfg.student_temp,
                             cfg.center_momentum).to(ctx.device)
        base = cfg.momentum_teacher if cfg.momentum_teacher is not None else teacher_momentum_base(total)
        self.lr = cosine_scheduler(cfg.lr * cfg.batch_size / 256, cfg.min_lr, total, warmup_steps(cfg.warmup_epochs, spe))
        self.wd = cosine_scheduler(cfg.weight_decay, cfg.weight_decay_end, total)
        self.momentum = momentum_schedule(base, total)
        self.optimizer = adamw(get_params_groups(self.student))  # lr and wd set per step; fused on CUDA
        return self.student

    def configure_optimizer(self) -> torch.optim.Optimizer:
        return self.optimizer

    def _crops(self, idx, generator, device) -> list[torch.Tensor]:
        return self.aug(self.images[idx].to(device, non_blocking=True), generator=generator)  # 2 x [n,3,G,G] + N x [n,3,L,L]

    def make_batch(self, idx, generator, step, ctx):
        return self._crops(idx, generator, ctx.device)

    def training_step(self, model, crops, step, ctx):
        for i, group in enumerate(self.optimizer.param_groups):
            group["lr"] = float(self.lr[step])
            if i == 0:  # only the regularised group decays
                group["weight_decay"] = float(self.wd[step])
        teacher_output = self.teacher(crops[:2])  # [2n, K]: only the global crops
        loss = self.loss(model(crops), teacher_output, step)  # student [(2 + N) n, K]; the loss in fp32
        stats = self.loss.last_stats  # 0-dim tensors: the engine reads them back
        return loss, {"teacher_entropy": stats["teacher_entropy"], "kl": stats["kl"], "lr": float(self.lr[step]),
                      "wd": float(self.wd[step]), "momentum": float(self.momentum[step]),
                      "teacher_temp": stats["teacher_temp"]}

    def before_optimizer_step(self, model, scaler, step, ctx):
        if self.cfg.clip_grad:
            scaler.unscale_(self.optimizer)
            clip_gradients(self.student, self.cfg.clip_grad)
        # fractional epoch step / steps_per_epoch: identical to the official per-epoch rule for integer values
        cancel_gradients_last_layer(step / ctx.steps_per_epoch, self.student, self.cfg.freeze_last_layer)

    def after_optimizer_step(self, step, ctx):
        ema_update(self.student, self.teacher, float(self.momentum[step]))

    @torch.no_grad()
    def monitor(self, step: int, ctx: Context) -> dict:
        """Loss, teacher entropy and KL on one fixed batch of crops (the same draws every epoch) with the current
        centre and the temperature of ``step``; centre and BatchNorm statistics untouched. Averaged over ranks."""
        cfg, info = self.cfg, ctx.info
        idx = batch_indices(epoch_permutation(len(self.images), cfg.seed, 0), 0, cfg.batch_size, info.rank,
                            info.world_size)
        crops = self._crops(idx, step_generator(cfg.seed, 0, info.rank, stream=self.monitor_stream), ctx.device)
        center = self.loss.center.clone()
        buffers = [{k: v.clone() for k, v in m.named_buffers()} for m in (self.student, self.teacher)]
        with autocast(ctx.device, ctx.amp_dtype):
            t, s = self.teacher(crops[:2]), self.student(crops)
        loss = self.loss(s, t, step)
        self.loss.center.copy_(center)
        for m, b in zip((self.student, self.teacher), buffers):
            m.load_state_dict(b, strict=False)
        out = {"loss": loss.item(), **{k: self.loss.last_stats[k].item() for k in ("teacher_entropy", "kl")}}
        return {k: D.reduce_mean_scalar(v, ctx.device) for k, v in out.items()}

    def validate(self, epoch, step, ctx):
        i = min(max(step - 1, 0), ctx.total_steps - 1)  # the epoch's last step
        ev = self.monitor(i, ctx)
        if not ctx.info.is_main:
            return {}
        return {**self.knn(self.teacher.backbone, ctx.device), **ev, "lr": schedule_value(self.lr, i),
                "wd": schedule_value(self.wd, i), "momentum": schedule_value(self.momentum, i),
                "teacher_temp": self.loss.teacher_temp_at(i)}

    def state_dict(self) -> dict:
        return {"backbone": self.teacher.backbone.state_dict(), "student": self.student.state_dict(),
                "teacher": self.teacher.state_dict(), "center": self.loss.center.detach().cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        self.student.load_state_dict(state["student"])
        self.teacher.load_state_dict(state["teacher"])
        self.loss.center.copy_(state["center"])


def pretrain_dino(cfg: DinoConfig) -> Path:
    """Train (or resume, or skip when finished) a DINO run; return its run folder."""
    return fit(cfg, DinoMethod)


__all__ = ["DinoConfig", "DinoMethod", "pretrain_dino", "identity_config", "config_from_params", "build_models",
           "crop_spec", "NonFiniteLossError", "HISTORY_FIELDS"]
