"""Barlow Twins pretraining: one entry point for ``python -m rtsseg.ssl.train`` and ``torchrun``.

    python -m rtsseg.ssl.train --backbone resnet_small --epochs 10 --run-dir runs/bt
    torchrun --standalone --nproc_per_node=2 -m rtsseg.ssl.train --backbone resnet_small ...

- Data: Tiny-ImageNet train images held as one uint8 tensor; per epoch an explicit permutation drawn
  from ``(seed, epoch)`` (DistributedSampler semantics: global step i takes positions
  ``[i*B, (i+1)*B)`` of the permutation, rank r the positions ``r, r+W, ...`` of that slice), last
  incomplete batch dropped. Augmentations run batched on the training device
  (:class:`rtsseg.ssl.augment.BarlowTwinsAugment`) with a generator seeded from ``(seed, step, rank)``.
- Optimisation: LARS, learning rates ``lr_at(step)`` (warmup, cosine), optional bf16/fp16 autocast and
  channels-last on CUDA. DDP over gloo (CPU) or nccl (CUDA); the projector's BatchNorms and the loss use
  global-batch statistics (see :mod:`rtsseg.ssl.distributed`); ``sync_bn`` converts the backbone's
  BatchNorms to SyncBatchNorm (CUDA only).
- History columns: epoch, step, loss / on_diag / off_diag / z_std (projector output, on fixed monitor
  batches), emb_std and knn_acc (backbone embeddings of the k-NN val images), train_loss (mean over the
  epoch's steps), lr (weights), wall_s (seconds since the run started, cumulative over resumes).
- Outputs in ``run_dir`` (rank 0): ``checkpoint.pt`` (atomic; model, backbone, optimiser, scaler,
  RNG states, step), ``history.csv`` (one row per epoch, epoch 0 = before training), ``steps.csv``
  (one row per step), ``ccmatrix_e{epoch}.pt``, ``config.json``; ``nan_diagnostic.json`` when the loss
  turns non-finite (the run stops, the last good checkpoint is kept).
- Resume: if ``run_dir/checkpoint.pt`` exists (and ``resume``), training continues from its step with
  the same data order and augmentation draws, so a killed and resumed run ends with the same weights.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import sys
import time
import types
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from rtsseg.ssl import distributed as D
from rtsseg.ssl.augment import BarlowTwinsAugment
from rtsseg.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from rtsseg.sampling import batch_indices, epoch_permutation, step_generator
from rtsseg.schedule import cosine_scheduler
from rtsseg.ssl.lars import LARS, lars_param_groups, set_lr
from rtsseg.ssl.model import BarlowTwins
from rtsseg.ssl.monitors import KNNMonitor, embedding_std, save_ccmatrix

HISTORY_FIELDS = [
    "epoch", "step", "loss", "on_diag", "off_diag", "emb_std", "knn_acc", "z_std", "train_loss", "lr", "wall_s",
]
STEP_FIELDS = ["step", "epoch", "loss", "on_diag", "off_diag", "lr_weights", "lr_biases"]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; ``run_dir/nan_diagnostic.json`` says where and why."""


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
    lr_weights: float = 0.2
    lr_biases: float = 0.0048
    weight_decay: float = 1e-6
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
    run_dir: str | None = None  # default: runs_root()/pretrain/<backbone>
    device: str | None = None  # "cpu" | "cuda" (default: cuda if available)
    amp: str = "auto"  # "auto" (bf16 on CUDA, off on CPU) | "bf16" | "fp16" | "none"
    channels_last: bool = True  # CUDA only
    sync_bn: bool = False  # backbone BatchNorm -> SyncBatchNorm (CUDA, more than one rank)
    num_threads: int | None = None
    save_every_steps: int = 0  # 0: checkpoints at epoch ends only
    resume: bool = True
    progress: bool = True
    fault_at_step: int | None = None  # testing only: the process SIGKILLs itself after this step


# ----------------------------------------------------------------------------------- backbones
_BACKBONES: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(name: str, factory: Callable[..., nn.Module]) -> None:
    """Make ``factory(weights=None)`` available as ``cfg.backbone = name`` (tests, experiments)."""
    _BACKBONES[name] = factory


def build_backbone(name: str, weights: str | None = None) -> nn.Module:
    """Local registry first (``tiny_test``), then :func:`rtsseg.models.build_backbone`."""
    if name in _BACKBONES:
        return _BACKBONES[name](weights=weights)
    from rtsseg.models import build_backbone as build_model_backbone

    return build_model_backbone(name, weights=weights)


