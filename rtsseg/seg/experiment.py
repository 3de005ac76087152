"""The segmentation ablation grid: backbone × init × seed × decoder on cached frozen outputs, with honest tuning.

Splits (CamVid, the cpu profile): decoders are fitted on CamVid train minus a held-out block, the learning
rate and the early-stopping epoch are chosen on that held-out block (the last 20 % of each train sequence,
:func:`rtsseg.seg.train.carve_by_sequence`), and the book reports CamVid val, never looked at for any choice.
Train frames within ``min_gap_frames`` (default :data:`rtsseg.seg.train.MIN_GAP_FRAMES`, 5 s) of a val frame of
the same sequence are dropped from fit and held-out alike, and counted (:func:`rtsseg.seg.train.carve_apart_from_val`).
COCO-Stuff (the gpu profile): every 10th image of the train subset is held out (COCO images are independent).

Statistics (:mod:`rtsseg.stats`): the answer to "does attention help the decoder?" is the paired difference
attention-aware − control per (backbone, init, seed) -- paired because both decoders see the same cached
backbone outputs and seed. Cells (backbone × init) differ in level and spread (a random-init ViT and a DINO
BoTNet are not draws of one distribution), so each cell gets its own t interval over its seeds
(:func:`cell_differences`); what is pooled is the mean of the cell means, with a bootstrap over seeds within
cells (:func:`pooled_difference`), never one iid interval over all pairs.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import Subset

from rtsseg.seg.train import (
    MIN_GAP_FRAMES,
    OutputStore,
    cached_outputs,
    carve_apart_from_val,
    evaluate_store,
    train_decoder,
)

CELL = ("backbone", "init")


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of :func:`rtsseg.stats.t_interval` (kept for callers that unpack a tuple);
    (m, nan, nan) for one value."""
    from rtsseg.stats import t_interval as interval

    iv = interval([float(v) for v in values], level=level)
    return iv.mean, iv.lo, iv.hi


def format_ci(values: Sequence[float], scale: float = 100.0, decimals: int = 1, show_n: bool = True) -> str:
    """``"m [lo, hi] (n=k)"`` with the 95 % t interval, values × scale. ``show_n=False`` drops the ``(n=k)`` of
    an interval (narrow table cells whose caption states the seeds); a single value stays ``"m (n=1)"``."""
    m, lo, hi = t_interval([v * scale for v in values])
    if math.isnan(lo):
        return f"{m:.{decimals}f} (n=1)"
    n = f" (n={len(values)})" if show_n else ""
    return f"{m:.{decimals}f} [{lo:.{decimals}f}, {hi:.{decimals}f}]{n}"


