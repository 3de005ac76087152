"""Supervised baseline (and the attention-supervised positive control): backbone + linear classifier trained with
labels on the pretraining images, with the same run machinery as Barlow Twins.

- Run folder ``<run_parent>/<identity of (config, code)>`` (:mod:`rtsseg.rundir`): a changed knob or training
  source trains a new run; an unchanged rerun resumes or skips; the folder is locked while training.
- Optimiser AdamW (no decay on biases, norms, CLS token, position embeddings), per-step learning rate from
  :func:`rtsseg.schedule.cosine_scheduler` (linear warmup, cosine to 0). bf16 autocast where the hardware has
  bf16 matrix units (:mod:`rtsseg.precision`); the loss in fp32.
- Data order per epoch from :func:`rtsseg.sampling.epoch_permutation` ``(seed, epoch)``, augmentation draws from
  ``step_generator(seed, step, stream=2)``: a resumed run equals an uninterrupted one.
- Augmentation ``augment``: ``"rrc"`` (RandomResizedCrop + flip, :func:`random_resized_crop_flip`) or ``"padcrop"``
  (reflect-pad ``pad`` px + random crop of the original size + flip, :func:`pad_crop_flip`; the CIFAR recipe that
  suits 64 px images: botnet_small reached 17.5 % val top-1 in 4 epochs with AdamW 2e-3, batch 128). Both
  transform the object boxes with the image, for the attention loss.
- Attention supervision (``attn_loss_weight > 0``): the training step records the backbone's attention maps
  with gradient (``rtsseg.attention.capture.AttentionRecorder``) and adds
  ``attn_loss_weight * rtsseg.attention.supervision.box_attention_loss(maps, boxes, image_size, attn_loss_heads)``
  over the images whose augmented box is non-empty.
- History ``history.csv`` per epoch: epoch, step, loss, ce_loss, attn_loss, train_acc, val_top1 (Tiny-ImageNet val,
  ``val_per_class`` images per class, centre view; NaN when 0), lr, wall_s. Checkpoint keys ``backbone`` (a
  state_dict that ``build_backbone(name, weights=path)`` loads), ``classifier``, ``optimizer``, ``epoch``,
  ``step``, ``num_classes``, ``rng``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from rtsseg.checkpoint import rng_state, set_rng_state
from rtsseg.models import build_backbone
from rtsseg.precision import AMP_CHOICES, autocast, autocast_dtype, grad_scaler, precision_name
from rtsseg.rundir import code_digest, open_run
from rtsseg.sampling import epoch_permutation, step_generator
from rtsseg.schedule import cosine_scheduler
from rtsseg.ssl.lars import lars_param_groups

HISTORY_FIELDS = ["epoch", "step", "loss", "ce_loss", "attn_loss", "train_acc", "val_top1", "lr", "wall_s"]
CODE_MODULES = ("rtsseg.ssl.supervised", "rtsseg.ssl.lars", "rtsseg.models", "rtsseg.data", "rtsseg.sampling",
                "rtsseg.schedule", "rtsseg.precision")
RUNTIME_FIELDS = ("data_dir", "cache_dir", "run_parent", "device", "num_threads", "restart", "progress")
AUGMENTS = ("rrc", "padcrop")
AUG_STREAM = 2  # step_generator stream of the supervised augmentations


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
    amp: str = "auto"
    data_dir: str | None = None  # tiny-imagenet-200 folder; default <data_root>/tiny-imagenet-200
    cache_dir: str | None = None  # tensor cache (default <runs_root>/cache)
    run_parent: str | None = None  # default <runs_root>/supervised/<backbone>_seed<seed>
    device: str | None = None  # default: cuda when available
    num_threads: int | None = None
    restart: bool = False
    progress: bool = True

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
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")

    def identity(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in RUNTIME_FIELDS}

    def parent(self) -> Path:
        if self.run_parent is not None:
            return Path(self.run_parent)
        from rtsseg.config import runs_root

        return runs_root() / "supervised" / f"{self.backbone}_seed{self.seed}"

    def code(self) -> str:
        mods = CODE_MODULES + (("rtsseg.attention",) if self.attn_loss_weight > 0 else ())
        return code_digest(*mods)


# ------------------------------------------------------------------------------------ augmentation
def _float01(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255 if images.dtype == torch.uint8 else images.float()


def random_resized_crop_flip(
    images: torch.Tensor,  # uint8 [B,3,H,W] (or float in [0,1])
    size: int,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.25, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip_p: float = 0.5,
    boxes: torch.Tensor | None = None,  # float [B,4] x0,y0,x1,y1 inclusive pixel indices of the input
):
    """Batched RandomResizedCrop + horizontal flip -> float in [0, 1] ``[B,3,size,size]`` (bilinear); with
    ``boxes`` also the boxes in output pixels ``[B,4]`` (inclusive indices as Tiny-ImageNet annotates them, and as
    ``rtsseg.attention.supervision`` reads them; clipped to the crop; NaN where nothing is left).

    One ``grid_sample`` per batch; random numbers from ``generator`` (CPU) so results do not depend on the
    device. Unlike torchvision's rejection sampling, a crop side that would exceed the image is clamped."""
    b, _, hin, win = images.shape
    x = _float01(images)
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
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False).clamp(0, 1)
    if boxes is None:
        return out
    # input pixel edge p -> normalised n = 2p/W - 1 -> output u = (n - c) / (w * flip) -> pixel (u + 1) / 2 * size
    bx = _to_edges(boxes)
    nx = bx[:, [0, 2]] * 2 / win - 1  # [B,2]
    ny = bx[:, [1, 3]] * 2 / hin - 1
    ux = (nx - cx[:, None]) / (w * flip)[:, None]
    uy = (ny - cy[:, None]) / h[:, None]
    ux, _ = ux.sort(dim=1)  # a flip swaps left and right
    px = ((ux + 1) / 2 * size).clamp(0, size)
    py = ((uy + 1) / 2 * size).clamp(0, size)
    return out, _from_edges(torch.stack([px[:, 0], py[:, 0], px[:, 1], py[:, 1]], 1))


