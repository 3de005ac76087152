"""Fine-tuned attention: can the attention-supervision loss move the backbone's own attention, and does it pay?

Why: with a frozen backbone the attention-supervision loss (:func:`rtsseg.seg.decoders.attention_supervision_loss`)
can only re-weight the heads (β of the decoder's Ā); the proposal's idea -- train the attention maps towards a
class-specific segmentation -- needs the attention itself to move. Here the last ``unfreeze_blocks`` blocks of
the backbone train together with the decoder, in two arms that differ in one thing only:

    arm "no loss"         cross-entropy                                   (λ = 0)
    arm "attention loss"  cross-entropy + λ · attention-supervision loss  (λ = ``attention_loss_weight``)

Same backbone start (one copy per arm of the same initialisation), decoder initialisation, batches (one seeded
generator per arm), learning rates, epochs and data. Unfrozen: every parameter registered from the first
parameter of the first unfrozen block on (:func:`unfreeze_last_blocks`: ViT ``blocks[-n:]`` and the final norm;
BoTNet ``layer4[-n:]``), the rest frozen; the backbone stays in eval mode (its BatchNorm statistics and dropout as
pretrained), only its unfrozen weights move.

Tuning, as the frozen grid (:mod:`rtsseg.seg.experiment`): fit on CamVid train minus the held-out block, the
early-stopping epoch chosen on that block (``carve_apart_from_val``: apart from val by ``min_gap_frames``); the
scores reported are CamVid val, which no choice looked at.

Per seed :func:`finetune_pair` reports both arms' val mIoU and things mIoU and the attention's object-specific
score (chapter 5's excess AUROC of the best head, :func:`rtsseg.analysis.attention.excess_result`, on CamVid
things ground truth) before fine-tuning and after each arm, and the paired differences over seeds with their
Student-t interval and verdict (:mod:`rtsseg.stats`). The scorer is passed in (``score=excess_result``): the
analysis layer sits above this one, so this module never imports it.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rtsseg.seg.metrics import ConfusionMeter, SegScores
from rtsseg.seg.train import Segmenter, _update, poly_lr, save_segmenter, strided_logits

ARMS = ("no loss", "attention loss")


@dataclass
class FinetuneConfig:
    """One fine-tuning run's settings (both arms share them; only ``attention_loss_weight`` differs by arm)."""

    unfreeze_blocks: int = 1  # the last n blocks of the backbone train, the rest stays frozen
    decoder: str = "attn_all"  # needs propagation (b): the loss acts on its Ā
    attention_loss_weight: float = 0.1  # λ of the "attention loss" arm
    epochs: int = 8
    lr: float = 5e-3  # the decoder's; the unfrozen blocks get lr · backbone_lr_scale
    backbone_lr_scale: float = 0.1
    weight_decay: float = 1e-4
    batch_size: int = 16
    label_stride: int = 4  # training loss and held-out selection on every s-th label pixel (val: all)
    patience: int | None = 3  # early stopping on the held-out block
    embed_dim: int = 64
    fuse_dim: int = 64
    k: int = 1
    amp: str = "none"
    vit_blocks: list[int] | None = None
    class_weighting: str = "none"  # "none" | "median_frequency" (rtsseg.seg.metrics, from the fit masks)


def block_names(backbone: nn.Module) -> list[str]:
    """The backbone's blocks that hold an attention layer, first to last: each attention layer's parent module
    (ViT ``model.blocks.i``, BoTNet ``model.layer4.i``, Swin ``model.layers.s.blocks.i``)."""
    return [name.rsplit(".", 1)[0] for name in backbone.attention_layers()]


def unfreeze_last_blocks(backbone: nn.Module, n: int) -> list[str]:
    """Freeze ``backbone`` but for the last ``n`` attention blocks and every parameter registered after them
    (the final norm); returns the names of the trainable parameters. Raises naming ``unfreeze_blocks`` when
    ``n`` is not in 1..number of blocks."""
    blocks = block_names(backbone)
    if not 1 <= n <= len(blocks):
        raise ValueError(f"unfreeze_blocks={n}: {getattr(backbone, 'name', type(backbone).__name__)} has "
                         f"{len(blocks)} attention blocks; pass 1..{len(blocks)}")
    first = blocks[-n] + "."
    names = [name for name, _ in backbone.named_parameters()]
    start = next(i for i, name in enumerate(names) if name.startswith(first))
    trainable = set(names[start:])
    for name, p in backbone.named_parameters():
        p.requires_grad_(name in trainable)
    return names[start:]


