"""DINO pretraining in the style of facebookresearch/dino ``main_dino.py``: set-up in :func:`pretrain_dino`,
the loop in :func:`train_one_epoch`. One entry point for ``python -m rtsseg.ssl.dino_train`` and ``torchrun``.

    python -m rtsseg.ssl.dino_train --backbone vit_small64 --epochs 10 --run-dir runs/dino
    torchrun --standalone --nproc_per_node=2 -m rtsseg.ssl.dino_train ...

- Student = backbone + :class:`~rtsseg.ssl.dino.DINOHead` (through :class:`~rtsseg.ssl.dino.MultiCropWrapper`),
  teacher = a copy without gradients, updated by EMA with momentum cosine 0.996 -> 1 per step; the teacher
  sees the 2 global crops, the student all 2 + N crops (:class:`~rtsseg.ssl.dino_augment.DinoMultiCrop`).
- AdamW (no decay on biases and norms), lr = ``lr x batch / 256`` after a linear warm-up, cosine to
  ``min_lr``; weight decay cosine ``weight_decay -> weight_decay_end``; per-parameter gradient clipping at
  ``clip_grad``; the head's last layer frozen for the first ``freeze_last_layer`` epochs (a float: the
  cpu profile trains 1 epoch and freezes 0.1 of it); bf16 autocast
  (:func:`rtsseg.precision.autocast_dtype`); the loss is computed in fp32.
- Data order and augmentation draws: :mod:`rtsseg.sampling` (functions of seed, epoch/step, rank only), so a
  killed and resumed run ends with bit-identical weights. DDP over gloo (CPU) / nccl (CUDA) wraps the student;
  the centre of the loss is all-reduced, the teacher is a plain module (identical on every rank).
- Run folder: :func:`rtsseg.rundir.open_run` (identity = config + code, lock, resume). ``checkpoint.pt``
  holds the TEACHER backbone under ``"backbone"`` (``build_backbone(name, weights=path)`` loads it; DINO
  evaluates the teacher), plus ``student``, ``teacher`` (wrappers incl. heads), ``center``, ``optimizer``,
  ``scaler``, RNG states, step. ``history.csv`` (one row per epoch, epoch 0 = before training) and
  ``steps.csv`` (one row per step).

History columns: knn_acc / emb_std (teacher backbone, :class:`~rtsseg.ssl.monitors.KNNMonitor`), loss /
teacher_entropy / kl (fixed monitor crops, current centre and temperature, centre not updated),
train_loss / train_entropy / train_kl (means over the epoch's steps), and the schedules' values at the
epoch's last step: lr, wd, momentum, teacher_temp; wall_s is cumulative over resumes.
"""

from __future__ import annotations

import copy
import math
import os
import signal
import sys
import time
import typing
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from rtsseg.precision import autocast, autocast_dtype
from rtsseg.rundir import code_digest, open_run
from rtsseg.sampling import batch_indices, epoch_permutation, step_generator
from rtsseg.schedule import cosine_scheduler
from rtsseg.ssl import distributed as D
from rtsseg.ssl.dino import (
    DINOHead,
    DINOLoss,
    MultiCropWrapper,
    cancel_gradients_last_layer,
    clip_gradients,
    default_out_dim,
    ema_update,
    get_params_groups,
)
from rtsseg.ssl.dino_augment import CropSpec, DinoMultiCrop, default_crops
from rtsseg.ssl.monitors import KNNMonitor

HISTORY_FIELDS = [
    "epoch", "step", "knn_acc", "emb_std", "loss", "teacher_entropy", "kl", "train_loss", "train_entropy",
    "train_kl", "lr", "wd", "momentum", "teacher_temp", "wall_s",
]
STEP_FIELDS = ["step", "epoch", "loss", "teacher_entropy", "kl", "lr", "wd", "momentum"]
TRAIN_STREAM, MONITOR_STREAM = 2, 3  # rtsseg.sampling streams of the training and monitor crops (BT: 0, 1)