def pad_crop_flip(
    images: torch.Tensor,  # uint8 [B,3,H,W] (or float in [0,1])
    generator: torch.Generator,
    pad: int = 4,
    flip_p: float = 0.5,
    size: int | None = None,
    boxes: torch.Tensor | None = None,  # float [B,4] x0,y0,x1,y1 inclusive pixel indices
):
    """Reflect-pad ``pad`` px, crop a random H x W window, flip with ``flip_p``; resized to ``size`` if given.
    -> float in [0,1] ``[B,3,S,S]`` (and the transformed boxes ``[B,4]``, NaN where nothing is left)."""
    b, _, hin, win = images.shape
    x = F.pad(_float01(images), (pad, pad, pad, pad), mode="reflect") if pad > 0 else _float01(images)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator)  # crop offsets in the padded image
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    flip = torch.rand(b, generator=generator) < flip_p
    rows = (oy[:, None] + torch.arange(hin)).to(x.device)  # [B,H]
    cols = (ox[:, None] + torch.arange(win)).to(x.device)  # [B,W]
    idx_b = torch.arange(b, device=x.device)[:, None, None]
    out = x.permute(0, 2, 3, 1)[idx_b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # [B,3,H,W]
    out = torch.where(flip.to(x.device)[:, None, None, None], out.flip(-1), out)
    s = size or hin
    if (hin, win) != (s, s):
        out = F.interpolate(out, size=(s, s), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    if boxes is None:
        return out.contiguous()
    bx = _to_edges(boxes)
    bx[:, [0, 2]] = (bx[:, [0, 2]] + pad - ox[:, None]).clamp(0, win)
    bx[:, [1, 3]] = (bx[:, [1, 3]] + pad - oy[:, None]).clamp(0, hin)
    fx = torch.stack([win - bx[:, 2], win - bx[:, 0]], 1)
    bx[:, [0, 2]] = torch.where(flip[:, None], fx, bx[:, [0, 2]])
    bx = bx * torch.tensor([s / win, s / hin, s / win, s / hin])
    return out.contiguous(), _from_edges(bx)


def _to_edges(boxes: torch.Tensor) -> torch.Tensor:
    """Inclusive pixel indices x0,y0,x1,y1 -> pixel edges (x1 + 1, y1 + 1): the geometry the crops act on."""
    return boxes.float().cpu() + torch.tensor([0.0, 0.0, 1.0, 1.0])


def _from_edges(edges: torch.Tensor) -> torch.Tensor:
    """Pixel edges -> inclusive indices; NaN rows where the box has (almost) no pixel left (< 0.5 px wide)."""
    empty = (edges[:, 2] - edges[:, 0] < 0.5) | (edges[:, 3] - edges[:, 1] < 0.5)
    boxes = edges - torch.tensor([0.0, 0.0, 1.0, 1.0])
    boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2])  # a sub-pixel box stays a valid (one-pixel) box
    return torch.where(empty[:, None], torch.full_like(boxes, float("nan")), boxes)


