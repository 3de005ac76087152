"""Chapter 7's steps as functions: the notebook narrates, these decide and render (tested on made-up numbers).

Each section function returns a :class:`Published` -- the texts, tables and figures to glue, the results to
save, the findings, and anything to display -- and :func:`publisher` hands them to the book's glue functions,
which the notebook passes in (the book layer sits above this one, so nothing here imports it). The analysis
layer's pieces (``load_backbone``, ``iter_models``, ``excess_result``) are passed in the same way.

The chapter's answer names three numbers per backbone (:func:`three_numbers`): the **oracle ceiling**
(``attn_all`` on attention built from the labels − control), the **learned attention's gain** (``attn_all`` on
the backbone's own attention − control) and the **share of the ceiling** the gain reaches (gain / ceiling:
0 = nothing of what attention could give, 1 = all of it), each pooled as the mean of cell means with a bootstrap
over seeds within cells (:func:`rtsseg.seg.experiment.mean_of_cell_means`; the share resamples both
differences of a seed together), each with its verdict (:class:`rtsseg.findings.Finding`).
"""

from __future__ import annotations

import json

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from rtsseg.profiles import model_runs
from rtsseg.seg import experiment as ex

STEP = "07_segmentation"
DATASET_LABELS = {"camvid": "CamVid", "cocostuff27": "COCO-Stuff-27", "cocostuff171": "COCO-Stuff-171",
                  "cocostuff27-val2017": "COCO-Stuff-27 (val2017 split by image id)"}
ORACLE = ex.oracle_label("attn_all", math.inf)


@dataclass
class Published:
    """What a section gives the page: ``texts`` {glue name: (value, fmt or None)}, ``tables`` / ``figures``
    {glue name: object}, ``results`` {saved result name: DataFrame}, ``findings`` (``rtsseg.findings.Finding``),
    ``show`` (objects displayed in the cell's output, e.g. the runs a grid had to skip)."""

    texts: dict = field(default_factory=dict)
    tables: dict = field(default_factory=dict)
    figures: dict = field(default_factory=dict)
    results: dict = field(default_factory=dict)
    findings: list = field(default_factory=list)
    show: list = field(default_factory=list)


def publisher(glue_result: Callable, glue_table: Callable, glue_figure: Callable, save_results: Callable,
              display: Callable | None = None) -> Callable[[Published], Published]:
    """``put(published)``: every text, table and figure glued, every result saved (``save_results(name,
    table)``), every ``show`` item displayed; returns ``published`` (its findings stay with the caller)."""
    def put(out: Published) -> Published:
        for name, (value, fmt) in out.texts.items():
            glue_result(name, value, fmt)
        for name, table in out.tables.items():
            glue_table(name, table)
        for name, fig in out.figures.items():
            glue_figure(name, fig)
        for name, table in out.results.items():
            save_results(name, table)
        for item in out.show:
            (display or print)(item)
        return out
    return put


# ---- set-up -------------------------------------------------------------------------------------------------

@dataclass
class Setup:
    """The chapter's data and grid: splits, class names, cache identities, decoder variants, runs, inits and
    :func:`rtsseg.seg.experiment.fit_decoder`'s keyword arguments."""

    sets: dict
    class_names: list
    preprocessing: dict
    n_dropped: int
    variants: list
    runs: list
    inits: list
    fit_kwargs: dict
    things: list | None
    device: object = "cpu"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + "s" * (n != 1)


def last_blocks(n: int) -> str:
    """"the last block" / "the last 2 blocks" (never "the last 1 block")."""
    return "the last block" if n == 1 else f"the last {n} blocks"