def split_datasets(dataset: str, data_root: Path, input_size: Sequence[int], max_train: int | None = None,
                   max_val: int | None = None, holdout_fraction: float = 0.2, min_gap_frames: int = MIN_GAP_FRAMES,
                   val2017_blocks: tuple[int, int] | None = None):
    """{"fit", "holdout", "val"} datasets (images resized to ``input_size``, labels native), the class names,
    (``dataset``: "camvid", "cocostuff27", "cocostuff171", or "cocostuff27-val2017": the Colab size,
    val2017 alone split by image id into fit / held-out / reported test by
    :func:`rtsseg.data.cocostuff.cocostuff_val_splits`, its default block sizes unless ``val2017_blocks`` =
    (held-out, test) images)
    the preprocessing description of each (part of the cache identity) and ``dropped``: how many train frames
    lay within ``min_gap_frames`` of a val frame of their sequence and were dropped (CamVid; 0 for COCO)."""
    from rtsseg.data.transforms import ImageOnlyResize
    from rtsseg.seg.data import evenly_spaced

    resize = ImageOnlyResize(tuple(input_size))
    if dataset == "camvid":
        from rtsseg.data.camvid import CLASS_NAMES, CamVid

        train = CamVid(data_root / "camvid", "train", transform=resize)
        val = CamVid(data_root / "camvid", "val", transform=resize)
        carve = carve_apart_from_val([Path(p[0]).stem for p in train.pairs], [Path(p[0]).stem for p in val.pairs],
                                     holdout_fraction, min_gap_frames)
        fit, held, dropped = carve.fit, carve.held, len(carve.dropped)
        names = list(CLASS_NAMES)
    elif dataset == "cocostuff27-val2017":  # the Colab size: val2017 alone (~1 GB), split by image id
        from rtsseg.data.cocostuff import COCOStuff, cocostuff_val_splits, val_split_indices

        val = train = COCOStuff(data_root / "cocostuff", "val2017", coarse=True, transform=resize)
        blocks = {} if val2017_blocks is None else dict(zip(("n_held_out", "n_test"), val2017_blocks))
        ix = val_split_indices(train, cocostuff_val_splits(data_root / "cocostuff" / "curated", **blocks))
        fit, held, val_ids = ix["fit"], ix["held_out"], ix["test"]
        dropped = 0
        names = list(val.class_names)
    else:
        from rtsseg.data.cocostuff import COCOStuff

        coarse = dataset == "cocostuff27"
        train = COCOStuff(data_root / "cocostuff", "train2017", coarse=coarse, transform=resize)
        val = COCOStuff(data_root / "cocostuff", "val2017", coarse=coarse, transform=resize)
        every = max(2, round(1 / holdout_fraction))
        idx = evenly_spaced(len(train), max_train and int(max_train * (1 + holdout_fraction)))
        fit, held = [i for k, i in enumerate(idx) if k % every], [i for k, i in enumerate(idx) if not k % every]
        dropped = 0
        names = list(val.class_names)
    if not held or not fit:
        raise ValueError(f"{dataset} train ({len(train)} images) gives {len(fit)} fit and {len(held)} held-out images "
                         f"with holdout_fraction={holdout_fraction}: both must be non-empty")
    fit = [fit[i] for i in evenly_spaced(len(fit), max_train)]
    if max_train is not None:  # small runs: a proportionally small held-out block (still whole-sequence tails)
        held = [held[i] for i in evenly_spaced(len(held), max(1, round(max_train * holdout_fraction)))]
    if dataset == "cocostuff27-val2017":  # the test block of val2017 is the reported split
        val_idx = [val_ids[i] for i in evenly_spaced(len(val_ids), max_val)]
    else:
        val_idx = evenly_spaced(len(val), max_val)
    sets = {"fit": Subset(train, fit), "holdout": Subset(train, held), "val": Subset(val, val_idx)}
    files = {"train": train.fingerprint(), "val": val.fingerprint()}  # the data, not its folder: part of every run
    pre = {k: {"dataset": dataset, "split": "train" if k != "val" else "val", "indices": ix,
               "input_size": list(input_size), "data": files["train" if k != "val" else "val"]}
           for k, ix in (("fit", fit), ("holdout", held), ("val", val_idx))}
    return sets, names, pre, dropped


def backbone_stores(backbone, sets: dict, pre: dict, cache_root: Path, batch_size: int = 16,
                    device="cpu") -> dict[str, OutputStore]:
    """Cached outputs of one backbone (one init, one seed) on each split."""
    return {k: cached_outputs(backbone, ds, pre[k], cache_root, batch_size, device) for k, ds in sets.items()}


