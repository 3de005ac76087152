"""The segmentation ablation grid: backbone × init × seed × decoder on cached frozen outputs, with honest tuning.

Splits (CamVid, the cpu profile): decoders are fitted on CamVid train minus a held-out block, the learning
rate and the early-stopping epoch are chosen on that held-out block (the last 20 % of each train sequence,
:func:`rtsseg.seg.train.carve_by_sequence`), and the book reports CamVid val, never looked at for any choice.
COCO-Stuff (the gpu profile): every 10th image of the train subset is held out (COCO images are independent).

Statistics: per cell, mean and a 95 % Student-t interval over seeds; the answer to "does attention help the
decoder?" is the paired difference attention-aware − control per (backbone, init, seed) -- paired because both
decoders see the same cached backbone outputs and seed -- with its t interval over the pairs.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import Subset

from rtsseg.seg.train import OutputStore, cached_outputs, carve_by_sequence, evaluate_store, train_decoder


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the Student-t interval of the mean; (m, nan, nan) for one value."""
    vals = [float(v) for v in values]
    n = len(vals)
    if n == 0:
        raise ValueError("t_interval of no values")
    m = sum(vals) / n
    if n == 1:
        return m, float("nan"), float("nan")
    from scipy import stats

    s = math.sqrt(sum((v - m) ** 2 for v in vals) / (n - 1))
    half = stats.t.ppf(0.5 + level / 2, n - 1) * s / math.sqrt(n)
    return m, m - half, m + half


def format_ci(values: Sequence[float], scale: float = 100.0, decimals: int = 1, show_n: bool = True) -> str:
    """``"m [lo, hi] (n=k)"`` with the 95 % t interval, values × scale. ``show_n=False`` drops the ``(n=k)`` of
    an interval (narrow table cells whose caption states the seeds); a single value stays ``"m (n=1)"``."""
    m, lo, hi = t_interval([v * scale for v in values])
    if math.isnan(lo):
        return f"{m:.{decimals}f} (n=1)"
    n = f" (n={len(values)})" if show_n else ""
    return f"{m:.{decimals}f} [{lo:.{decimals}f}, {hi:.{decimals}f}]{n}"


def split_datasets(dataset: str, data_root: Path, input_size: Sequence[int], max_train: int | None = None,
                   max_val: int | None = None, holdout_fraction: float = 0.2):
    """{"fit", "holdout", "val"} datasets (images resized to ``input_size``, labels native), the class names
    and the preprocessing description of each (part of the cache identity)."""
    from rtsseg.data.transforms import ImageOnlyResize
    from rtsseg.seg.data import evenly_spaced

    resize = ImageOnlyResize(tuple(input_size))
    if dataset == "camvid":
        from rtsseg.data.camvid import CLASS_NAMES, CamVid

        train = CamVid(data_root / "camvid", "train", transform=resize)
        val = CamVid(data_root / "camvid", "val", transform=resize)
        fit, held = carve_by_sequence([Path(p[0]).stem for p in train.pairs], holdout_fraction)
        names = list(CLASS_NAMES)
    else:
        from rtsseg.data.cocostuff import COCOStuff

        coarse = dataset == "cocostuff27"
        train = COCOStuff(data_root / "cocostuff", "train2017", coarse=coarse, transform=resize)
        val = COCOStuff(data_root / "cocostuff", "val2017", coarse=coarse, transform=resize)
        every = max(2, round(1 / holdout_fraction))
        idx = evenly_spaced(len(train), max_train and int(max_train * (1 + holdout_fraction)))
        fit, held = [i for k, i in enumerate(idx) if k % every], [i for k, i in enumerate(idx) if not k % every]
        names = list(val.class_names)
    if not held or not fit:
        raise ValueError(f"{dataset} train ({len(train)} images) gives {len(fit)} fit and {len(held)} held-out images "
                         f"with holdout_fraction={holdout_fraction}: both must be non-empty")
    fit = [fit[i] for i in evenly_spaced(len(fit), max_train)]
    if max_train is not None:  # small runs: a proportionally small held-out block (still whole-sequence tails)
        held = [held[i] for i in evenly_spaced(len(held), max(1, round(max_train * holdout_fraction)))]
    val_idx = evenly_spaced(len(val), max_val)
    sets = {"fit": Subset(train, fit), "holdout": Subset(train, held), "val": Subset(val, val_idx)}
    files = {"train": train.fingerprint(), "val": val.fingerprint()}  # the data, not its folder: part of every run
    pre = {k: {"dataset": dataset, "split": "train" if k != "val" else "val", "indices": ix,
               "input_size": list(input_size), "data": files["train" if k != "val" else "val"]}
           for k, ix in (("fit", fit), ("holdout", held), ("val", val_idx))}
    return sets, names, pre