def prepare(root: Path, device, all_inits: Sequence[str], *, dataset: str, input_size, max_train, max_val,
            holdout_fraction: float, min_gap_frames: int, decoders, attention_loss_weights, backbones,
            main_backbone: str, seeds, other_seeds, inits, lrs, epochs, batch_size, label_stride, patience,
            embed_dim, fuse_dim, propagation_steps, amp, extra_cells: Sequence[tuple[str, str]] = (),
            class_weighting: str = "none", **_) -> tuple[Setup, Published]:
    """The splits (:func:`rtsseg.seg.experiment.split_datasets`), the grid (variants: every decoder plus
    ``attn_all`` with each attention-loss weight; runs: every seed of the main backbone, ``other_seeds`` of the
    others; ``inits`` None: ``all_inits``; ``extra_cells``: (backbone, init) cells beside that grid, seed 0, e.g.
    published weights, ``rtsseg.experiments.published_cells``, their inits appended) and the set-up texts of the
    page. Takes the notebook's parameters by name (``**params``)."""
    from rtsseg.data.camvid import THINGS

    sets, names, pre, dropped = ex.split_datasets(dataset, Path(root), input_size, max_train, max_val,
                                                  holdout_fraction, min_gap_frames)
    inits = list(all_inits) if inits is None else list(inits)
    runs = model_runs(backbones, main_backbone, seeds, other_seeds)
    n_cells = len(runs) * len(inits) + len(extra_cells)
    inits += [i for i in dict.fromkeys(i for _, i in extra_cells) if i not in inits]
    variants = [(d, 0.0) for d in decoders] + [("attn_all", w) for w in attention_loss_weights]
    fit_kwargs = dict(lrs=lrs, epochs=epochs, batch_size=batch_size, label_stride=label_stride, patience=patience,
                      embed_dim=embed_dim, fuse_dim=fuse_dim, k=propagation_steps, amp=amp, device=device,
                      class_weighting=class_weighting)
    setup = Setup(sets, names, pre, dropped, variants, runs, inits, fit_kwargs,
                  list(THINGS) if dataset == "camvid" else None, device)
    texts = {"seg_dataset": (DATASET_LABELS[dataset], None), "seg_n_fit": (len(sets["fit"]), ",d"),
             "seg_n_holdout": (len(sets["holdout"]), ",d"), "seg_n_val": (len(sets["val"]), ",d"),
             "seg_n_dropped": (dropped, ",d"), "seg_min_gap": (min_gap_frames, "d"),
             "seg_n_classes": (len(names), "d"), "seg_input_size": ("×".join(map(str, input_size)), None),
             "seg_n_variants": (len(variants), "d"), "seg_n_runs": (n_cells, "d"),
             "seg_main_backbone": (main_backbone, None), "seg_seeds_main": (plural(len(seeds), "seed"), None),
             "seg_seeds_other": (plural(len(other_seeds), "seed"), None)}
    return setup, Published(texts=texts)


# ---- the grid -----------------------------------------------------------------------------------------------

@dataclass
class Grid:
    """Every trained decoder's row (``scores``), the decoders by (backbone, init, seed, label), the cost rows
    (what, wall s, cpu s) and the runs skipped for want of a trained backbone."""

    scores: object  # pandas.DataFrame
    trained: dict
    timing: list
    missing: list


def run_grid(models: Iterable, setup: Setup, cache_root: Path, run_parent: Callable[..., Path], missing: list, *,
             oracle_snrs=(), oracle_backbones=(), batch_size: int = 16, **_) -> Grid:
    """Every decoder variant on every ``(backbone, init, seed, model)`` of ``models`` (e.g.
    ``rtsseg.experiments.iter_models``, which appends the runs it skips to ``missing``): cached outputs, then
    :func:`rtsseg.seg.experiment.fit_variants` (oracle rows on ``oracle_backbones``), each run under
    ``run_parent(backbone, init, "seed<s>")``."""
    import pandas as pd

    rows, trained, timing = [], {}, []
    for backbone, init, seed, model in models:
        t0, c0 = time.perf_counter(), time.process_time()
        stores = ex.backbone_stores(model, setup.sets, setup.preprocessing, cache_root, batch_size, setup.device)
        timing.append({"what": "backbone outputs", "wall s": time.perf_counter() - t0, "cpu s": time.process_time() - c0})
        snrs = oracle_snrs if backbone in oracle_backbones else []
        new, decs = ex.fit_variants(stores, setup.variants, setup.num_classes, seed, setup.fit_kwargs,
                                    run_parent(backbone, init.replace(" ", "_"), f"seed{seed}"), snrs,
                                    things=setup.things)
        for row in new:
            row.update(backbone=backbone, init=init)
            timing.append({"what": f"decoder {row['decoder']}", "wall s": row["train_s"], "cpu s": row["train_cpu_s"]})
        rows += new
        trained.update({(backbone, init, seed, label): d for label, d in decs.items()})
    return Grid(pd.DataFrame(rows), trained, timing, missing)