class NonFiniteLossError(RuntimeError):
    """The DINO loss became NaN or inf (the run stops; the last good checkpoint is kept)."""


@dataclass
class DinoConfig:
    """Every knob of a DINO run (``batch_size`` is the global batch over all ranks). Defaults: main_dino.py's,
    except the head width (:func:`rtsseg.ssl.dino.default_out_dim`) and the crop sizes (scaled to 64 px)."""

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
    momentum_teacher: float = 0.996
    clip_grad: float = 3.0  # 0: no clipping
    freeze_last_layer: float = 1.0  # epochs (fractions allowed: short runs freeze a fraction of their single epoch)
    out_dim: int | None = None  # None: default_out_dim(embed_dim)
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    norm_last_layer: bool = True
    use_bn_in_head: bool = False
    warmup_teacher_temp: float = 0.04
    teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: int = 0
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
    # operational (not part of the run identity)
    run_parent: str | None = None  # runs go to <run_parent>/<identity>; default runs_root()/dino/<backbone>
    device: str | None = None
    amp: str = "auto"
    num_threads: int | None = None
    save_every_steps: int = 0
    restart: bool = False
    progress: bool = True
    fault_at_step: int | None = None  # tests: SIGKILL after this step


OPERATIONAL = ("data_root", "cache_dir", "run_parent", "device", "num_threads", "save_every_steps", "restart", "progress",
               "fault_at_step")
CODE = ("rtsseg.ssl", "rtsseg.models", "rtsseg.data", "rtsseg.sampling", "rtsseg.schedule", "rtsseg.precision")


def identity_config(cfg: DinoConfig) -> dict:
    """The fields that shape the result (the run identity); ``amp`` included: bf16 changes the numbers."""
    d = asdict(cfg)
    for k in OPERATIONAL:
        d.pop(k)
    return d


def config_from_params(params: dict, **overrides) -> DinoConfig:
    """A :class:`DinoConfig` from a notebook's parameters: every key that names a field is used (lists become
    tuples), the others (``profile``, ``backbones``, ``seeds``...) are ignored; ``overrides`` win."""
    hints = typing.get_type_hints(DinoConfig)
    values = {}
    for f in fields(DinoConfig):
        if f.name in overrides or f.name in params:
            v = overrides[f.name] if f.name in overrides else params[f.name]
            values[f.name] = tuple(v) if isinstance(v, list) else v
            if v is not None and hints[f.name] is float and isinstance(v, int):
                values[f.name] = float(v)
    return DinoConfig(**values)


def crop_spec(cfg: DinoConfig, patch: int = 8) -> CropSpec:
    spec = default_crops(cfg.image_size, cfg.n_local_crops, patch)
    return CropSpec(
        spec.global_size, cfg.local_size or spec.local_size, cfg.n_local_crops,
        tuple(cfg.global_scale) if cfg.global_scale else spec.global_scale, tuple(cfg.local_scale),
    )


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


@dataclass
class Schedules:
    """Per-step values (float64 [total_steps]), read before each step: ``lr[it]``, ``wd[it]``, ``momentum[it]``."""

    lr: np.ndarray
    wd: np.ndarray
    momentum: np.ndarray

    @classmethod
    def from_config(cls, cfg: DinoConfig, steps_per_epoch: int) -> Schedules:
        total = cfg.epochs * steps_per_epoch
        return cls(
            lr=cosine_scheduler(cfg.lr * cfg.batch_size / 256, cfg.min_lr, total, round(cfg.warmup_epochs * steps_per_epoch)),
            wd=cosine_scheduler(cfg.weight_decay, cfg.weight_decay_end, total),
            momentum=cosine_scheduler(cfg.momentum_teacher, 1.0, total),
        )


def _unwrap(m: nn.Module) -> nn.Module:
    return m.module if isinstance(m, nn.parallel.DistributedDataParallel) else m


