"""Barlow Twins pretraining: ``pretrain(cfg)``; command line ``rtsseg pretrain`` (:mod:`rtsseg.cli`).

    rtsseg pretrain --backbone resnet_small --epochs 10 --run-parent runs/bt
    torchrun --standalone --nproc_per_node=2 -m rtsseg.ssl.train --backbone resnet_small ...   (same CLI)

- Data: Tiny-ImageNet train images held as one uint8 tensor; per epoch an explicit permutation drawn
  from ``(seed, epoch)`` (DistributedSampler semantics: global step i takes positions
  ``[i*B, (i+1)*B)`` of the permutation, rank r the positions ``r, r+W, ...`` of that slice), last
  incomplete batch dropped (:mod:`rtsseg.sampling`). Augmentations run batched on the training device
  (:class:`rtsseg.ssl.augment.BarlowTwinsAugment`) with a generator seeded from ``(seed, step, rank)``.
- Optimisation: ``optimizer="lars"`` (conv nets; the official recipe) or ``"adamw"`` (transformers, as DINO and
  MoCo v3), learning rates from :func:`rtsseg.schedule.cosine_scheduler` (warmup, cosine to 0.001 x peak);
  CLS token, position embeddings, biases and norms get neither weight decay nor LARS adaptation (timm inits
  the CLS token at std 1e-6, which LARS's trust ratio would keep frozen). mixed precision by measurement
  (:mod:`rtsseg.precision`: bf16 where a probe finds it faster than fp32 by a margin, fp16 on CUDA without bf16); the loss, BatchNorm
  statistics and the optimizer state stay fp32. Channels-last on CUDA. DDP over gloo (CPU) or nccl (CUDA); the projector's BatchNorms and the loss use
  global-batch statistics (see :mod:`rtsseg.ssl.distributed`); ``sync_bn`` converts the backbone's
  BatchNorms to SyncBatchNorm (CUDA only).
- History columns: epoch, step, loss / on_diag / off_diag / z_std (projector output, on fixed monitor
  batches), emb_std and knn_acc (backbone embeddings of the k-NN val images), train_loss (mean over the
  epoch's steps), lr (weights), wall_s (seconds since the run started, cumulative over resumes).
- Run folder: ``<run_parent>/<12-hex identity of (config, code digest)>`` (:mod:`rtsseg.rundir`), locked
  while training. A changed hyper-parameter or training source gives a new folder; never a resume of the old run.
- Outputs in the run folder (rank 0): ``checkpoint.pt`` (atomic; model, backbone, optimiser, scaler,
  RNG states, step), ``history.csv`` (one row per epoch, epoch 0 = before training), ``steps.csv``
  (one row per step), ``ccmatrix_e{epoch}.pt``, ``config.json``; ``nan_diagnostic.json`` when the loss
  turns non-finite (the run stops, the last good checkpoint is kept).
- Resume: if the run folder holds a checkpoint (and not ``restart``), training continues from its step with
  the same data order and augmentation draws, so a killed and resumed run ends with the same weights; a
  finished run is not trained again.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from rtsseg.models import build_backbone  # the one backbone registry (tests register their fakes there)
from rtsseg.precision import AMP_CHOICES, autocast, autocast_dtype
from rtsseg.rundir import Run, code_digest, open_run
from rtsseg.sampling import batch_indices, epoch_permutation, step_generator
from rtsseg.schedule import cosine_scheduler
from rtsseg.ssl import distributed as D
from rtsseg.ssl.augment import BarlowTwinsAugment
from rtsseg.ssl.lars import LARS, lars_param_groups, set_lr
from rtsseg.ssl.model import BarlowTwins
from rtsseg.ssl.monitors import KNNMonitor, embedding_std, save_ccmatrix

HISTORY_FIELDS = [
    "epoch", "step", "loss", "on_diag", "off_diag", "emb_std", "knn_acc", "z_std", "train_loss", "lr", "wall_s",
]
STEP_FIELDS = ["step", "epoch", "loss", "on_diag", "off_diag", "lr_weights", "lr_biases"]

#: The source that shapes a pretraining result: a change here starts a new run (see rtsseg.rundir).
CODE_MODULES = (
    "rtsseg.ssl.train", "rtsseg.ssl.model", "rtsseg.ssl.loss", "rtsseg.ssl.projector", "rtsseg.ssl.lars",
    "rtsseg.ssl.augment", "rtsseg.ssl.distributed", "rtsseg.ssl.monitors", "rtsseg.models", "rtsseg.data",
    "rtsseg.sampling", "rtsseg.schedule", "rtsseg.precision",
)
#: Fields that say where or how fast a run goes, not what it computes: left out of the run identity.
RUNTIME_FIELDS = ("data_root", "cache_dir", "run_parent", "device", "num_threads", "save_every_steps", "restart",
                  "progress")
OPTIMIZERS = ("lars", "adamw")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; ``<run folder>/nan_diagnostic.json`` says where and why."""