def missing_table(missing: list):
    """The runs a grid skipped, as a table (None when none was)."""
    import pandas as pd

    return pd.DataFrame(missing, columns=["backbone", "init", "seed", "why skipped"]) if missing else None


def grid_section(grid: Grid, setup: Setup, dataset: str,
                 key_decoders: Sequence[str] = ("linear", "control", "attn_all", "attn_all+sup")) -> Published:
    """The ablation table (val mIoU and things mIoU, mean [t interval] over seeds per backbone × decoder ×
    init) and the result chapter 8 reads (mIoU of ``key_decoders``)."""
    import pandas as pd

    table = pd.concat({v: ex.ci_table(grid.scores, v, order=setup.inits) for v in ("mIoU", "things mIoU")},
                      names=["value"])
    keep = table.loc["mIoU"].index.get_level_values("decoder").isin(key_decoders)
    skipped = missing_table(grid.missing)
    runs = grid.scores
    if "iou" in runs:  # per-class IoU as one JSON cell (CSV keeps a row per decoder)
        runs = runs.assign(iou=runs["iou"].map(lambda v: json.dumps([round(float(x), 5) for x in v])))
    return Published(tables={"tbl_seg_ablation": table},
                     results={f"segmentation_{dataset}": table.loc["mIoU"][keep],
                              f"segmentation_{dataset}_runs": runs},  # one row per trained decoder, per-class IoU
                     show=[] if skipped is None else [skipped])


# ---- the answer ---------------------------------------------------------------------------------------------

def share_of_ceiling(scores, backbone: str, label: str = "attn_all", oracle: str = ORACLE, control: str = "control",
                     n_boot: int = 2000, seed: int = 0, level: float = 0.95):
    """(mean over cells of the gain ``label − control``) / (mean over cells of the ceiling ``oracle −
    control``) on ``backbone``'s cells that hold all three, with a percentile bootstrap over the seeds within
    each cell (a seed's gain and ceiling resampled together: they share its control). An
    ``rtsseg.stats.Interval`` (``n`` = cells; NaN bounds when no cell has two seeds); None without such a cell."""
    from rtsseg.stats import ONE_SEED_PER_CELL, Interval

    b = scores[scores.backbone == backbone]
    gain = ex.paired_differences(b, label, control, keys=(*ex.CELL, "seed"))
    ceil = ex.paired_differences(b, oracle, control, keys=(*ex.CELL, "seed"))
    both = gain.merge(ceil, on=[*ex.CELL, "seed"], suffixes=("_gain", "_ceiling"))
    if not len(both):
        return None
    cells = [(d.difference_gain.to_numpy(), d.difference_ceiling.to_numpy())
             for _, d in both.groupby(list(ex.CELL), sort=False)]
    est = float(np.mean([g.mean() for g, _ in cells]) / np.mean([c.mean() for _, c in cells]))
    method = "bootstrap over seeds within cells (ratio)"
    if all(g.size == 1 for g, _ in cells):
        return Interval(est, float("nan"), float("nan"), len(cells), level, ONE_SEED_PER_CELL)
    rng = np.random.default_rng(seed)
    gs, cs = [], []
    for g, c in cells:
        idx = rng.integers(0, g.size, size=(n_boot, g.size))  # [B, n]: the same seeds for gain and ceiling
        gs.append(g[idx].mean(1))
        cs.append(c[idx].mean(1))
    reps = np.mean(gs, 0) / np.mean(cs, 0)  # [B]
    lo, hi = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2])
    return Interval(est, float(lo), float(hi), len(cells), level, method)