def train_one_epoch(
    student: nn.Module,
    teacher: MultiCropWrapper,
    dino_loss: DINOLoss,
    images: torch.Tensor,
    aug: DinoMultiCrop,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    sched: Schedules,
    epoch: int,
    start_step: int,
    steps_per_epoch: int,
    cfg: DinoConfig,
    info: D.DistInfo,
    amp_dtype: torch.dtype | None,
    on_step: typing.Callable[[int, dict], None],
) -> dict:
    """Steps ``start_step .. (epoch + 1) * steps_per_epoch - 1`` (global indices) of ``epoch``; returns the
    means of loss, teacher entropy and KL over the steps run. ``on_step(step_done, row)`` runs after each
    step (logging, checkpoints, the fault injection)."""
    perm = epoch_permutation(len(images), cfg.seed, epoch)
    sums, n = {"loss": 0.0, "teacher_entropy": 0.0, "kl": 0.0}, 0
    student.train()
    for it in range(start_step, (epoch + 1) * steps_per_epoch):
        idx = batch_indices(perm, it - epoch * steps_per_epoch, cfg.batch_size, info.rank, info.world_size)
        x = images[idx].to(info.device, non_blocking=True)  # uint8 [n, 3, H, W]
        crops = aug(x, generator=step_generator(cfg.seed, it, info.rank, stream=TRAIN_STREAM))  # 2 x [n, 3, G, G] + N x [n, 3, L, L]
        for i, group in enumerate(optimizer.param_groups):
            group["lr"] = float(sched.lr[it])
            if i == 0:  # only the regularised group decays
                group["weight_decay"] = float(sched.wd[it])
        with autocast(info.device, amp_dtype):
            teacher_output = teacher(crops[:2])  # [2n, K]: only the global crops
            student_output = student(crops)  # [(2 + N) n, K]
        loss = dino_loss(student_output, teacher_output, epoch)  # fp32
        if not math.isfinite(loss.item()):
            raise NonFiniteLossError(
                f"DINO loss is {loss.item()} at step {it} (epoch {epoch}); lower lr / clip_grad, or use amp=none")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.clip_grad:
            scaler.unscale_(optimizer)
            clip_gradients(student, cfg.clip_grad)
        # fractional epoch it / steps_per_epoch: identical to the official per-epoch rule for integer values
        cancel_gradients_last_layer(it / steps_per_epoch, student, cfg.freeze_last_layer)
        scaler.step(optimizer)
        scaler.update()
        ema_update(_unwrap(student), teacher, float(sched.momentum[it]))
        stats = dino_loss.last_stats
        row = {"step": it + 1, "epoch": epoch + 1, "loss": loss.item(), "teacher_entropy": stats["teacher_entropy"],
               "kl": stats["kl"], "lr": float(sched.lr[it]), "wd": float(sched.wd[it]),
               "momentum": float(sched.momentum[it])}
        for k in sums:
            sums[k] += row[k]
        n += 1
        on_step(it + 1, row)
    return {k: (v / n if n else float("nan")) for k, v in sums.items()}


@torch.no_grad()
def evaluate_dino(
    student: MultiCropWrapper, teacher: MultiCropWrapper, dino_loss: DINOLoss, images: torch.Tensor,
    aug: DinoMultiCrop, cfg: DinoConfig, info: D.DistInfo, amp_dtype: torch.dtype | None, epoch: int,
) -> dict:
    """Loss, teacher entropy and KL on one fixed batch of crops (same draws every epoch), with the current
    centre and the temperature of ``epoch``; the centre is left untouched. Averaged over ranks."""
    perm = epoch_permutation(len(images), cfg.seed, 0)
    idx = batch_indices(perm, 0, cfg.batch_size, info.rank, info.world_size)
    crops = aug(images[idx].to(info.device), generator=step_generator(cfg.seed, 0, info.rank, stream=MONITOR_STREAM))
    center = dino_loss.center.clone()
    buffers = [{k: v.clone() for k, v in m.named_buffers()} for m in (student, teacher)]
    with autocast(info.device, amp_dtype):
        t, s = teacher(crops[:2]), student(crops)
    loss = dino_loss(s, t, epoch)
    dino_loss.center.copy_(center)
    for m, b in zip((student, teacher), buffers):  # BatchNorm running statistics: monitoring changes nothing
        m.load_state_dict(b, strict=False)
    out = {"loss": loss.item(), **{k: dino_loss.last_stats[k] for k in ("teacher_entropy", "kl")}}
    return {k: D.reduce_mean_scalar(v, info.device) for k, v in out.items()}