def fit_decoder(name: str, stores: dict[str, OutputStore], num_classes: int, seed: int, lrs: Sequence[float],
                epochs: int, batch_size: int = 16, attention_loss_weight: float = 0.0, label_stride: int = 1,
                patience: int | None = None, run_parent: Path | None = None, embed_dim: int = 64,
                fuse_dim: int = 64, k: int = 1, amp: str = "none", device="cpu",
                things: Sequence[int] | None = None, class_weighting: str = "none"):
    """Train decoder ``name`` once per learning rate, keep the one with the best held-out mIoU (and its best
    epoch), score it on val. Returns (row dict, decoder); the row's ``things mIoU`` is the mean IoU over the
    class indices ``things`` (``rtsseg.data.camvid.THINGS``; NaN when None). ``class_weighting``: "none" or
    "median_frequency" (the cross-entropy's class weights from the fit split's labels,
    :func:`rtsseg.seg.metrics.median_frequency_weights`)."""
    from rtsseg.seg.decoders import count_parameters, make_decoder
    from rtsseg.seg.metrics import CLASS_WEIGHTINGS, median_frequency_weights, subset_miou

    if class_weighting not in CLASS_WEIGHTINGS:
        raise ValueError(f"class_weighting {class_weighting!r} is not one of {CLASS_WEIGHTINGS}. Fix: the "
                         "parameter class_weighting")
    fit, held, val = stores["fit"], stores["holdout"], stores["val"]
    weights = median_frequency_weights(fit.masks, num_classes) if class_weighting == "median_frequency" else None
    best = None
    t0, c0 = time.perf_counter(), time.process_time()
    for lr in lrs:
        torch.manual_seed(seed)
        dec = make_decoder(name, fit.in_dims, num_classes, fit.num_heads, k=k, embed_dim=embed_dim, fuse_dim=fuse_dim)
        dec, hist = train_decoder(dec, fit, num_classes, val=held, epochs=epochs, lr=lr, batch_size=batch_size,
                                  attention_loss_weight=attention_loss_weight, label_stride=label_stride,
                                  patience=patience, seed=seed, amp=amp, device=device, class_weights=weights,
                                  run_parent=None if run_parent is None else Path(run_parent) / name)
        held_miou = max(h["val_miou"] for h in hist)
        if best is None or held_miou > best[0]:
            best = (held_miou, lr, dec, hist)
    held_miou, lr, dec, hist = best
    s = evaluate_store(dec, val, num_classes, batch_size, device=device)
    row = {"decoder": name, "seed": seed, "lr": lr, "attention_loss_weight": attention_loss_weight,
           "best_epoch": max(hist, key=lambda h: h["val_miou"])["epoch"], "holdout mIoU": held_miou,
           "mIoU": s.miou, "things mIoU": subset_miou(s.iou, things) if things else float("nan"),
           "pixel accuracy": s.pixel_accuracy, "parameters": count_parameters(dec),
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



def cell_differences(scores, a: str, b: str, cell: Sequence[str] = CELL, values: Sequence[str] = ("mIoU",),
                     level: float = 0.95):
    """One row per cell (``cell`` keys, e.g. backbone × init) and value column: the paired differences
    ``a − b`` over the cell's seeds, their :func:`rtsseg.stats.t_interval` (NaN bounds for a single seed) and
    :func:`rtsseg.stats.verdict` ("no measurable difference" for one seed). Columns: the cell keys, ``value``,
    ``n``, ``mean``, ``lo``, ``hi``, ``verdict``."""
    import pandas as pd
    from rtsseg.stats import t_interval as interval, verdict

    rows = []
    for value in values:
        diffs = paired_differences(scores, a, b, keys=(*cell, "seed"), value=value)
        for key, d in diffs.groupby(list(cell), sort=False):
            iv = interval(d.difference.tolist(), level=level)
            key = key if isinstance(key, tuple) else (key,)
            rows.append({**dict(zip(cell, key)), "value": value, "n": iv.n, "mean": iv.mean, "lo": iv.lo,
                         "hi": iv.hi, "verdict": verdict(iv)})
    return pd.DataFrame(rows)


def mean_of_cell_means(values_by_cell: Sequence[Sequence[float]], n_boot: int = 2000, seed: int = 0,
                       level: float = 0.95):
    """Mean over cells of the per-cell means, with a percentile bootstrap that keeps every cell and resamples
    the seeds *within* each cell (a stratified bootstrap): the cells are the design (which backbones and inits
    were run), not draws, so they are not resampled, and no cell weighs more for having more seeds. A cell of
    one seed enters with its value and no spread. Returns an ``rtsseg.stats.Interval`` (``n`` = cells; NaN
    bounds, method :data:`rtsseg.stats.ONE_SEED_PER_CELL`, when no cell has two seeds)."""
    import numpy as np
    from rtsseg.stats import ONE_SEED_PER_CELL, Interval

    cells = [np.asarray(v, dtype=float) for v in values_by_cell]
    if not cells or any(c.size == 0 for c in cells):
        raise ValueError("mean_of_cell_means: pass one non-empty list of per-seed values per cell")
    est = float(np.mean([c.mean() for c in cells]))
    method = "bootstrap over seeds within cells"
    if all(c.size == 1 for c in cells):
        return Interval(est, float("nan"), float("nan"), len(cells), level, ONE_SEED_PER_CELL)
    rng = np.random.default_rng(seed)
    reps = np.mean([c[rng.integers(0, c.size, size=(n_boot, c.size))].mean(1) for c in cells], axis=0)  # [B]
    lo, hi = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2])
    return Interval(est, float(lo), float(hi), len(cells), level, method)