def three_numbers(scores, backbone: str, label: str = "attn_all", oracle: str = ORACLE, control: str = "control"
                  ) -> dict:
    """``{"ceiling", "gain", "share"}`` of ``backbone`` as :class:`rtsseg.findings.Finding` (None where the grid
    lacks the decoders, and for the share where the ceiling is not above 0): the differences in mIoU points, the
    share as a fraction of the ceiling."""
    from rtsseg.findings import Finding

    b = scores[scores.backbone == backbone]
    out = {"ceiling": None, "gain": None, "share": None}
    has = set(b.decoder)
    if control not in has:
        return out
    if oracle in has:
        out["ceiling"] = Finding(f"segmentation.oracle_minus_control.{backbone}", STEP,
                                 f"{backbone}: oracle ceiling ({oracle} − {control})",
                                 ex.pooled_difference(b, oracle, control).scaled(100), "mIoU points",
                                 null_name="0")
    if label in has:
        out["gain"] = Finding(f"segmentation.attn_minus_control.{backbone}", STEP,
                              f"{backbone}: learned attention's gain ({label} − {control})",
                              ex.pooled_difference(b, label, control).scaled(100), "mIoU points", null_name="0")
    # a share of a ceiling that may be 0 is no number: only where the ceiling is above 0
    ceiling_above = out["ceiling"] is not None and out["ceiling"].verdict == "above"
    share = share_of_ceiling(scores, backbone, label, oracle, control) if label in has and ceiling_above else None
    if share is not None:
        out["share"] = Finding(f"segmentation.share_of_ceiling.{backbone}", STEP,
                               f"{backbone}: the gain's share of the oracle ceiling", share, "of the ceiling",
                               null_name="0, none of the ceiling", reference="1 = the whole ceiling")
    return out


def answer_section(scores, dataset: str, main_backbone: str, width: float = 8.0) -> Published:
    """Per-cell paired differences (table, figure), the pooled answer ``attn_all − control`` over all cells
    (glued as ``seg_attn_minus_control``, the landing page's number), the clean oracle's, and per backbone the
    three numbers (:func:`three_numbers`) as a table and sentences. Findings: the pooled answer, the main
    backbone's ceiling and share."""
    import pandas as pd
    from rtsseg.findings import Finding
    from rtsseg.seg.plot import plot_paired_differences

    out = Published()
    labels = ex.comparisons(scores)
    pairs = ex.all_pairs(scores, labels)
    if len(pairs):
        differences = ex.difference_table(scores, labels)
        out.results[f"segmentation_{dataset}_attn_minus_control"] = (
            differences.loc["attn_all − control"] if "attn_all" in labels else differences)
        out.tables["tbl_seg_differences"] = differences
        out.figures["fig_seg_differences"] = plot_paired_differences(pairs, width=width,
                                                                     legend_title="initialisation")
    else:
        import matplotlib.pyplot as plt

        out.tables["tbl_seg_differences"] = pd.DataFrame({"note": ["the grid has no control or no attention decoder"]})
        fig, ax = plt.subplots(figsize=(width, 1.0))
        ax.text(0.5, 0.5, "no attention-aware decoder and control in this run", ha="center", va="center")
        ax.set_axis_off()
        out.figures["fig_seg_differences"] = fig
    answer = ex.headline(scores)
    oracle = ex.headline(scores, ORACLE)
    out.texts.update(seg_attn_minus_control=(answer["text"], None), seg_attn_minus_control_n=(answer["pairs"], "d"),
                     seg_attn_minus_control_cells=(answer["cells"], "d"), seg_verdict=(answer["verdict"], None),
                     seg_oracle_minus_control=(oracle["text"], None), seg_oracle_verdict=(oracle["verdict"], None))
    if answer["interval"] is not None:
        pooled = Finding("segmentation.attn_minus_control", STEP,
                         f"attn_all − control, mean of {plural(answer['cells'], 'cell mean')}",
                         answer["interval"].scaled(100), "mIoU points", null_name="0")
        out.findings.append(pooled)
        out.texts["seg_answer"] = (pooled.sentence(1), None)
    else:
        out.texts["seg_answer"] = (f"attn_all − control: {answer['text']}", None)
    rows, sentences = [], []
    for backbone in dict.fromkeys(scores.backbone):
        nums = three_numbers(scores, backbone)
        row = {"backbone": backbone}
        for what, f in nums.items():
            decimals = 3 if what == "share" else 1  # a fraction of the ceiling: 0.036, not 0.04
            row[what] = f.value_text(decimals) if f is not None else "–"
            row[f"{what} verdict"] = f.verdict if f is not None else "–"
            if f is not None:
                sentences.append(f.sentence(decimals))
        rows.append(row)
        if backbone == main_backbone:
            out.findings += [nums[k] for k in ("ceiling", "share") if nums[k] is not None]
    out.tables["tbl_seg_three_numbers"] = pd.DataFrame(rows).set_index("backbone")
    out.texts["seg_three_numbers"] = ("; ".join(sentences) if sentences else "not computed (no control)", None)
    return out