def backbone_stores(backbone, sets: dict, pre: dict, cache_root: Path, batch_size: int = 16,
                    device="cpu") -> dict[str, OutputStore]:
    """Cached outputs of one backbone (one init, one seed) on each split."""
    return {k: cached_outputs(backbone, ds, pre[k], cache_root, batch_size, device) for k, ds in sets.items()}


def fit_decoder(name: str, stores: dict[str, OutputStore], num_classes: int, seed: int, lrs: Sequence[float],
                epochs: int, batch_size: int = 16, attention_loss_weight: float = 0.0, label_stride: int = 1,
                patience: int | None = None, run_parent: Path | None = None, embed_dim: int = 64,
                fuse_dim: int = 64, k: int = 1, amp: str = "none", device="cpu"):
    """Train decoder ``name`` once per learning rate, keep the one with the best held-out mIoU (and its best
    epoch), score it on val. Returns (row dict, decoder)."""
    from rtsseg.seg.decoders import count_parameters, make_decoder

    fit, held, val = stores["fit"], stores["holdout"], stores["val"]
    best = None
    t0, c0 = time.perf_counter(), time.process_time()
    for lr in lrs:
        torch.manual_seed(seed)
        dec = make_decoder(name, fit.in_dims, num_classes, fit.num_heads, k=k, embed_dim=embed_dim, fuse_dim=fuse_dim)
        dec, hist = train_decoder(dec, fit, num_classes, val=held, epochs=epochs, lr=lr, batch_size=batch_size,
                                  attention_loss_weight=attention_loss_weight, label_stride=label_stride,
                                  patience=patience, seed=seed, amp=amp, device=device,
                                  run_parent=None if run_parent is None else Path(run_parent) / name)
        held_miou = max(h["val_miou"] for h in hist)
        if best is None or held_miou > best[0]:
            best = (held_miou, lr, dec, hist)
    held_miou, lr, dec, hist = best
    s = evaluate_store(dec, val, num_classes, batch_size, device=device)
    row = {"decoder": name, "seed": seed, "lr": lr, "attention_loss_weight": attention_loss_weight,
           "best_epoch": max(hist, key=lambda h: h["val_miou"])["epoch"], "holdout mIoU": held_miou,
           "mIoU": s.miou, "pixel accuracy": s.pixel_accuracy, "parameters": count_parameters(dec),
           "train_s": time.perf_counter() - t0, "train_cpu_s": time.process_time() - c0, "iou": s.iou}
    return row, dec


def paired_differences(scores, a: str, b: str, keys: Sequence[str] = ("backbone", "init", "seed"),
                       value: str = "mIoU"):
    """Per pair (same keys): ``scores[decoder == a] − scores[decoder == b]``; a DataFrame with the keys and
    ``difference``. Pairs missing either side are dropped."""
    import pandas as pd

    left = scores[scores.decoder == a].set_index(list(keys))[value]
    right = scores[scores.decoder == b].set_index(list(keys))[value]
    diff = (left - right).dropna()
    return pd.DataFrame({"difference": diff}).reset_index()