def pooled_difference(scores, a: str, b: str, cell: Sequence[str] = CELL, value: str = "mIoU",
                      n_boot: int = 2000, seed: int = 0):
    """The mean over cells of the cell-mean paired difference ``a − b`` with :func:`mean_of_cell_means`'s
    interval (an ``rtsseg.stats.Interval``). Raises when no pair exists."""
    diffs = paired_differences(scores, a, b, keys=(*cell, "seed"), value=value)
    if not len(diffs):
        raise ValueError(f"pooled_difference: no ({', '.join(cell)}, seed) has both {a!r} and {b!r}")
    by_cell = [d.difference.tolist() for _, d in diffs.groupby(list(cell), sort=False)]
    return mean_of_cell_means(by_cell, n_boot=n_boot, seed=seed)


def interval_text(interval, scale: float = 100.0, decimals: int = 1) -> str:
    """``"+m [+lo, +hi]"`` of an ``rtsseg.stats.Interval`` × ``scale``; ``"+m (n=1, no interval)"`` without bounds."""
    m, lo, hi = interval.mean * scale, interval.lo * scale, interval.hi * scale
    if math.isnan(lo) or math.isnan(hi):
        return f"{m:+.{decimals}f} (n={interval.n}, no interval)"
    return f"{m:+.{decimals}f} [{lo:+.{decimals}f}, {hi:+.{decimals}f}]"


def cell_table(cells, scale: float = 100.0, decimals: int = 1):
    """:func:`cell_differences` as a display table: one row per cell and value, ``"+m [+lo, +hi]"`` in points
    (``"+m (n=1)"`` for a single seed), ``n`` and the verdict."""
    import pandas as pd

    def text(r) -> str:
        if math.isnan(r.lo):
            return f"{r.mean * scale:+.{decimals}f} (n=1)"
        return f"{r.mean * scale:+.{decimals}f} [{r.lo * scale:+.{decimals}f}, {r.hi * scale:+.{decimals}f}]"

    keys = [c for c in cells.columns if c not in ("value", "n", "mean", "lo", "hi", "verdict")]
    out = pd.DataFrame({**{k: cells[k] for k in keys}, "value": cells["value"],
                        "difference": [text(r) for r in cells.itertuples()], "n": cells["n"],
                        "verdict": cells["verdict"]})
    return out.set_index([*keys, "value"])


# ---- the chapter's steps (notebook 07 calls these; nothing deciding a result lives in the notebook) ----------

def oracle_label(name: str, snr: float) -> str:
    """The decoder label of ``name`` trained on oracle attention at ``snr``: ``"attn_all | oracle snr=inf"``."""
    return f"{name} | oracle snr={snr:g}"


def fit_variants(stores: dict[str, OutputStore], variants: Sequence[tuple[str, float]], num_classes: int, seed: int,
                 fit_kwargs: dict, run_parent: Path | None = None, oracle_snrs: Sequence[float] = (),
                 oracle_decoder: str = "attn_all", things: Sequence[int] | None = None):
    """Every decoder variant ``(name, attention_loss_weight)`` on one backbone's cached ``stores`` (label
    ``name``, or ``name+sup`` when the weight is > 0), then ``oracle_decoder`` on the oracle attention at each
    of ``oracle_snrs`` (:func:`rtsseg.seg.oracle.oracle_store`, same stages; label :func:`oracle_label`).
    ``fit_kwargs``: :func:`fit_decoder`'s lrs, epochs, batch_size, label_stride, patience, embed_dim, fuse_dim,
    k, amp, device. Returns (rows, {label: decoder})."""
    from rtsseg.seg.oracle import oracle_store

    jobs = [(name if w == 0 else f"{name}+sup", name, w, stores) for name, w in variants]
    for snr in oracle_snrs:
        o = {k: oracle_store(v, num_classes, snr, seed=seed) for k, v in stores.items()}
        jobs.append((oracle_label(oracle_decoder, snr), oracle_decoder, 0.0, o))
    rows, decoders = [], {}
    for label, name, weight, st in jobs:
        # oracle runs are runs of their own: the store's identity (in the run identity) names the oracle
        row, dec = fit_decoder(name, st, num_classes, seed, attention_loss_weight=weight, run_parent=run_parent,
                               things=things, **fit_kwargs)
        row["decoder"] = label
        rows.append(row)
        decoders[label] = dec
    return rows, decoders