# ---- fine-tuned attention -----------------------------------------------------------------------------------

def attention_frames(root: Path, image_size: int, n_frames: int | None = None):
    """CamVid val things frames (``rtsseg.attention.groundtruth.camvid_frames``, centre crops at ``image_size``)
    for the attention's object-specific score; ``n_frames`` evenly spaced ones, or all."""
    import torch
    from rtsseg.attention.groundtruth import camvid_frames
    from rtsseg.data import camvid

    gset = camvid_frames([camvid.CamVid(camvid.camvid_root(root), "val")], image_size)
    if n_frames is not None and n_frames < len(gset):
        gset = gset.subset(torch.linspace(0, len(gset) - 1, n_frames).round().long().unique())
    return gset


def finetune_cells(make_backbone: Callable, cells: Sequence[tuple[str, str]], seeds: Sequence[int], setup: Setup,
                   gset, score: Callable, cfg, save_root: Path, checkpoint_config: dict | None = None,
                   backbone_kwargs: dict | None = None):
    """:func:`rtsseg.seg.finetune.finetune_pair` on each (backbone, init) of ``cells`` (``make_backbone(backbone,
    init, seed)``, e.g. ``load_backbone``); a cell whose backbone cannot be loaded (no trained run) is skipped
    and listed. Returns (rows with backbone and init, {cell: FinetunePair}, missing rows)."""
    import pandas as pd
    from rtsseg.seg.finetune import finetune_pair

    pairs, missing = {}, []
    for backbone, init in cells:
        try:
            make_backbone(backbone, init, seeds[0])
        except (FileNotFoundError, ValueError) as err:
            missing.append((backbone, init, seeds[0], str(err).split(". Fix")[0]))
            continue
        pairs[backbone, init] = finetune_pair(
            lambda s, b=backbone, i=init: make_backbone(b, i, s), setup.sets, setup.num_classes, seeds, gset, score,
            cfg, setup.things, Path(save_root) / backbone / init.replace(" ", "_"), backbone_kwargs,
            checkpoint_config={**(checkpoint_config or {}), "init": init}, device=setup.device)
    rows = [p.rows.assign(backbone=b, init=i) for (b, i), p in pairs.items()]
    return (pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()), pairs, missing