def _tiny_test(weights: str | None = None) -> nn.Module:
    from rtsseg.ssl.tiny import TinyBackbone

    if weights is not None:
        raise ValueError("tiny_test has no pretrained weights")
    return TinyBackbone()


register_backbone("tiny_test", _tiny_test)


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


# --------------------------------------------------------------------------------- csv logging
def _append_csv(path: Path, fieldnames: list[str], row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames)
        if new:
            writer.writeheader()
        writer.writerow(row)


def _truncate_csv(path: Path, keep: Callable[[dict], bool]) -> None:
    """Drop the rows written after the checkpoint we resume from."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        names, rows = reader.fieldnames or [], [r for r in reader if keep(r)]
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------- helpers
def _autocast_dtype(cfg: PretrainConfig, device: torch.device) -> torch.dtype | None:
    amp = cfg.amp
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" else "none"
    if amp not in ("bf16", "fp16", "none"):
        raise ValueError(f"amp must be auto|bf16|fp16|none, got {cfg.amp!r}")
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[amp]


def _unwrap(model: nn.Module) -> BarlowTwins:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


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
        with torch.autocast(info.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            out = model(v1, v2)
        for key in ("loss", "on_diag", "off_diag"):
            sums[key] += out[key].item()
        sums["z_std"] += D.reduce_mean_scalar(embedding_std(out["z1"]), info.device)
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


# -------------------------------------------------------------------------------------- training
def pretrain(cfg: PretrainConfig) -> Path:
    """Train (or resume) a Barlow Twins run; return its run folder (holding ``checkpoint.pt``)."""
    from rtsseg.config import runs_root, seed_everything

    info = D.init_from_env(cfg.device)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    run_dir = Path(cfg.run_dir) if cfg.run_dir else runs_root() / "pretrain" / cfg.backbone
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path, history_path, steps_path = run_dir / "checkpoint.pt", run_dir / "history.csv", run_dir / "steps.csv"
    seed_everything(cfg.seed + info.rank)
    if cfg.batch_size % info.world_size:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the {info.world_size} ranks")

    images = load_training_images(cfg)  # uint8 [N, 3, H, W]
    steps_per_epoch = len(images) // cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{len(images)} images are fewer than one batch of {cfg.batch_size}: lower --batch-size")
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = round(cfg.warmup_epochs * steps_per_epoch)
    scale = cfg.batch_size / 256  # peak = base lr x batch / 256, cosine to 0.001 x peak (barlowtwins main.py)
    lr_w_at = cosine_scheduler(cfg.lr_weights * scale, cfg.lr_weights * scale * 1e-3, total_steps, warmup_steps)
    lr_b_at = cosine_scheduler(cfg.lr_biases * scale, cfg.lr_biases * scale * 1e-3, total_steps, warmup_steps)
    knn = build_knn_monitor(cfg) if info.is_main else None

    backbone = build_backbone(cfg.backbone, cfg.weights)
    model = BarlowTwins(backbone, cfg.projector_dims, cfg.lambd).to(info.device)
    if cfg.sync_bn and info.device.type == "cuda" and info.world_size > 1:
        model.backbone = nn.SyncBatchNorm.convert_sync_batchnorm(model.backbone)
    channels_last = cfg.channels_last and info.device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    amp_dtype = _autocast_dtype(cfg, info.device)
    optimizer = LARS(lars_param_groups(model, cfg.weight_decay), lr=0.0)
    scaler = torch.amp.GradScaler(info.device.type, enabled=amp_dtype == torch.float16)
    aug = BarlowTwinsAugment(cfg.image_size, backbone.mean, backbone.std, blur_sigma=tuple(cfg.blur_sigma))

    step, wall_offset = 0, 0.0
    if cfg.resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path, map_location="cpu")
        if int(state["steps_per_epoch"]) != steps_per_epoch:
            raise ValueError(
                f"{ckpt_path} was written with {state['steps_per_epoch']} steps per epoch, this run has "
                f"{steps_per_epoch} (data or batch size changed): use another --run-dir or --no-resume"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"][min(info.rank, len(state["rng"]) - 1)])
        step, wall_offset = int(state["step"]), float(state["wall_s"])
        if info.is_main:
            _truncate_csv(steps_path, lambda r: int(r["step"]) <= step)
            _truncate_csv(history_path, lambda r: int(r["epoch"]) <= step // steps_per_epoch)
            print(f"resumed from {ckpt_path} at step {step}/{total_steps}", flush=True)
    elif info.is_main:
        for p in (steps_path, history_path, run_dir / "nan_diagnostic.json"):
            p.unlink(missing_ok=True)
        (run_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2))

    ddp = model
    if info.world_size > 1:
        device_ids = [info.local_rank] if info.device.type == "cuda" else None
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    t0 = time.perf_counter() - wall_offset

    def save(step_done: int) -> None:
        states = [None] * info.world_size
        if info.world_size > 1:
            torch.distributed.all_gather_object(states, rng_state())
        else:
            states = [rng_state()]
        if info.is_main:
            save_checkpoint(
                {
                    "model": model.state_dict(),
                    "backbone": model.backbone.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(),
                    "rng": states,
                    "step": step_done,
                    "epoch": step_done // steps_per_epoch,
                    "steps_per_epoch": steps_per_epoch,
                    "wall_s": time.perf_counter() - t0,
                    "config": json.loads(json.dumps(asdict(cfg))),
                    "backbone_name": cfg.backbone,
                    "embed_dim": int(model.backbone.embed_dim),
                },
                ckpt_path,
            )
        D.barrier()

    def epoch_end(epoch: int, step_done: int, train_loss: float) -> None:
        ev = evaluate_ssl(model, images, aug, cfg, info, amp_dtype)
        if info.is_main:
            mon = knn(model.backbone, info.device)
            save_ccmatrix(ev["c"], run_dir / f"ccmatrix_e{epoch}.pt", cfg.ccmatrix_size)
            lr_w = float(lr_w_at[min(step_done, total_steps - 1)])
            row = {
                "epoch": epoch, "step": step_done, "loss": ev["loss"], "on_diag": ev["on_diag"],
                "off_diag": ev["off_diag"], "emb_std": mon["emb_std"], "knn_acc": mon["knn_acc"],
                "z_std": ev["z_std"], "train_loss": train_loss, "lr": lr_w, "wall_s": time.perf_counter() - t0,
            }
            _append_csv(history_path, HISTORY_FIELDS, row)
            print(
                f"epoch {epoch}/{cfg.epochs} step {step_done} loss {ev['loss']:.3f} (on {ev['on_diag']:.3f}, "
                f"off {ev['off_diag']:.3f}) emb_std {mon['emb_std']:.4f} z_std {ev['z_std']:.4f} "
                f"knn {100 * mon['knn_acc']:.2f}%",
                flush=True,
            )
        D.barrier()

    if step == 0:
        epoch_end(0, 0, float("nan"))

    perm_epoch, perm, epoch_losses = -1, None, []
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
        with torch.autocast(info.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            out = ddp(v1, v2)
        loss = out["loss"]
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
        epoch_losses.append(loss.item())
        if info.is_main:
            _append_csv(steps_path, STEP_FIELDS, {
                "step": step, "epoch": epoch + 1, "loss": loss.item(), "on_diag": out["on_diag"].item(),
                "off_diag": out["off_diag"].item(), "lr_weights": lr_w, "lr_biases": lr_b})
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.2f}")
        if cfg.fault_at_step is not None and step == cfg.fault_at_step:
            os.kill(os.getpid(), signal.SIGKILL)  # crash simulation for the resume test
        if step % steps_per_epoch == 0:
            epoch_end(epoch + 1, step, float(np.mean(epoch_losses)) if epoch_losses else float("nan"))
            epoch_losses = []
            save(step)
        elif cfg.save_every_steps and step % cfg.save_every_steps == 0:
            save(step)
    bar.close()
    if not ckpt_path.exists():
        save(step)
    D.barrier()
    return run_dir


# ------------------------------------------------------------------------------------------ CLI
def _arg_type(tp) -> tuple[Callable | None, dict]:
    """argparse settings for a dataclass field type."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)][0]

        def parse(s: str, inner=inner):
            return None if s.lower() == "none" else inner(s)

        return parse, {}
    if origin is tuple:
        return args[0], {"nargs": "+"}
    if tp is bool:
        return None, {"action": argparse.BooleanOptionalAction}
    return tp, {}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Barlow Twins pretraining (python -m or torchrun)")
    hints = typing.get_type_hints(PretrainConfig)
    for f in fields(PretrainConfig):
        conv, extra = _arg_type(hints[f.name])
        kwargs = {"default": f.default, "help": f"default: {f.default}", **extra}
        if conv is not None:
            kwargs["type"] = conv
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, **kwargs)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status 0 (the run folder is printed)."""
    ns = build_parser().parse_args(argv)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in vars(ns).items()}
    cfg = PretrainConfig(**values)
    try:
        run_dir = pretrain(cfg)
    finally:
        D.cleanup()
    if D.get_rank() == 0:
        print(f"run folder: {run_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