@dataclass
class PretrainConfig:
    """Every knob of a pretraining run (``batch_size`` is the global batch over all ranks)."""

    backbone: str = "resnet_small"
    weights: str | None = None
    data: str = "tinyimagenet"  # "tinyimagenet" | "synthetic" (tests, smoke runs)
    data_root: str | None = None  # default: rtsseg.config.data_root()
    cache_dir: str | None = None  # tensor cache of the data set (default: runs_root()/cache)
    image_size: int = 64
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "lars"  # "lars" (conv nets, official) | "adamw" (transformers, as DINO / MoCo v3)
    lr_weights: float = 0.2  # LARS: peak lr of the weights at batch 256 (x batch/256)
    lr_biases: float = 0.0048  # LARS: peak lr of biases, norms, CLS token, position embeddings
    weight_decay: float = 1e-6  # LARS
    adamw_lr: float = 5e-4  # AdamW: peak lr at batch 256 (x batch/256), DINO's default
    adamw_weight_decay: float = 0.04  # AdamW (DINO's starting value), not on biases/norms/tokens/embeddings
    warmup_epochs: float = 10.0
    projector_dims: tuple[int, ...] = (8192, 8192, 8192)
    lambd: float = 0.0051
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    max_images_per_class: int | None = None
    knn_train_per_class: int = 10
    knn_val_per_class: int = 5
    knn_k: int = 20
    knn_temperature: float = 0.07
    monitor_batches: int = 1  # fixed augmented batches for the per-epoch loss, z_std and C snapshot
    ccmatrix_size: int = 64
    synthetic_images: int = 256
    synthetic_classes: int = 4
    seed: int = 0
    run_parent: str | None = None  # runs go to <run_parent>/<identity>; default runs_root()/pretrain/<backbone>
    device: str | None = None  # "cpu" | "cuda" (default: cuda if available)
    amp: str = "auto"  # "auto" (rtsseg.precision: bf16 where measured faster, fp16 on CUDA without bf16) | "bf16" | "fp16" | "none"
    channels_last: bool = True  # on CUDA, and for conv backbones (Backbone.memory_format) on CPU too
    sync_bn: bool = False  # backbone BatchNorm -> SyncBatchNorm (CUDA, more than one rank)
    num_threads: int | None = None
    save_every_steps: int = 0  # 0: checkpoints at epoch ends only
    restart: bool = False  # wipe this configuration's run folder and train from scratch
    progress: bool = True

    def validate(self) -> None:
        """Fail fast, naming the parameter and the fix."""
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (Barlow Twins standardises over the batch), got {self.batch_size}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.amp not in AMP_CHOICES:
            raise ValueError(f"amp must be one of {AMP_CHOICES}, got {self.amp!r}")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")

    def identity(self) -> dict:
        """The fields that shape the result (stored in the checkpoint, hashed into the run folder name)."""
        return {k: v for k, v in asdict(self).items() if k not in RUNTIME_FIELDS}

    def parent(self) -> Path:
        from rtsseg.config import runs_root

        return Path(self.run_parent) if self.run_parent else runs_root() / "pretrain" / self.backbone


# ----------------------------------------------------------------------------------------- data
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


def _tiny_imagenet_root(cfg: PretrainConfig) -> Path:
    from rtsseg.config import data_root

    root = data_root(cfg.data_root)
    return root / "tiny-imagenet-200" if (root / "tiny-imagenet-200").is_dir() else root