def finetune_section(rows, pairs: dict, missing: list, dataset: str, unfreeze_blocks: int, weight: float
                     ) -> Published:
    """Fine-tuning tables (per cell and arm: val mIoU, things mIoU, excess AUROC before / after, mean [t] over
    seeds; per cell the paired differences of :data:`rtsseg.seg.finetune.DIFFERENCES` with verdicts), the saved
    result, and two findings pooled over cells (mean of cell means, bootstrap over seeds within cells):
    val mIoU of the loss arm − the no-loss arm (points), and the loss arm's excess AUROC after − before (one
    cell: its seeds' Student-t interval)."""
    import pandas as pd
    from rtsseg.findings import Finding
    from rtsseg.seg.finetune import DIFFERENCES
    from rtsseg.stats import t_interval

    out = Published(texts={"seg_ft_blocks": (last_blocks(unfreeze_blocks), None), "seg_ft_weight": (weight, "g")})
    if missing:
        out.show.append(missing_table(missing))
    if not pairs:
        note = pd.DataFrame({"note": ["no fine-tuning ran in this edition"]})
        out.tables.update(tbl_seg_finetune=note, tbl_seg_finetune_differences=note)
        out.texts.update(seg_ft_miou=("not run", None), seg_ft_excess=("not run", None))
        return out
    per_arm = {}
    for col, scale, dec in (("mIoU", 100, 1), ("things mIoU", 100, 1), ("excess before", 1, 3), ("excess after", 1, 3)):
        per_arm[col] = rows.groupby(["backbone", "init", "arm"], sort=False)[col].apply(
            lambda v, s=scale, d=dec: ex.format_ci(v.tolist(), scale=s, decimals=d, show_n=False))
    out.tables["tbl_seg_finetune"] = pd.DataFrame(per_arm)
    diffs = pd.concat([p.differences.assign(backbone=b, init=i) for (b, i), p in pairs.items()], ignore_index=True)
    scale = diffs.quantity.str.contains("mIoU").map({True: 100.0, False: 1.0})
    dec = diffs.quantity.str.contains("mIoU").map({True: 1, False: 3})
    text = [f"{m * s:+.{d}f} (n=1)" if math.isnan(lo) else f"{m * s:+.{d}f} [{lo * s:+.{d}f}, {hi * s:+.{d}f}]"
            for m, lo, hi, s, d in zip(diffs["mean"], diffs.lo, diffs.hi, scale, dec)]
    out.tables["tbl_seg_finetune_differences"] = (diffs.assign(difference=text)
                                                  .set_index(["backbone", "init", "quantity"])[["difference", "n",
                                                                                                "verdict"]])
    out.results[f"segmentation_{dataset}_finetune"] = rows.drop(columns=["checkpoint"])
    for key, quantity, scale, unit in (("miou", "val mIoU: attention loss − no loss", 100.0, "mIoU points"),
                                       ("excess", "excess AUROC: attention loss, after − before", 1.0, "AUROC")):
        col, a, b = DIFFERENCES[quantity]
        by_cell = []
        for (bb, ii), r in rows.groupby(["backbone", "init"], sort=False):
            first = r[r.arm == a].set_index("seed")[col]
            second = (r.groupby("seed")["excess before"].first() if b == "before"
                      else r[r.arm == b].set_index("seed")[col])
            by_cell.append((first - second).dropna().tolist())
        # one cell: its seeds' t interval (as its table row); several: the mean of cell means
        iv = (t_interval(by_cell[0]) if len(by_cell) == 1 else ex.mean_of_cell_means(by_cell)).scaled(scale)
        f = Finding(f"segmentation.finetune.{key}", STEP,
                    f"fine-tuned {last_blocks(unfreeze_blocks)}, {quantity}", iv, unit, null_name="0")
        out.findings.append(f)
        out.texts[f"seg_ft_{key}"] = (f.sentence(1 if key == "miou" else 3), None)
    return out


# ---- per class, predictions, cost ---------------------------------------------------------------------------