def center_resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``[B,3,H,W]`` -> float in [0,1] ``[B,3,size,size]`` (no augmentation)."""
    x = _float01(images)
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


def _normalize(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if hasattr(backbone, "normalize"):
        return backbone.normalize(x)
    mean = torch.tensor(backbone.mean, device=x.device).view(3, 1, 1)
    std = torch.tensor(backbone.std, device=x.device).view(3, 1, 1)
    return (x - mean) / std


# ---------------------------------------------------------------------------------------------- data
def _tiny_root(cfg: SupervisedConfig) -> Path:
    from rtsseg.data.tinyimagenet import tinyimagenet_root

    return Path(cfg.data_dir) if cfg.data_dir is not None else tinyimagenet_root()


def _cache(cfg: SupervisedConfig) -> Path:
    from rtsseg.config import runs_root

    return Path(cfg.cache_dir) if cfg.cache_dir else runs_root() / "cache"


def tensor_fingerprint(data) -> dict:
    """sha256 of the tensors a run was handed (``images``, ``labels``, ``boxes`` where present): the data
    identity of a run trained on tensors rather than on the data set's files (tests, experiments)."""
    import hashlib

    h = hashlib.sha256()
    for name in ("images", "labels", "boxes"):
        t = getattr(data, name, None)
        if t is not None:
            t = torch.as_tensor(t).contiguous()
            h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode() + t.numpy().tobytes())
    return {"tensors_sha256": h.hexdigest()[:16], "n": len(data.images)}


def data_fingerprint(cfg: SupervisedConfig, data=None, val_data=None) -> dict:
    """The data of a supervised run (part of its identity): the Tiny-ImageNet train and val files it reads
    (:meth:`rtsseg.data.tinyimagenet.TinyImageNet.fingerprint`), or the tensors it was handed."""
    from rtsseg.data.tinyimagenet import TinyImageNet

    out = {}
    if data is not None:
        out["train"] = tensor_fingerprint(data)
    else:
        out["train"] = TinyImageNet(_tiny_root(cfg), "train").fingerprint(cfg.max_images_per_class)
    if val_data is not None:
        out["val"] = tensor_fingerprint(val_data)
    elif cfg.val_per_class > 0:
        out["val"] = TinyImageNet(_tiny_root(cfg), "val").fingerprint(cfg.val_per_class)
    return out


def _load_split(cfg: SupervisedConfig, split: str, per_class: int | None):
    from rtsseg.data.tinyimagenet import load_tensors

    return load_tensors(_tiny_root(cfg), split, max_per_class=per_class, cache_dir=_cache(cfg), progress=cfg.progress)


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


