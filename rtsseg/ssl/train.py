"""Barlow Twins as a method of the one training engine (:func:`rtsseg.ssl.engine.fit`): ``pretrain(cfg)``.

    rtsseg pretrain barlow-twins --backbone resnet_small --epochs 10 --run-parent runs/bt
    torchrun --standalone --nproc_per_node=2 -m rtsseg.ssl.engine barlow-twins --backbone resnet_small ...

- Step: two views per image (:class:`rtsseg.ssl.augment.BarlowTwinsAugment`, batched on the training device),
  backbone + projector + loss in one module (:class:`rtsseg.ssl.model.BarlowTwins`, so DDP wraps one forward);
  the projector's BatchNorms and the loss use global-batch statistics (:mod:`rtsseg.ssl.distributed`).
- Optimisation: ``optimizer="lars"`` (conv nets; the official recipe) or ``"adamw"`` (transformers, as DINO and
  MoCo v3), learning rates per step from :func:`rtsseg.schedule.cosine_scheduler` (warm-up, cosine to 0.001 x
  peak); CLS token, position embeddings, biases and norms get neither weight decay nor LARS adaptation.
  Channels-last on CUDA and for conv backbones; ``sync_bn`` converts the backbone's BatchNorms (CUDA, DDP).
- History columns: epoch, step, loss / on_diag / off_diag / z_std (projector output, on fixed monitor batches),
  emb_std and knn_acc (backbone embeddings of the k-NN val images), train_loss (mean over the epoch's steps),
  lr (weights), wall_s. Also ``ccmatrix_e{epoch}.pt`` snapshots. Checkpoint keys ``model``, ``backbone``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from rtsseg.models import build_backbone  # the one backbone registry (tests register their fakes there)
from rtsseg.precision import AMP_CHOICES, autocast
from rtsseg.sampling import batch_indices, epoch_permutation, step_generator
from rtsseg.schedule import cosine_scheduler
from rtsseg.ssl import distributed as D
from rtsseg.ssl.augment import BarlowTwinsAugment
from rtsseg.ssl.engine import NonFiniteLossError, fit
from rtsseg.ssl.lars import LARS, lars_param_groups, set_lr
from rtsseg.ssl.method import OPERATIONAL_FIELDS, Context, Method, adamw, register_method, schedule_value
from rtsseg.ssl.model import BarlowTwins
from rtsseg.ssl.monitors import embedding_std, save_ccmatrix
from rtsseg.ssl.pretrain_data import DATA_CODE, UnlabelledImages, run_config, synthetic_dataset

HISTORY_FIELDS = [
    "epoch", "step", "loss", "on_diag", "off_diag", "emb_std", "knn_acc", "z_std", "train_loss", "lr", "wall_s",
]
STEP_FIELDS = ["step", "epoch", "loss", "on_diag", "off_diag", "lr_weights", "lr_biases"]
CODE_MODULES = ("rtsseg.ssl.train", "rtsseg.ssl.model", "rtsseg.ssl.loss", "rtsseg.ssl.projector",
                "rtsseg.ssl.lars", "rtsseg.ssl.augment", *DATA_CODE)
#: Fields that say where or how fast a run goes, not what it computes: left out of the run identity.
RUNTIME_FIELDS = ("data_root", "cache_dir", *OPERATIONAL_FIELDS)
OPTIMIZERS = ("lars", "adamw")


@dataclass
class PretrainConfig:
    """Every knob of a Barlow Twins run (``batch_size`` is the global batch over all ranks)."""

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
    amp: str = "auto"  # "auto" (rtsseg.precision) | "bf16" | "fp16" | "none"
    channels_last: bool = True  # on CUDA, and for conv backbones (Backbone.memory_format) on CPU too
    sync_bn: bool = False  # backbone BatchNorm -> SyncBatchNorm (CUDA, more than one rank)
    compile: str = "none"  # "none" | torch.compile mode "default", "reduce-overhead" (+ CUDA graphs), "max-autotune"
    # operational (not part of the run identity)
    run_parent: str | None = None  # runs go to <run_parent>/<identity>; default runs_root()/pretrain/<backbone>
    device: str | None = None  # "cpu" | "cuda" (default: cuda if available)
    num_threads: int | None = None
    save_every_steps: int = 0  # 0: checkpoints at epoch ends only
    restart: bool = False  # wipe this configuration's run folder and train from scratch
    progress: bool = True
    fault_at_step: int | None = None  # tests: SIGKILL after this step
    sync_every_steps: int = 1  # read losses and scalars back every this many steps (1: every step)

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
        return BarlowTwinsMethod(self).identity()


def build_optimizer(model: nn.Module, cfg: PretrainConfig) -> tuple[torch.optim.Optimizer, float, float]:
    """The optimiser with groups ``weights`` / ``biases`` (:func:`lars_param_groups`) and the two peak learning
    rates at batch 256 (weights, biases). LARS is the multi-tensor one; AdamW is fused on CUDA (:func:`adamw`)."""
    groups = lars_param_groups(model, cfg.weight_decay if cfg.optimizer == "lars" else cfg.adamw_weight_decay)
    if cfg.optimizer == "lars":
        return LARS(groups, lr=0.0), cfg.lr_weights, cfg.lr_biases
    opt = adamw([{k: v for k, v in g.items() if k != "lars"} for g in groups], lr=0.0)
    return opt, cfg.adamw_lr, cfg.adamw_lr


@register_method("barlow-twins")
class BarlowTwinsMethod(UnlabelledImages, Method):
    """Barlow Twins pretraining (facebookresearch/barlowtwins)"""

    config_class = PretrainConfig
    code_modules = CODE_MODULES
    step_fields = STEP_FIELDS[3:]
    history_fields = HISTORY_FIELDS
    default_parent = "pretrain"
    stream, monitor_stream = 0, 1

    def build(self, ctx: Context) -> nn.Module:
        cfg, device = self.cfg, ctx.device
        self.backbone = build_backbone(cfg.backbone, weights=cfg.weights)
        self.model = BarlowTwins(self.backbone, cfg.projector_dims, cfg.lambd).to(device)
        if cfg.sync_bn and device.type == "cuda" and ctx.info.world_size > 1:
            self.model.backbone = nn.SyncBatchNorm.convert_sync_batchnorm(self.model.backbone)
        # conv nets run NHWC natively (oneDNN, cuDNN): +21 % for botnet_small on a CPU (benchmarks/NOTES.md)
        self.channels_last = cfg.channels_last and (
            device.type == "cuda" or getattr(self.backbone, "memory_format", None) == torch.channels_last)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.aug = BarlowTwinsAugment(cfg.image_size, self.backbone.mean, self.backbone.std,
                                      blur_sigma=tuple(cfg.blur_sigma))
        self.optimizer, peak_w, peak_b = build_optimizer(self.model, cfg)
        scale, warmup = cfg.batch_size / 256, round(cfg.warmup_epochs * ctx.steps_per_epoch)  # linear scaling rule
        self.lr_w = cosine_scheduler(peak_w * scale, peak_w * scale * 1e-3, ctx.total_steps, warmup)
        self.lr_b = cosine_scheduler(peak_b * scale, peak_b * scale * 1e-3, ctx.total_steps, warmup)
        return self.model

    def configure_optimizer(self) -> torch.optim.Optimizer:
        return self.optimizer

    def _views(self, idx: torch.Tensor, generator: torch.Generator, device) -> tuple[torch.Tensor, torch.Tensor]:
        v1, v2 = self.aug(self.images[idx].to(device, non_blocking=True), generator=generator)  # [n, 3, S, S] each
        if self.channels_last:
            v1, v2 = v1.contiguous(memory_format=torch.channels_last), v2.contiguous(memory_format=torch.channels_last)
        return v1, v2

    def make_batch(self, idx, generator, step, ctx):
        return self._views(idx, generator, ctx.device)

    def training_step(self, model, batch, step, ctx):
        lr_w, lr_b = float(self.lr_w[step]), float(self.lr_b[step])
        set_lr(self.optimizer, lr_w, lr_b)
        v1, v2 = batch
        out = model(v1, v2)  # the loss computes in fp32 under autocast
        self._last = (out, v1, v2)
        return out["loss"], {"on_diag": out["on_diag"].detach(), "off_diag": out["off_diag"].detach(),
                             "lr_weights": lr_w, "lr_biases": lr_b}  # tensors: the engine reads them back

    def diagnose(self) -> dict:
        out, v1, v2 = self._last
        z1, finite = out["z1"], bool(torch.isfinite(out["z1"]).all())
        return {"on_diag": float(out["on_diag"].detach()), "off_diag": float(out["off_diag"].detach()),
                "inputs_finite": bool(torch.isfinite(v1).all() and torch.isfinite(v2).all()),
                "embeddings_finite": finite, "embedding_abs_max": float(z1.abs().max()) if finite else float("nan")}

    @torch.no_grad()
    def monitor(self, ctx: Context) -> dict:
        """Loss terms, projector-output spread and C on fixed augmented batches (the same draws every epoch);
        train-mode forward without gradients, BatchNorm running statistics restored afterwards."""
        cfg, info, model = self.cfg, ctx.info, self.model
        buffers = {k: v.clone() for k, v in model.state_dict().items() if k in dict(model.named_buffers())}
        perm = epoch_permutation(len(self.images), cfg.seed, 0)
        sums = {"loss": 0.0, "on_diag": 0.0, "off_diag": 0.0, "z_std": 0.0}
        c_first, n_batches = None, max(1, min(cfg.monitor_batches, len(self.images) // cfg.batch_size))
        for i in range(n_batches):
            idx = batch_indices(perm, i, cfg.batch_size, info.rank, info.world_size)
            v1, v2 = self._views(idx, step_generator(cfg.seed, i, info.rank, stream=self.monitor_stream), ctx.device)
            with autocast(ctx.device, ctx.amp_dtype):
                out = model(v1, v2)
            for key in ("loss", "on_diag", "off_diag"):
                sums[key] += out[key].item()
            sums["z_std"] += D.reduce_mean_scalar(embedding_std(out["z1"].float()), ctx.device)
            c_first = out["c"] if c_first is None else c_first
        model.load_state_dict(buffers, strict=False)
        return {**{k: v / n_batches for k, v in sums.items()}, "c": c_first}

    def validate(self, epoch, step, ctx):
        ev = self.monitor(ctx)
        self.model.train()
        if not ctx.info.is_main:
            return {}
        save_ccmatrix(ev.pop("c"), ctx.run.path / f"ccmatrix_e{epoch}.pt", self.cfg.ccmatrix_size)
        return {**ev, **self.knn(self.model.backbone, ctx.device), "lr": schedule_value(self.lr_w, step)}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "backbone": self.model.backbone.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])


def pretrain(cfg: PretrainConfig) -> Path:
    """Train (or resume, or skip when finished) the Barlow Twins run of ``cfg``; return its run folder."""
    return fit(cfg, BarlowTwinsMethod)

__all__ = ["PretrainConfig", "BarlowTwinsMethod", "pretrain", "build_optimizer", "NonFiniteLossError",
           "synthetic_dataset", "run_config", "HISTORY_FIELDS", "STEP_FIELDS", "CODE_MODULES", "RUNTIME_FIELDS"]