def _cache_dir(cfg: PretrainConfig) -> Path:
    from rtsseg.config import runs_root

    return Path(cfg.cache_dir) if cfg.cache_dir else runs_root() / "cache"


def load_training_images(cfg: PretrainConfig) -> torch.Tensor:
    """uint8 [N, 3, H, W] pretraining images (labels are never used for training)."""
    if cfg.data == "synthetic":
        return synthetic_dataset(cfg.synthetic_images, cfg.synthetic_classes, 32, cfg.seed)[0]
    if cfg.data == "tinyimagenet":
        from rtsseg.data.tinyimagenet import load_tensors

        return load_tensors(_tiny_imagenet_root(cfg), "train", cfg.max_images_per_class, _cache_dir(cfg)).images
    raise ValueError(f"unknown data {cfg.data!r}: use 'tinyimagenet' or 'synthetic'")


def data_fingerprint(cfg) -> dict:
    """The data a pretraining run reads (part of its identity, :mod:`rtsseg.data.fingerprint`): the training
    images, the k-NN monitor's bank (first ``knn_train_per_class`` train images per class) and its queries
    (first ``knn_val_per_class`` val images per class), from one listing of each split. Another data set (2 or
    3 images per class, a changed label file) is another run; the same files in another folder are the same run.
    Synthetic data is fully described by the config."""
    if cfg.data == "synthetic":
        return {"dataset": "synthetic"}
    from rtsseg.data.tinyimagenet import TinyImageNet

    root = _tiny_imagenet_root(cfg)
    train, val = TinyImageNet(root, "train"), TinyImageNet(root, "val")
    return {"train": train.fingerprint(cfg.max_images_per_class), "knn_bank": train.fingerprint(cfg.knn_train_per_class),
            "knn_queries": val.fingerprint(cfg.knn_val_per_class)}


def run_config(identity: dict, cfg, device) -> dict:
    """What a run's identity hashes: ``identity`` (the config fields that shape the result), the precision
    ``cfg.amp`` resolves to on ``device`` (a bf16 run and an fp32 run are different results) and the data
    fingerprint. Shared by the Barlow Twins and DINO trainers."""
    from rtsseg.precision import precision_name

    return {**identity, "precision": precision_name(autocast_dtype(cfg.amp, device)),
            "data_fingerprint": data_fingerprint(cfg)}


def build_knn_monitor(cfg: PretrainConfig) -> KNNMonitor:
    kw = dict(k=cfg.knn_k, temperature=cfg.knn_temperature)
    if cfg.data == "synthetic":
        k = cfg.synthetic_classes
        xt, yt = synthetic_dataset(k * cfg.knn_train_per_class, k, 32, cfg.seed + 1)
        xv, yv = synthetic_dataset(k * cfg.knn_val_per_class, k, 32, cfg.seed + 2)
        return KNNMonitor(xt, yt, xv, yv, cfg.image_size, cfg.synthetic_classes, **kw)
    return KNNMonitor.from_tinyimagenet(
        _tiny_imagenet_root(cfg), cfg.image_size, cfg.knn_train_per_class, cfg.knn_val_per_class, _cache_dir(cfg), **kw
    )


# ------------------------------------------------------------------------------------- optimiser
def build_optimizer(model: nn.Module, cfg: PretrainConfig) -> tuple[torch.optim.Optimizer, float, float]:
    """The optimiser with groups ``weights`` / ``biases`` (see :func:`lars_param_groups`: biases, norms, CLS
    token and position embeddings get no weight decay and no LARS adaptation) and the two peak learning rates
    at batch 256 (weights, biases)."""
    groups = lars_param_groups(model, cfg.weight_decay if cfg.optimizer == "lars" else cfg.adamw_weight_decay)
    if cfg.optimizer == "lars":
        opt: torch.optim.Optimizer = LARS(groups, lr=0.0)
        peak_w, peak_b = cfg.lr_weights, cfg.lr_biases
    else:
        opt = torch.optim.AdamW([{k: v for k, v in g.items() if k != "lars"} for g in groups], lr=0.0)
        peak_w = peak_b = cfg.adamw_lr
    return opt, peak_w, peak_b