# ------------------------------------------------------------------------------------------- training
def _attention_parts():
    """The attention-supervision API (rtsseg.attention.capture / .supervision), imported on use only."""
    from rtsseg.attention.capture import AttentionRecorder
    from rtsseg.attention.supervision import box_attention_loss

    return AttentionRecorder, box_attention_loss


def train_supervised(
    cfg: SupervisedConfig,
    data=None,
    val_data=None,
    on_epoch: Callable[[int], None] | None = None,
) -> Path:
    """Train (or resume, or skip when finished) ``backbone + Linear(embed_dim, classes)``; return the run folder.

    ``data`` (``images uint8 [N,3,H,W]``, ``labels int64 [N]``, optional ``boxes float [N,4]`` and ``classes``)
    defaults to the Tiny-ImageNet train tensors, ``val_data`` to ``val_per_class`` val images per class.
    ``on_epoch(epoch)`` is called after each epoch's checkpoint (tests: crash simulation)."""
    from rtsseg.config import default_device

    cfg.validate()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = torch.device(cfg.device) if cfg.device else default_device()
    fingerprint = data_fingerprint(cfg, data, val_data)  # before the defaults fill in: files, or tensors handed in
    data = data if data is not None else _load_split(cfg, "train", cfg.max_images_per_class)
    images, labels = data.images, data.labels.long()
    if images.dim() != 4 or images.shape[1] != 3 or len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"expected images [N,3,H,W] and labels [N], got {tuple(images.shape)}, {tuple(labels.shape)}")
    boxes = getattr(data, "boxes", None)
    if cfg.attn_loss_weight > 0 and boxes is None:
        raise ValueError("attn_loss_weight > 0 needs data with boxes [N,4]: use Tiny-ImageNet (it has train boxes)")
    num_classes = len(data.classes) if hasattr(data, "classes") else int(labels.max()) + 1
    if val_data is None and cfg.val_per_class > 0:
        val_data = _load_split(cfg, "val", cfg.val_per_class)
    attn = _attention_parts() if cfg.attn_loss_weight > 0 else None

    identity = {**cfg.identity(), "precision": precision_name(autocast_dtype(cfg.amp, device)),
                "data_fingerprint": fingerprint}
    with open_run(cfg.parent(), identity, cfg.code(), restart=cfg.restart) as run:
        torch.manual_seed(cfg.seed)
        backbone = build_backbone(cfg.backbone).to(device)
        memory_format = getattr(backbone, "memory_format", torch.contiguous_format)  # NHWC for conv nets
        backbone = backbone.to(memory_format=memory_format)
        classifier = nn.Linear(backbone.embed_dim, num_classes).to(device)
        groups = lars_param_groups(nn.ModuleList([backbone, classifier]), cfg.weight_decay)
        optimizer = torch.optim.AdamW([{k: v for k, v in g.items() if k != "lars"} for g in groups], lr=cfg.lr)
        amp_dtype = autocast_dtype(cfg.amp, device)
        scaler = grad_scaler(device, amp_dtype)  # fp16 (a GPU without bf16): scaled loss; else a pass-through
        steps_per_epoch = math.ceil(len(images) / cfg.batch_size)
        total = cfg.epochs * steps_per_epoch
        lr_at = cosine_scheduler(cfg.lr, 0.0, total, round(cfg.warmup_epochs * steps_per_epoch))

        start_epoch, wall_offset = 0, 0.0
        state = run.load()
        if state is not None:
            backbone.load_state_dict(state["backbone"])
            classifier.load_state_dict(state["classifier"])
            optimizer.load_state_dict(state["optimizer"])
            if "scaler" in state:
                scaler.load_state_dict(state["scaler"])
            set_rng_state(state["rng"])
            start_epoch, wall_offset = int(state["epoch"]), float(state["wall_s"])
            run.truncate_history("history.csv", lambda r: int(r["epoch"]) <= start_epoch)
        else:
            (run.path / "history.csv").unlink(missing_ok=True)
        t0 = time.perf_counter() - wall_offset
        for epoch in tqdm(range(start_epoch, cfg.epochs), desc="supervised", disable=not cfg.progress,
                          initial=start_epoch, total=cfg.epochs):
            backbone.train()
            classifier.train()
            sums = {"loss": 0.0, "ce_loss": 0.0, "attn_loss": 0.0, "correct": 0}
            order = epoch_permutation(len(images), cfg.seed, epoch)
            for i in range(steps_per_epoch):
                step = epoch * steps_per_epoch + i
                lr = float(lr_at[step])
                for group in optimizer.param_groups:
                    group["lr"] = lr
                idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
                gen = step_generator(cfg.seed, step, 0, stream=AUG_STREAM)
                x, bx = _augment(cfg, images[idx].to(device), gen, boxes[idx] if boxes is not None else None)
                x, y = _normalize(backbone, x).contiguous(memory_format=memory_format), labels[idx].to(device)
                if attn is None:
                    with autocast(device, amp_dtype):
                        logits = classifier(backbone(x))  # [B,classes]
                    attn_loss = torch.zeros((), device=device)
                else:
                    recorder_cls, box_attention_loss = attn
                    recorder = recorder_cls(backbone, layer=cfg.attn_layer)
                    with autocast(device, amp_dtype), recorder:
                        logits = classifier(backbone(x))
                    maps = recorder.maps  # [B,heads,h,w], each map sums to 1, with grad
                    ok = torch.isfinite(bx).all(1).to(maps.device)  # images whose box survived the crop
                    attn_loss = (box_attention_loss(maps[ok].float(), bx.to(maps.device)[ok], cfg.image_size,
                                                    cfg.attn_loss_heads) if ok.any() else maps.sum() * 0.0)
                ce = F.cross_entropy(logits.float(), y)
                loss = ce + cfg.attn_loss_weight * attn_loss
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                n = len(idx)
                sums["loss"] += loss.item() * n
                sums["ce_loss"] += ce.item() * n
                sums["attn_loss"] += float(attn_loss.item()) * n
                sums["correct"] += (logits.argmax(1) == y).sum().item()
            val = float("nan")
            if val_data is not None and len(val_data.images):
                val = top1_accuracy(backbone, classifier, val_data.images, val_data.labels.long(), cfg.image_size,
                                    device, amp_dtype)
            row = {"epoch": epoch + 1, "step": (epoch + 1) * steps_per_epoch, "loss": sums["loss"] / len(images),
                   "ce_loss": sums["ce_loss"] / len(images), "attn_loss": sums["attn_loss"] / len(images),
                   "train_acc": sums["correct"] / len(images), "val_top1": val, "lr": lr,
                   "wall_s": time.perf_counter() - t0}
            run.save({"backbone": backbone.state_dict(), "classifier": classifier.state_dict(),
                      "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch + 1,
                      "step": row["step"],
                      "num_classes": num_classes, "rng": rng_state(), "wall_s": row["wall_s"],
                      "backbone_name": cfg.backbone})
            run.append_history("history.csv", row, HISTORY_FIELDS)
            if on_epoch is not None:
                on_epoch(epoch + 1)
        run.finish()
        return run.path


def _augment(cfg: SupervisedConfig, x: torch.Tensor, gen: torch.Generator, boxes: torch.Tensor | None):
    """-> (float [B,3,S,S] in [0,1], boxes [B,4] in output pixels or None)."""
    if cfg.augment == "padcrop":
        out = pad_crop_flip(x, gen, cfg.pad, size=cfg.image_size, boxes=boxes)
    else:
        out = random_resized_crop_flip(x, cfg.image_size, gen, cfg.crop_scale, boxes=boxes)
    return out if boxes is not None else (out, None)


__all__ = ["SupervisedConfig", "train_supervised", "random_resized_crop_flip", "pad_crop_flip", "center_resize",
           "top1_accuracy", "HISTORY_FIELDS"]