def ci_table(scores, value: str = "mIoU", index: Sequence[str] = ("backbone", "decoder"), column: str = "init",
             order: Sequence[str] | None = None):
    """``format_ci`` (mean [95 % t interval] over seeds, in %) of ``value`` per ``index`` × ``column``,
    the columns in ``order``; "–" where a cell has no run."""
    table = (scores.groupby([*index, column], sort=False)[value]
             .apply(lambda v: format_ci(v.tolist(), show_n=False)).unstack(column))
    if order is not None:
        table = table.reindex(columns=[c for c in order if c in table.columns])
    table.columns.name = column
    return table.fillna("–")


def comparisons(scores, control: str = "control", prefix: str = "attn"):
    """The decoder labels compared with ``control``: every label starting with ``prefix`` (oracle ones too),
    in order of appearance; empty when the grid has no control."""
    labels = list(dict.fromkeys(scores.decoder))
    return [d for d in labels if d.startswith(prefix)] if control in labels else []


def all_pairs(scores, labels: Sequence[str], control: str = "control", value: str = "mIoU"):
    """:func:`paired_differences` of every label against ``control``, with a ``comparison`` column
    (``"<label> − control"``): the input of ``rtsseg.seg.plot.plot_paired_differences``."""
    import pandas as pd

    frames = [paired_differences(scores, d, control, value=value).assign(comparison=f"{d} − {control}")
              for d in labels]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def difference_table(scores, labels: Sequence[str], control: str = "control",
                     values: Sequence[str] = ("mIoU", "things mIoU")):
    """Per cell (backbone × init) and comparison: :func:`cell_differences` of each label − ``control`` for
    each value, rendered by :func:`cell_table` (index: comparison, backbone, init, value)."""
    import pandas as pd

    tables = [cell_table(cell_differences(scores, d, control, values=values)) for d in labels]
    return pd.concat(tables, keys=[f"{d} − {control}" for d in labels], names=["comparison"])


def headline(scores, label: str = "attn_all", control: str = "control", value: str = "mIoU",
             n_boot: int = 2000, seed: int = 0) -> dict:
    """The answer's numbers: the pooled (mean of cell means) difference ``label − control`` with its
    within-cell bootstrap interval, its text in points and its :func:`rtsseg.stats.verdict`; the number of
    cells and pairs. ``{"interval": None, ...}`` when the grid lacks either decoder."""
    from rtsseg.stats import verdict

    pairs = paired_differences(scores, label, control, value=value) if label in set(scores.decoder) else []
    if not len(pairs):
        return {"interval": None, "text": f"not computed ({label} or {control} missing)", "verdict": "no answer",
                "cells": 0, "pairs": 0}
    iv = pooled_difference(scores, label, control, value=value, n_boot=n_boot, seed=seed)
    return {"interval": iv, "text": interval_text(iv), "verdict": verdict(iv), "cells": iv.n, "pairs": len(pairs)}


def best_cell(scores, exclude: str = "oracle") -> tuple[str, str, str]:
    """(backbone, init, decoder) of the highest mean val mIoU over seeds, decoders on oracle attention left out
    (they read the labels)."""
    real = scores[~scores.decoder.str.contains(exclude, regex=False)]
    return real.groupby(["backbone", "init", "decoder"], sort=False)["mIoU"].mean().idxmax()


def per_class_table(scores, class_names: Sequence[str], backbone: str, init: str, decoders: Sequence[str]):
    """Per-class val IoU (%) of ``decoders`` on one cell, mean over its seeds: classes as rows."""
    import pandas as pd

    cell = scores[(scores.backbone == backbone) & (scores.init == init)]
    cols = {}
    for d in decoders:
        iou = [r for r in cell[cell.decoder == d]["iou"]]
        if iou:
            cols[d] = [round(100 * sum(v[c] for v in iou) / len(iou), 1) for c in range(len(class_names))]
    table = pd.DataFrame(cols, index=pd.Index(list(class_names), name="class"))
    table.columns.name = "decoder"
    return table