def lr_schedules(cfg: PretrainConfig, peak_w: float, peak_b: float, total: int, warmup: int):
    scale = cfg.batch_size / 256  # linear scaling rule; cosine to 0.001 x peak (barlowtwins main.py)
    return (cosine_scheduler(peak_w * scale, peak_w * scale * 1e-3, total, warmup),
            cosine_scheduler(peak_b * scale, peak_b * scale * 1e-3, total, warmup))


# ------------------------------------------------------------------------------------- helpers
@torch.no_grad()
def evaluate_ssl(
    model: BarlowTwins,
    images: torch.Tensor,
    aug: BarlowTwinsAugment,
    cfg: PretrainConfig,
    info: D.DistInfo,
    amp_dtype: torch.dtype | None,
) -> dict:
    """Loss terms, projector-output spread and C on fixed augmented batches (same draws every epoch).

    Train-mode forward (batch statistics, as in training) without gradients; BatchNorm running
    statistics are restored afterwards so monitoring does not change the run.
    """
    buffers = {k: v.clone() for k, v in model.state_dict().items() if k in dict(model.named_buffers())}
    perm = epoch_permutation(len(images), cfg.seed, 0)
    sums = {"loss": 0.0, "on_diag": 0.0, "off_diag": 0.0, "z_std": 0.0}
    c_first = None
    n_batches = max(1, min(cfg.monitor_batches, len(images) // cfg.batch_size))
    for i in range(n_batches):
        idx = batch_indices(perm, i, cfg.batch_size, info.rank, info.world_size)
        x = images[idx].to(info.device, non_blocking=True)
        v1, v2 = aug(x, generator=step_generator(cfg.seed, i, info.rank, stream=1))
        with autocast(info.device, amp_dtype):
            out = model(v1, v2)
        for key in ("loss", "on_diag", "off_diag"):
            sums[key] += out[key].item()
        sums["z_std"] += D.reduce_mean_scalar(embedding_std(out["z1"].float()), info.device)
        c_first = out["c"] if c_first is None else c_first
    model.load_state_dict(buffers, strict=False)
    result = {k: v / n_batches for k, v in sums.items()}
    result["c"] = c_first
    return result


def _diagnose_nonfinite(out: dict, v1: torch.Tensor, v2: torch.Tensor, model: nn.Module) -> dict:
    params_ok = all(torch.isfinite(p).all().item() for p in model.parameters())
    z1 = out["z1"]
    return {
        "loss": float(out["loss"].item()),
        "on_diag": float(out["on_diag"].item()),
        "off_diag": float(out["off_diag"].item()),
        "inputs_finite": bool(torch.isfinite(v1).all().item() and torch.isfinite(v2).all().item()),
        "parameters_finite": bool(params_ok),
        "embeddings_finite": bool(torch.isfinite(z1).all().item()),
        "embedding_abs_max": float(z1.abs().max().item()) if torch.isfinite(z1).all() else float("nan"),
    }


def epoch_train_loss(run: Run, epoch: int) -> float:
    """Mean training loss of ``epoch`` (1-based) over its rows of ``steps.csv``."""
    rows = [float(r["loss"]) for r in run.read_history("steps.csv") if int(r["epoch"]) == epoch]
    return float(np.mean(rows)) if rows else float("nan")


# -------------------------------------------------------------------------------------- training
def pretrain(cfg: PretrainConfig, on_step: Callable[[int], None] | None = None) -> Path:
    """Train (or resume, or skip when finished) the Barlow Twins run of ``cfg``; return its run folder.

    ``on_step(step)`` is called after every optimiser step (tests: crash simulation)."""
    from rtsseg.config import seed_everything

    cfg.validate()
    info = D.init_from_env(cfg.device)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if cfg.batch_size % info.world_size:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the {info.world_size} ranks")
    run = open_run(cfg.parent(), run_config(cfg.identity(), cfg, info.device), code_digest(*CODE_MODULES), restart=cfg.restart,
                   primary=info.is_main)
    D.barrier()  # rank 0 has created (or wiped) the folder
    try:
        _pretrain(cfg, run, info, seed_everything, on_step)
    except BaseException:
        run.close("failed")
        raise
    run.close()
    return run.path


def _pretrain(cfg: PretrainConfig, run: Run, info: D.DistInfo, seed_everything, on_step) -> None:
    run_dir, ckpt_path = run.path, run.checkpoint
    seed_everything(cfg.seed + info.rank)
    images = load_training_images(cfg)  # uint8 [N, 3, H, W]
    steps_per_epoch = len(images) // cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{len(images)} images are fewer than one batch of {cfg.batch_size}: lower --batch-size")
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = round(cfg.warmup_epochs * steps_per_epoch)
    knn = build_knn_monitor(cfg) if info.is_main else None

    backbone = build_backbone(cfg.backbone, weights=cfg.weights)
    model = BarlowTwins(backbone, cfg.projector_dims, cfg.lambd).to(info.device)
    if cfg.sync_bn and info.device.type == "cuda" and info.world_size > 1:
        model.backbone = nn.SyncBatchNorm.convert_sync_batchnorm(model.backbone)
    # conv nets run NHWC natively (oneDNN, cuDNN): +21 % for botnet_small on this CPU (benchmarks/NOTES.md)
    channels_last = cfg.channels_last and (
        info.device.type == "cuda" or getattr(backbone, "memory_format", None) == torch.channels_last
    )
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    amp_dtype = autocast_dtype(cfg.amp, info.device)
    optimizer, peak_w, peak_b = build_optimizer(model, cfg)
    lr_w_at, lr_b_at = lr_schedules(cfg, peak_w, peak_b, total_steps, warmup_steps)
    scaler = torch.amp.GradScaler(info.device.type, enabled=amp_dtype == torch.float16)
    aug = BarlowTwinsAugment(cfg.image_size, backbone.mean, backbone.std, blur_sigma=tuple(cfg.blur_sigma))

    step, wall_offset = 0, 0.0
    state = run.load()  # identity verified: never another configuration's checkpoint
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        step, wall_offset = run.resume_position(state, info.rank, steps_per_epoch)
        if info.is_main:
            verb = "finished run" if step >= total_steps else "resumed from"
            print(f"{verb} {ckpt_path} at step {step}/{total_steps}", file=sys.stderr, flush=True)
    elif info.is_main:
        for name in ("steps.csv", "history.csv", "nan_diagnostic.json"):
            (run_dir / name).unlink(missing_ok=True)

    ddp = model
    if info.world_size > 1:
        device_ids = [info.local_rank] if info.device.type == "cuda" else None
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    t0 = time.perf_counter() - wall_offset

    def save(step_done: int) -> None:
        states = D.gather_rng_states(info)
        if info.is_main:
            run.save(
                {
                    "model": model.state_dict(),
                    "backbone": model.backbone.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(),
                    "rng": states,
                    "step": step_done,
                    "epoch": step_done // steps_per_epoch,
                    "steps_per_epoch": steps_per_epoch,
                    "total_steps": total_steps,
                    "wall_s": time.perf_counter() - t0,
                    "backbone_name": cfg.backbone,
                    "embed_dim": int(model.backbone.embed_dim),
                }
            )
        D.barrier()

    def epoch_end(epoch: int, step_done: int, train_loss: float) -> None:
        ev = evaluate_ssl(model, images, aug, cfg, info, amp_dtype)
        if info.is_main:
            mon = knn(model.backbone, info.device)
            save_ccmatrix(ev["c"], run_dir / f"ccmatrix_e{epoch}.pt", cfg.ccmatrix_size)
            row = {
                "epoch": epoch, "step": step_done, "loss": ev["loss"], "on_diag": ev["on_diag"],
                "off_diag": ev["off_diag"], "emb_std": mon["emb_std"], "knn_acc": mon["knn_acc"],
                "z_std": ev["z_std"], "train_loss": train_loss,
                "lr": float(lr_w_at[min(step_done, total_steps - 1)]), "wall_s": time.perf_counter() - t0,
            }
            run.append_history("history.csv", row, HISTORY_FIELDS)
            print(
                f"epoch {epoch}/{cfg.epochs} step {step_done} loss {ev['loss']:.3f} (on {ev['on_diag']:.3f}, "
                f"off {ev['off_diag']:.3f}) emb_std {mon['emb_std']:.4f} z_std {ev['z_std']:.4f} "
                f"knn {100 * mon['knn_acc']:.2f}%",
                file=sys.stderr,  # a log line: the terminal, not the book's page
                flush=True,
            )
        D.barrier()

    if step == 0:
        epoch_end(0, 0, float("nan"))

    perm_epoch, perm = -1, None
    bar = tqdm(total=total_steps, initial=step, desc="pretrain", disable=not (cfg.progress and info.is_main))
    model.train()
    while step < total_steps:
        epoch, i = divmod(step, steps_per_epoch)
        if epoch != perm_epoch:
            perm_epoch, perm = epoch, epoch_permutation(len(images), cfg.seed, epoch)
        idx = batch_indices(perm, i, cfg.batch_size, info.rank, info.world_size)  # [n]
        x = images[idx].to(info.device, non_blocking=True)  # uint8 [n, 3, H, W]
        v1, v2 = aug(x, generator=step_generator(cfg.seed, step, info.rank))  # [n, 3, S, S] each
        if channels_last:
            v1, v2 = v1.contiguous(memory_format=torch.channels_last), v2.contiguous(memory_format=torch.channels_last)
        lr_w, lr_b = float(lr_w_at[step]), float(lr_b_at[step])
        set_lr(optimizer, lr_w, lr_b)
        with autocast(info.device, amp_dtype):
            out = ddp(v1, v2)
        loss = out["loss"]  # fp32: the loss computes in fp32 under autocast
        if not torch.isfinite(loss):
            diag = _diagnose_nonfinite(out, v1, v2, model)
            diag.update(step=step, epoch=epoch, lr_weights=lr_w, lr_biases=lr_b,
                        last_checkpoint=str(ckpt_path) if ckpt_path.exists() else None,
                        hint="lower lr_weights / lr_biases, check the data, or use amp=none")
            if info.is_main:
                (run_dir / "nan_diagnostic.json").write_text(json.dumps(diag, indent=2))
            bar.close()
            raise NonFiniteLossError(f"non-finite loss at step {step} (epoch {epoch}): {json.dumps(diag)}")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        step += 1
        if info.is_main:
            run.append_history("steps.csv", {
                "step": step, "epoch": epoch + 1, "loss": loss.item(), "on_diag": out["on_diag"].item(),
                "off_diag": out["off_diag"].item(), "lr_weights": lr_w, "lr_biases": lr_b}, STEP_FIELDS)
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.2f}")
        if on_step is not None:
            on_step(step)
        if step % steps_per_epoch == 0:
            # the epoch's mean from steps.csv (rank 0's values), not from this process's memory: a run resumed
            # mid-epoch logs the same mean as an uninterrupted one (its first steps ran before the resume)
            epoch_end(epoch + 1, step, epoch_train_loss(run, epoch + 1) if info.is_main else float("nan"))
            save(step)
        elif cfg.save_every_steps and step % cfg.save_every_steps == 0:
            save(step)
    bar.close()
    if not ckpt_path.exists():
        save(step)
    D.barrier()
    run.finish()


def main(argv: list[str] | None = None) -> int:
    """``rtsseg pretrain ...`` and ``python -m rtsseg.ssl.train ...`` (torchrun too): one flag per
    :class:`PretrainConfig` field; prints the run folder (rank 0). A config error, or a run folder locked by
    another process or holding another configuration, is one line on stderr and exit status 1."""
    from rtsseg.configargs import config_from_args
    from rtsseg.errors import DataError

    cfg = config_from_args(PretrainConfig, list(sys.argv[1:] if argv is None else argv),
                           "Barlow Twins pretraining (also under torchrun: -m rtsseg.ssl.train)", "rtsseg pretrain")
    try:  # the one place a module:callable backbone may be named: this command line, never a file
        from rtsseg.models import register_command_line_backbone

        register_command_line_backbone(cfg.backbone)
    except KeyError as err:
        print(f"rtsseg pretrain: error: {err.args[0]}", file=sys.stderr)
        return 2
    try:
        run_dir = pretrain(cfg)
    except (DataError, ValueError) as err:
        print(f"rtsseg pretrain: error: {err}", file=sys.stderr)
        return 1
    finally:
        D.cleanup()
    if D.get_rank() == 0:
        print(f"run folder: {run_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