def per_class_section(scores, class_names: Sequence[str]) -> tuple[Published, tuple[str, str, int, str]]:
    """The best cell (highest mean val mIoU, oracle rows left out), its per-class IoU table for the linear probe,
    control, attention-aware and best decoders, and its texts. Returns (published, (backbone, init, first seed,
    decoder))."""
    backbone, init, decoder = ex.best_cell(scores)
    rows = scores[(scores.backbone == backbone) & (scores.init == init) & (scores.decoder == decoder)]
    shown = list(dict.fromkeys(["linear", "control", "attn_all", "attn_all+sup", decoder]))[:5]
    out = Published(texts={"seg_best_cell": (f"{backbone} / {init}", None), "seg_best_decoder": (decoder, None),
                           "seg_best_miou": (ex.format_ci(rows.mIoU.tolist(), show_n=False).replace(" (n=1)", ""), None)},
                    tables={"tbl_seg_per_class": ex.per_class_table(scores, class_names, backbone, init, shown)})
    return out, (backbone, init, int(rows.seed.min()), decoder)


def predictions_section(model, grid: Grid, setup: Setup, best: tuple, checkpoint: Path, dataset: str,
                        input_size, image_size: int, n_figure_images: int = 4, width: float = 8.0
                        ) -> tuple[Published, Path]:
    """The best run's predictions on ``n_figure_images`` val frames spread over the split (figure, frame
    numbers), and the model saved with its backbone (``model``) to ``checkpoint`` for ``rtsseg evaluate``."""
    import torch
    from rtsseg.seg.data import evenly_spaced
    from rtsseg.seg.plot import CAMVID_PALETTE, default_palette, plot_predictions
    from rtsseg.seg.probe import predict_masks
    from rtsseg.seg.train import Segmenter, save_segmenter

    backbone, init, seed, decoder = best
    segmenter = Segmenter(model, grid.trained[backbone, init, seed, decoder].cpu()).eval()
    val = setup.sets["val"]
    picks = evenly_spaced(len(val), n_figure_images)
    images = torch.stack([val[i][0] for i in picks])
    masks = torch.stack([val[i][1] for i in picks])
    with torch.no_grad():
        preds = predict_masks(segmenter, images, tuple(masks.shape[-2:]), device="cpu")
    palette = CAMVID_PALETTE if dataset == "camvid" else default_palette(setup.num_classes)
    h, w = masks.shape[-2:]
    fig = plot_predictions(images, masks, preds, setup.class_names, palette=palette, tile=width / (3 * w / h))
    frames = [val.indices[i] for i in picks]  # indices into the whole val split
    s = grid.scores
    miou = float(s[(s.backbone == backbone) & (s.init == init) & (s.decoder == decoder) & (s.seed == seed)].mIoU.iloc[0])
    path = save_segmenter(checkpoint, model, {"img_size": image_size}, segmenter.decoder,
                          {"dataset": dataset, "input_size": list(input_size), "class_names": setup.class_names,
                           "init": init, "seed": seed, "decoder_name": decoder, "val_mIoU": miou})
    # "3 · 28 · 53" and not "3, 28, 53": myst-nb would read the latter back as a tuple
    return Published(texts={"seg_pred_frames": (" · ".join(map(str, frames)), None)},
                     figures={"fig_seg_predictions": fig}), path


def cost_section(timing: list, finetune_rows=None) -> Published:
    """How many times each step ran, its mean and total wall-clock and CPU seconds; fine-tuning runs (wall
    time only, their ``train_s``) as "fine-tuning <arm>"."""
    import pandas as pd

    t = pd.DataFrame(timing)
    if finetune_rows is not None and len(finetune_rows):
        t = pd.concat([t, pd.DataFrame({"what": "fine-tuning " + finetune_rows.arm, "wall s": finetune_rows.train_s,
                                        "cpu s": float("nan")})], ignore_index=True)
    cost = t.groupby("what", sort=False)[["wall s", "cpu s"]].agg(["count", "mean", "sum"]).round(1)
    return Published(texts={"seg_wall_min": (t["wall s"].sum() / 60, ".1f")}, tables={"tbl_seg_cost": cost})