def pretrain_dino(cfg: DinoConfig) -> Path:
    """Train (or resume) a DINO run; return its run folder (holding ``checkpoint.pt`` and ``history.csv``)."""
    from rtsseg.config import runs_root, seed_everything
    from rtsseg.ssl.train import build_knn_monitor, load_training_images, run_config

    info = D.init_from_env(cfg.device)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if cfg.batch_size % info.world_size:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the {info.world_size} ranks")
    parent = Path(cfg.run_parent) if cfg.run_parent else runs_root() / "dino" / cfg.backbone
    run = open_run(parent, run_config(identity_config(cfg), cfg, info.device), code_digest(*CODE), restart=cfg.restart,
                   primary=info.is_main)
    try:
        run_dir = _train(cfg, run, info, seed_everything, build_knn_monitor, load_training_images)
    except BaseException:
        run.close("failed")
        raise
    run.close()
    return run_dir


def _train(cfg, run, info, seed_everything, build_knn_monitor, load_training_images) -> Path:
    seed_everything(cfg.seed)  # same initial weights on every rank
    images = load_training_images(cfg)  # uint8 [N, 3, H, W]
    steps_per_epoch = len(images) // cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{len(images)} images are fewer than one batch of {cfg.batch_size}: lower batch_size")
    total_steps = cfg.epochs * steps_per_epoch
    sched = Schedules.from_config(cfg, steps_per_epoch)
    knn: KNNMonitor | None = build_knn_monitor(cfg) if info.is_main else None

    student, teacher = build_models(cfg)
    student, teacher = student.to(info.device), teacher.to(info.device)
    backbone = student.backbone
    aug = DinoMultiCrop(crop_spec(cfg, getattr(backbone, "patch_size", 8)), backbone.mean, backbone.std,
                        tuple(cfg.blur_sigma))
    dino_loss = DINOLoss(
        student.head.out_dim, aug.ncrops, cfg.warmup_teacher_temp, cfg.teacher_temp, cfg.warmup_teacher_temp_epochs,
        cfg.epochs, cfg.student_temp, cfg.center_momentum,
    ).to(info.device)
    amp_dtype = autocast_dtype(cfg.amp, info.device)
    optimizer = torch.optim.AdamW(get_params_groups(student))  # lr and wd set per step
    scaler = torch.amp.GradScaler(info.device.type, enabled=amp_dtype == torch.float16)

    step, wall_offset = 0, 0.0
    state = run.load() if info.is_main else None
    if info.world_size > 1:  # ranks > 0 read the checkpoint rank 0 verified
        D.barrier()
        if not info.is_main and run.checkpoint.exists():
            from rtsseg.checkpoint import load_checkpoint

            state = load_checkpoint(run.checkpoint)
    if state is not None:
        if int(state["steps_per_epoch"]) != steps_per_epoch:
            raise ValueError(f"{run.checkpoint}: {state['steps_per_epoch']} steps per epoch, this run has "
                             f"{steps_per_epoch}: restart the run")
        student.load_state_dict(state["student"])
        teacher.load_state_dict(state["teacher"])
        dino_loss.center.copy_(state["center"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        step, wall_offset = run.resume_position(state, info.rank, steps_per_epoch)
        if info.is_main:
            print(f"resumed {run.path} at step {step}/{total_steps}", file=sys.stderr, flush=True)

    ddp = student
    if info.world_size > 1:
        ddp = nn.parallel.DistributedDataParallel(student, device_ids=[info.local_rank] if info.device.type == "cuda" else None)
    t0 = time.perf_counter() - wall_offset

    def save(step_done: int) -> None:
        states = D.gather_rng_states(info)
        if info.is_main:
            run.save({
                "backbone": teacher.backbone.state_dict(), "student": student.state_dict(),
                "teacher": teacher.state_dict(), "center": dino_loss.center.detach().cpu().clone(),
                "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "rng": states,
                "step": step_done, "epoch": step_done // steps_per_epoch, "steps_per_epoch": steps_per_epoch,
                "wall_s": time.perf_counter() - t0, "backbone_name": cfg.backbone,
                "embed_dim": int(teacher.backbone.embed_dim), "method": "dino",
            })
        D.barrier()

    def epoch_end(epoch: int, step_done: int) -> None:
        ev = evaluate_dino(student, teacher, dino_loss, images, aug, cfg, info, amp_dtype, max(epoch - 1, 0))
        if info.is_main:
            # epoch means from steps.csv (rank 0's local-batch values), so a resumed epoch logs the same means
            rows = [r for r in run.read_history("steps.csv") if int(r["epoch"]) == epoch]
            train = {k: float(np.mean([float(r[k]) for r in rows])) if rows else float("nan")
                     for k in ("loss", "teacher_entropy", "kl")}
            mon = knn(teacher.backbone, info.device)
            i = min(max(step_done - 1, 0), total_steps - 1)
            row = {"epoch": epoch, "step": step_done, "knn_acc": mon["knn_acc"], "emb_std": mon["emb_std"], **ev,
                   "train_loss": train["loss"], "train_entropy": train["teacher_entropy"], "train_kl": train["kl"],
                   "lr": float(sched.lr[i]), "wd": float(sched.wd[i]), "momentum": float(sched.momentum[i]),
                   "teacher_temp": dino_loss.teacher_temp_at(max(epoch - 1, 0)), "wall_s": time.perf_counter() - t0}
            run.append_history("history.csv", row, HISTORY_FIELDS)
            print(f"epoch {epoch}/{cfg.epochs} step {step_done} loss {ev['loss']:.3f} H(teacher) "
                  f"{ev['teacher_entropy']:.3f} KL {ev['kl']:.3f} knn {100 * mon['knn_acc']:.2f}%", file=sys.stderr, flush=True)
        D.barrier()

    if step == 0:
        epoch_end(0, 0)

    bar = tqdm(total=total_steps, initial=step, desc="dino", disable=not (cfg.progress and info.is_main))

    def on_step(step_done: int, row: dict) -> None:
        if info.is_main:
            run.append_history("steps.csv", row, STEP_FIELDS)
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.3f}")
        if cfg.fault_at_step is not None and step_done == cfg.fault_at_step:
            os.kill(os.getpid(), signal.SIGKILL)  # crash simulation for the resume test
        if cfg.save_every_steps and step_done % cfg.save_every_steps == 0 and step_done % steps_per_epoch:
            save(step_done)

    while step < total_steps:
        epoch = step // steps_per_epoch
        train_one_epoch(ddp, teacher, dino_loss, images, aug, optimizer, scaler, sched, epoch, step,
                                steps_per_epoch, cfg, info, amp_dtype, on_step)
        step = (epoch + 1) * steps_per_epoch
        epoch_end(epoch + 1, step)
        save(step)
    bar.close()
    if info.is_main:
        if not run.checkpoint.exists():
            save(step)
        run.finish()
    D.barrier()
    return run.path


# ------------------------------------------------------------------------------------------ FLOPs
def step_flops(
    backbone: str = "vit_small64",
    method: str = "dino",
    image_size: int = 64,
    batch_size: int = 8,
    n_local_crops: int = 6,
    local_size: int | None = None,
    out_dim: int | None = None,
    projector_dims: tuple[int, ...] = (1024, 1024, 1024),
) -> dict:
    """Counted (not timed) FLOPs of one training step per image, with :class:`torch.utils.flop_counter.FlopCounterMode`.

    ``method="dino"``: teacher forward on the 2 global crops + student forward and backward on all 2 + N
    crops (the EMA and optimiser updates, elementwise, are not counted; neither are they for Barlow Twins).
    ``method="barlow_twins"``: forward and backward of backbone + projector on the 2 views.
    Returns ``{"flops_per_image", "forward_flops_per_image", "method", ...}`` (fp32, CPU; counts matmuls
    and convolutions, which is what the counter covers).
    """
    from torch.utils.flop_counter import FlopCounterMode

    from rtsseg.models import build_backbone

    torch.manual_seed(0)
    x = torch.randint(0, 256, (batch_size, 3, image_size, image_size), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    if method == "dino":
        cfg = DinoConfig(backbone=backbone, image_size=image_size, n_local_crops=n_local_crops, local_size=local_size,
                         out_dim=out_dim)
        student, teacher = build_models(cfg)
        aug = DinoMultiCrop(crop_spec(cfg, getattr(student.backbone, "patch_size", 8)))
        crops = aug(x, g)
        loss_fn = DINOLoss(student.head.out_dim, aug.ncrops)
        with FlopCounterMode(display=False) as fwd:
            with torch.no_grad():
                t = teacher(crops[:2])
            s = student(crops)
        forward = fwd.get_total_flops()
        with FlopCounterMode(display=False) as bwd:
            loss_fn(s, t, 0).backward()
        extra = {"n_crops": aug.ncrops, "local_size": aug.spec.local_size, "out_dim": student.head.out_dim}
    elif method == "barlow_twins":
        from rtsseg.ssl.augment import BarlowTwinsAugment
        from rtsseg.ssl.model import BarlowTwins

        model = BarlowTwins(build_backbone(backbone), tuple(projector_dims))
        v1, v2 = BarlowTwinsAugment(image_size)(x, g)
        with FlopCounterMode(display=False) as fwd:
            out = model(v1, v2)
        forward = fwd.get_total_flops()
        with FlopCounterMode(display=False) as bwd:
            out["loss"].backward()
        extra = {"projector_dims": list(projector_dims)}
    else:
        raise ValueError(f"method must be 'dino' or 'barlow_twins', got {method!r}")
    total = forward + bwd.get_total_flops()
    return {"method": method, "backbone": backbone, "image_size": image_size, "flops_per_image": total / batch_size,
            "forward_flops_per_image": forward / batch_size, **extra}


def equal_flops_epochs(reference_epochs: float, reference_flops: float, flops: float) -> float:
    """Epochs of a method costing ``flops`` per image-step that match ``reference_epochs`` of a method costing
    ``reference_flops`` (same images per epoch): the equal-FLOPs budget."""
    return reference_epochs * reference_flops / flops


# ------------------------------------------------------------------------------------------ CLI
def main(argv: list[str] | None = None) -> int:
    """``python -m rtsseg.ssl.dino_train --flag value ...`` (one flag per :class:`DinoConfig` field; torchrun
    works); prints the run folder (rank 0)."""
    from rtsseg.configargs import config_from_args

    cfg = config_from_args(DinoConfig, list(sys.argv[1:] if argv is None else argv), "DINO pretraining",
                           "python -m rtsseg.ssl.dino_train")
    try:  # the one place a module:callable backbone may be named: this command line, never a file
        from rtsseg.models import register_command_line_backbone

        register_command_line_backbone(cfg.backbone)
    except KeyError as err:
        print(f"python -m rtsseg.ssl.dino_train: error: {err.args[0]}", file=sys.stderr)
        return 2
    from rtsseg.errors import DataError

    rank = int(os.environ.get("RANK", "0"))
    try:
        run_dir = pretrain_dino(cfg)
    except (DataError, ValueError) as err:  # one line naming the path or parameter and the fix
        print(f"python -m rtsseg.ssl.dino_train: error: {err}", file=sys.stderr)
        return 1
    finally:
        D.cleanup()
    if rank == 0:
        print(f"run folder: {run_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