def materialise(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """All (uint8 image [3, h, w], mask [H, W]) pairs of ``dataset`` as (images [N, 3, h, w] uint8, masks
    [N, H, W] uint8, 255 = void): read once, not once per epoch. Masks of one split must share a size."""
    images, masks = zip(*(dataset[i] for i in range(len(dataset))))
    sizes = {tuple(m.shape) for m in masks}
    if len(sizes) != 1:
        raise ValueError(f"materialise: masks of sizes {sorted(sizes)}; fine-tuning needs one label size per split")
    return torch.stack(images), torch.stack([m.to(torch.uint8) for m in masks])


def _forward(backbone: nn.Module, decoder: nn.Module, images: torch.Tensor, vit_blocks, grad: bool):
    from rtsseg.seg.affinity import backbone_outputs

    out = backbone_outputs(backbone, backbone.normalize(images), vit_blocks, grad=grad)
    return decoder(out.stages, out.affinity, out.maps).float(), out  # logits [b, K, h0, w0]


@torch.no_grad()
def score_split(backbone: nn.Module, decoder: nn.Module, images: torch.Tensor, masks: torch.Tensor,
                num_classes: int, batch_size: int = 16, label_stride: int = 1, vit_blocks=None, device="cpu",
                ignore_index: int = 255) -> SegScores:
    """mIoU of backbone + decoder on (images [N,3,h,w] uint8, masks [N,H,W]): logits upsampled to the labels
    (every ``label_stride``-th pixel), one confusion matrix over the split."""
    decoder.eval()
    meter = ConfusionMeter(num_classes, ignore_index)
    for s in range(0, len(images), batch_size):
        logits, _ = _forward(backbone, decoder, images[s: s + batch_size].to(device), vit_blocks, grad=False)
        m = masks[s: s + batch_size].to(device).long()  # [b, H, W]
        meter.update(strided_logits(logits, m.shape[-2:], label_stride).argmax(1),
                     m[:, ::label_stride, ::label_stride])
    return meter.scores()


def finetune(backbone: nn.Module, fit: tuple[torch.Tensor, torch.Tensor], held: tuple[torch.Tensor, torch.Tensor],
             num_classes: int, cfg: FinetuneConfig, seed: int, attention_loss_weight: float = 0.0, device="cpu",
             ignore_index: int = 255) -> tuple[Segmenter, list[dict]]:
    """Train the last ``cfg.unfreeze_blocks`` blocks of ``backbone`` (changed in place) and a fresh ``cfg.decoder``
    on ``fit`` (images, masks) with the attention-supervision loss at ``attention_loss_weight``; keep the epoch of
    the best held-out mIoU (``held``, every ``label_stride``-th pixel), stop after ``patience`` epochs without a
    better one. Returns (the :class:`Segmenter` of the best epoch, history: epoch, ce, attn_loss, holdout_miou,
    wall_s)."""
    from rtsseg.precision import autocast, autocast_dtype, grad_scaler
    from rtsseg.seg.decoders import make_decoder, token_class_fractions

    device = torch.device(device)
    backbone = backbone.to(device).eval()
    trainable = unfreeze_last_blocks(backbone, cfg.unfreeze_blocks)
    images, masks = fit
    from rtsseg.seg.affinity import backbone_outputs
    from rtsseg.seg.metrics import CLASS_WEIGHTINGS, median_frequency_weights

    if cfg.class_weighting not in CLASS_WEIGHTINGS:
        raise ValueError(f"class_weighting {cfg.class_weighting!r} is not one of {CLASS_WEIGHTINGS}. Fix: the "
                         "parameter class_weighting")
    weight = (median_frequency_weights(masks, num_classes, ignore_index).to(device)
              if cfg.class_weighting == "median_frequency" else None)

    out = backbone_outputs(backbone, backbone.normalize(images[:1].to(device)), cfg.vit_blocks)  # the decoder's sizes
    torch.manual_seed(seed)
    decoder = make_decoder(cfg.decoder, [s.shape[1] for s in out.stages], num_classes, out.maps.shape[1], k=cfg.k,
                           embed_dim=cfg.embed_dim, fuse_dim=cfg.fuse_dim).to(device)
    if attention_loss_weight > 0 and not getattr(decoder, "propagate", False):
        raise ValueError(f"attention_loss_weight > 0 needs a decoder with propagation (attn_prop, attn_all), not "
                         f"{cfg.decoder!r}; set FinetuneConfig.decoder")
    generator = torch.Generator().manual_seed(seed)
    total = cfg.epochs * math.ceil(len(images) / cfg.batch_size)
    params = dict(backbone.named_parameters())
    opt = torch.optim.AdamW([{"params": decoder.parameters(), "lr": cfg.lr},
                             {"params": [params[n] for n in trainable], "lr": cfg.lr * cfg.backbone_lr_scale}],
                            weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: poly_lr(s, total))
    dtype = autocast_dtype(cfg.amp, device)
    scaler = grad_scaler(device, dtype)
    history: list[dict] = []
    best: tuple[float, dict | None, dict | None] = (-1.0, None, None)
    best_epoch = 0
    s = cfg.label_stride
    for epoch in range(cfg.epochs):
        if cfg.patience is not None and epoch - best_epoch >= cfg.patience:
            break  # no better held-out mIoU for `patience` epochs
        decoder.train()
        t0, sums, n = time.perf_counter(), [0.0, 0.0], 0
        order = torch.randperm(len(images), generator=generator)
        for b in range(0, len(order), cfg.batch_size):
            idx = order[b: b + cfg.batch_size]
            m = masks[idx].to(device).long()  # [b, H, W]
            with autocast(device, dtype):
                logits, out = _forward(backbone, decoder, images[idx].to(device), cfg.vit_blocks, grad=True)
            ce = F.cross_entropy(strided_logits(logits, m.shape[-2:], s), m[:, ::s, ::s], weight=weight,
                                 ignore_index=ignore_index)
            ce, attn = _update(decoder, opt, sched, ce, attention_loss_weight,
                               lambda: token_class_fractions(m, num_classes, out.grid, ignore_index), scaler)
            sums[0], sums[1], n = sums[0] + ce, sums[1] + attn, n + 1
        held_miou = score_split(backbone, decoder, *held, num_classes, cfg.batch_size, s, cfg.vit_blocks,
                                device).miou
        history.append({"epoch": epoch + 1, "ce": sums[0] / n, "attn_loss": sums[1] / n, "holdout_miou": held_miou,
                        "wall_s": time.perf_counter() - t0})
        if held_miou > best[0]:
            best = (held_miou, {k: params[k].detach().clone() for k in trainable},
                    {k: v.detach().clone() for k, v in decoder.state_dict().items()})
            best_epoch = epoch + 1
    with torch.no_grad():
        for k, v in best[1].items():
            params[k].copy_(v)
    decoder.load_state_dict(best[2])
    return Segmenter(backbone, decoder.eval(), cfg.vit_blocks).eval(), history


@dataclass
class FinetunePair:
    """:func:`finetune_pair`'s result. ``rows``: one per seed and arm (seed, arm, val mIoU, things mIoU,
    holdout mIoU, best_epoch, excess before, excess after, train_s, checkpoint); ``differences``: one per
    paired quantity (quantity, n, mean, lo, hi, verdict; fractions, AUROC for the excess); ``intervals``:
    the same as ``rtsseg.stats.Interval`` by quantity."""

    rows: object  # pandas.DataFrame
    differences: object  # pandas.DataFrame
    intervals: dict
    config: dict


#: the paired quantities of :func:`finetune_pair`: name -> (column, arm a, arm b); "before" is the backbone
#: before fine-tuning (the same for both arms of a seed)
DIFFERENCES = {
    "val mIoU: attention loss − no loss": ("mIoU", "attention loss", "no loss"),
    "things mIoU: attention loss − no loss": ("things mIoU", "attention loss", "no loss"),
    "excess AUROC: attention loss, after − before": ("excess after", "attention loss", "before"),
    "excess AUROC: no loss, after − before": ("excess after", "no loss", "before"),
    "excess AUROC after: attention loss − no loss": ("excess after", "attention loss", "no loss"),
}


def paired_table(rows) -> tuple[object, dict]:
    """The :data:`DIFFERENCES` of ``rows`` (columns seed, arm, mIoU, things mIoU, excess before, excess after),
    paired per seed: per quantity the :func:`rtsseg.stats.t_interval` over seeds and its
    :func:`rtsseg.stats.verdict` against 0. Returns (DataFrame, {quantity: Interval})."""
    import pandas as pd
    from rtsseg.stats import t_interval, verdict

    def column(col: str, arm: str):
        if arm == "before":
            return rows.groupby("seed")["excess before"].first()
        return rows[rows.arm == arm].set_index("seed")[col]

    out, intervals = [], {}
    for name, (col, a, b) in DIFFERENCES.items():
        d = (column(col, a) - column(col, b)).dropna()
        if not len(d):
            continue
        iv = t_interval(d.tolist())
        intervals[name] = iv
        out.append({"quantity": name, "n": iv.n, "mean": iv.mean, "lo": iv.lo, "hi": iv.hi, "verdict": verdict(iv)})
    return pd.DataFrame(out), intervals


def finetune_pair(make_backbone: Callable[[int], nn.Module], sets: dict, num_classes: int, seeds: Sequence[int],
                  gset, score: Callable, cfg: FinetuneConfig = FinetuneConfig(), things: Sequence[int] | None = None,
                  save_dir: str | Path | None = None, backbone_kwargs: dict | None = None,
                  checkpoint_config: dict | None = None, device="cpu", log: Callable[[str], None] | None = None
                  ) -> FinetunePair:
    """Both arms (:data:`ARMS`) per seed on ``sets`` ({"fit", "holdout", "val"} datasets of (uint8 image,
    mask), e.g. :func:`rtsseg.seg.experiment.split_datasets`), from the backbone ``make_backbone(seed)`` (e.g.
    ``lambda s: load_backbone(profile, name, init, s, image_size)``).

    ``gset``: a ground-truth set of the attention chapter (``rtsseg.attention.groundtruth.camvid_frames`` of
    CamVid val); ``score(name, maps, gset)``: ``rtsseg.analysis.attention.excess_result`` (anything whose
    ``.auroc`` is an ``rtsseg.stats.Interval``), called on ``rtsseg.attention.evaluate.capture_maps`` of
    ``gset.images``. ``things``: class ids of things mIoU (``rtsseg.data.camvid.THINGS``). ``save_dir``: each arm's
    model saved with :func:`rtsseg.seg.train.save_segmenter` to ``save_dir/seed<s>_<arm>/segmenter.pt``
    (``backbone_kwargs``, default ``{"img_size": 64}``, rebuild the backbone; ``checkpoint_config`` joins its
    config), so ``rtsseg evaluate`` re-scores it."""
    import pandas as pd
    from rtsseg.attention.evaluate import capture_maps
    from rtsseg.seg.metrics import subset_miou

    say = log or (lambda _: None)
    data = {k: materialise(sets[k]) for k in ("fit", "holdout", "val")}

    def excess(name: str, model: nn.Module) -> float:
        maps = capture_maps(model, gset.images.to(next(model.parameters()).device), progress=False)  # [N, H, h, w]
        return float(score(name, [maps], gset).auroc.mean)

    rows = []
    for seed in seeds:
        base = make_backbone(seed).to(device).eval()
        before = excess(f"seed {seed} before", base)
        say(f"seed {seed}: excess AUROC before fine-tuning {before:+.3f}")
        for arm in ARMS:
            weight = cfg.attention_loss_weight if arm == "attention loss" else 0.0
            t0 = time.perf_counter()
            seg, hist = finetune(copy.deepcopy(base), data["fit"], data["holdout"], num_classes, cfg, seed, weight,
                                 device)
            s = score_split(seg.backbone, seg.decoder, *data["val"], num_classes, cfg.batch_size, 1,
                            cfg.vit_blocks, device)
            after = excess(f"seed {seed} {arm}", seg.backbone)
            best = max(hist, key=lambda h: h["holdout_miou"])
            row = {"seed": seed, "arm": arm, "attention_loss_weight": weight, "mIoU": s.miou,
                   "things mIoU": subset_miou(s.iou, things) if things else float("nan"),
                   "holdout mIoU": best["holdout_miou"], "best_epoch": best["epoch"], "epochs run": len(hist),
                   "excess before": before, "excess after": after, "train_s": time.perf_counter() - t0,
                   "checkpoint": None}
            if save_dir is not None:
                row["checkpoint"] = str(save_segmenter(
                    Path(save_dir) / f"seed{seed}_{arm.replace(' ', '_')}" / "segmenter.pt", seg.backbone,
                    backbone_kwargs or {"img_size": 64}, seg.decoder,
                    {**(checkpoint_config or {}), "seed": seed, "decoder_name": cfg.decoder, "finetuned": True, "arm": arm,
                     "unfreeze_blocks": cfg.unfreeze_blocks, "attention_loss_weight": weight, "val_mIoU": s.miou},
                    cfg.vit_blocks))
            rows.append(row)
            say(f"seed {seed} {arm:>14}: val mIoU {100 * s.miou:.1f}, things {100 * row['things mIoU']:.1f}, "
                f"excess AUROC {after:+.3f} (best epoch {row['best_epoch']}, {row['train_s']:.0f} s)")
    table = pd.DataFrame(rows)
    differences, intervals = paired_table(table)
    return FinetunePair(table, differences, intervals, asdict(cfg))
