# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 7. Segmentation: can the backbone's attention drive a better decoder?
#
# Every backbone is frozen; its multi-stage features, its last layer's token-to-token attention and its per-head
# maps are computed once per backbone × initialisation × seed and cached (`rtsseg.seg.affinity`,
# `rtsseg.seg.train`). On these the ablation grid trains small decoders (`rtsseg.seg.decoders`):
#
# * **linear** — the linear probe on the last stage (affine-free BatchNorm + 1×1 conv);
# * **mlp** — SegFormer's all-MLP decoder over the stages {cite}`xie2021segformer` (for the ViT: intermediate blocks);
# * **attention-aware** — the MLP decoder plus (a) the per-head maps as extra channels (`attn_maps`),
#   (b) logits propagated along the head-mixed attention affinity, $Z' = Z + \sigma(\gamma)\,\mathrm{up}(\bar A^k P - P)$
#   with $\bar A = \sum_h \mathrm{softmax}(\beta)_h A_h$ and $P$ the logits pooled on the attention grid (`attn_prop`),
#   (c) attention-gated fusion, $E' = 2\sigma(W_g M + b_g) \odot E$ (`attn_gate`), and all three (`attn_all`);
#   optionally with the attention-supervision loss on $\bar A$ (each pure query token's attention supervised
#   with its class's mask), weight λ (`attn_all+sup`); with a frozen backbone the $A_h$ are fixed, so this loss
#   can only re-weight the heads (β): a small lever, and the rows show whether it moves anything;
# * **control** — the MLP decoder widened to the parameter count of `attn_all` (±1 %, tested), without attention.
#
# Honest tuning: the early-stopping epoch (and the learning rate, where a profile offers several) is chosen on a
# block held out of CamVid *train* (the last 20 % of each of its three video sequences: neighbouring frames are
# near-duplicates, so interleaved frames would leak); the tables report CamVid *val* {cite}`brostow2009camvid`,
# which no choice looked at. mIoU: one confusion matrix over the split, void ignored, logits upsampled to the
# native labels. The question's answer is the paired difference `attn_all` − `control`
# ({numref}`fig-seg-differences`).

# %% tags=["parameters"]
profile = "cpu"
data_root = None  # None: $RTSSEG_DATA, else ../shared/data
dataset = "camvid"  # camvid | cocostuff27 | cocostuff171
main_backbone = "vit_small64"  # the main backbone: every seed in `seeds`
# swin_small64 is left out of the cpu grid for the 2.5 h book budget (it costs as much as botnet_small, below);
# the gpu profiles and `-p backbones '[...]'` run it
backbones = ["vit_small64", "botnet_small"]
seeds = [0, 1, 2]  # seeds of the main backbone
other_seeds = [0]  # seeds of the other backbones
inits = None  # None: random / supervised / barlow twins / dino; e.g. ["random"]
image_size = 64  # the backbones' input size in pretraining
input_size = [96, 128]  # network input (h, w) for segmentation (CamVid's 3:4 aspect)
max_train = 96  # fit images (evenly spaced over train minus the held-out block); None: all
max_val = None  # None: the whole val split
holdout_fraction = 0.2
decoders = ["linear", "mlp", "control", "attn_maps", "attn_prop", "attn_gate", "attn_all"]
attention_loss_weights = [0.1]  # λ of the attention-supervision loss on attn_all; [] for none
lrs = [5e-3]  # several values: the one with the best held-out mIoU is kept per run
epochs = 8
patience = 3  # early stopping on the held-out block
batch_size = 16
label_stride = 4  # training loss on every 4th label row/column (evaluation: all pixels)
embed_dim = 64
fuse_dim = 64
propagation_steps = 1
amp = "auto"
n_figure_images = 4
# Cost of these defaults (one thread, measured on the shared 2-core machine at load ~2 with 12 epochs; the cost
# table below has this run's own): backbone outputs over 96 fit + 19 held-out + 101 val images take 5 / 7 / 11 s
# for vit / swin / botnet; one attn_all training (12 epochs, label_stride 4, one lr) takes 11 / 44 / 49 s, so
# ~7 / 29 / 33 s at 8 epochs. The grid: vit 3 seeds x 4 inits x 8 variants x ~7 s ~ 11 min, botnet 1 seed x 4 x
# 8 x ~33 s ~ 18 min, backbone outputs ~ 1 min: ~ 30 min on one thread, ~ 25 min on 2 cores.

# %%
import time

import matplotlib.pyplot as plt
import pandas as pd
import torch

from rtsseg.book import PAGE_WIDTH_IN, figure_style, glue_figure, glue_result, glue_table, rel
from rtsseg.config import data_root as resolve_data_root, default_device
from rtsseg.experiments import INITS, iter_models, load_backbone  # random / supervised / barlow twins / dino
from rtsseg.profiles import run_dir
from rtsseg.report import RunRecord, notebook_params, save_results
from rtsseg.seg.data import evenly_spaced
from rtsseg.seg.experiment import (
    backbone_stores,
    fit_decoder,
    format_ci,
    paired_differences,
    split_datasets,
    t_interval,
)
from rtsseg.seg.plot import CAMVID_PALETTE, default_palette, plot_paired_differences, plot_predictions
from rtsseg.seg.probe import predict_masks
from rtsseg.seg.train import Segmenter, save_segmenter

params = notebook_params(globals(), "07_segmentation")
record = RunRecord("07_segmentation", params)
figure_style()
root = resolve_data_root(data_root)
device = default_device()
inits = list(INITS) if inits is None else list(inits)
sets, class_names, preprocessing = split_datasets(dataset, root, input_size, max_train, max_val, holdout_fraction)
num_classes = len(class_names)
cache_root = run_dir(profile, "segmentation", "cache")
variants = [(d, 0.0) for d in decoders] + [("attn_all", w) for w in attention_loss_weights]
runs = [(b, s) for b in backbones for s in (seeds if b == main_backbone else other_seeds)]
dataset_label = {"camvid": "CamVid", "cocostuff27": "COCO-Stuff-27", "cocostuff171": "COCO-Stuff-171"}[dataset]
glue_result("seg_dataset", dataset_label)
glue_result("seg_n_fit", len(sets["fit"]), ",d")
glue_result("seg_n_holdout", len(sets["holdout"]), ",d")
glue_result("seg_n_val", len(sets["val"]), ",d")
glue_result("seg_n_classes", num_classes, "d")
glue_result("seg_input_size", "×".join(map(str, input_size)))
glue_result("seg_n_variants", len(variants), "d")
glue_result("seg_n_runs", len(runs) * len(inits), "d")
glue_result("seg_main_backbone", main_backbone)
glue_result("seg_seeds_main", f"{len(seeds)} seed" + "s" * (len(seeds) > 1))
glue_result("seg_seeds_other", f"{len(other_seeds)} seed" + "s" * (len(other_seeds) > 1))

# %% [markdown]
# ## The ablation grid
#
# The decoders are fitted on {glue:text}`seg_n_fit` {glue:text}`seg_dataset` training images, tuned on
# {glue:text}`seg_n_holdout` held-out ones and scored on {glue:text}`seg_n_val` validation images
# ({glue:text}`seg_n_classes` classes, network input {glue:text}`seg_input_size` px). Each of the
# {glue:text}`seg_n_variants` decoder variants trains on each of the {glue:text}`seg_n_runs` frozen backbones
# (backbone × initialisation × seed: {glue:text}`seg_main_backbone` with {glue:text}`seg_seeds_main`, the other
# backbones with {glue:text}`seg_seeds_other`): {numref}`tbl-seg-ablation`.

# %%
rows, trained, timing, missing = [], {}, [], []
# a backbone x initialisation x seed without a trained run (e.g. DINO, trained on the main backbone only in the
# cpu profile) is skipped and listed below the loop
for backbone_name, init, seed, model in iter_models(profile, runs, inits, image_size, missing, device, record):
    t0, c0 = time.perf_counter(), time.process_time()
    stores = backbone_stores(model, sets, preprocessing, cache_root, batch_size, device)
    timing.append({"what": "backbone outputs", "wall s": time.perf_counter() - t0, "cpu s": time.process_time() - c0})
    parent = run_dir(profile, "segmentation", "runs", backbone_name, init.replace(" ", "_"), f"seed{seed}")
    for name, weight in variants:
        label = name if weight == 0 else f"{name}+sup"
        row, dec = fit_decoder(name, stores, num_classes, seed, lrs, epochs, batch_size, weight, label_stride,
                               patience, parent, embed_dim, fuse_dim, propagation_steps, amp, device)
        row.update(backbone=backbone_name, init=init, decoder=label)
        rows.append(row)
        trained[backbone_name, init, seed, label] = dec
        timing.append({"what": f"decoder {label}", "wall s": row["train_s"], "cpu s": row["train_cpu_s"]})
if missing:
    display(pd.DataFrame(missing, columns=["backbone", "init", "seed", "why skipped"]))
scores = pd.DataFrame(rows)


def by_init(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns in the order of `inits`; "–" where a backbone has no trained run of that initialisation."""
    return frame.reindex(columns=[i for i in inits if i in frame.columns]).fillna("–")


for c, name in enumerate(class_names):
    scores[f"IoU {name}"] = scores["iou"].map(lambda v: v[c])
labels = list(dict.fromkeys(scores.decoder))
# one row per (backbone, decoder), one column per initialisation: at most 4-5 columns, fits the page
table = (scores.groupby(["backbone", "decoder", "init"], sort=False)["mIoU"]
         .apply(lambda v: format_ci(v.tolist(), show_n=False)).unstack("init").pipe(by_init))
table.columns.name = "initialisation"
# the findings chapter gets the decoders that carry the answer (the whole grid stays on this page)
key_decoders = [d for d in ("linear", "control", "attn_all", "attn_all+sup") if d in labels]
save_results(profile, f"segmentation_{dataset}", table[table.index.get_level_values("decoder").isin(key_decoders)])
glue_table("tbl_seg_ablation", table)

# %% [markdown]
# ```{glue:figure} tbl_seg_ablation
# :name: tbl-seg-ablation
#
# {glue:text}`seg_dataset` val mIoU (%) of each decoder on each frozen backbone and initialisation: mean
# [95 % Student-t interval] over the seeds, "(n=1)" a single seed. `control` has the parameter count of
# `attn_all` without its attention inputs; `+sup` adds the attention-supervision loss; "–": no trained run of
# that initialisation for that backbone (listed above the table).
# ```
#
# ## The answer: attention-aware − control, paired
#
# Both decoders of a pair see the same cached backbone outputs and the same seed and have the same number of
# parameters: their difference is the attention's ({numref}`fig-seg-differences`, {numref}`tbl-seg-differences`).
# Pooled over all {glue:text}`seg_attn_minus_control_n` backbone × initialisation × seed pairs, the
# attention-aware decoder with all three mechanisms scores {glue:text}`seg_attn_minus_control` mIoU points
# against its control (mean [95 % Student-t interval]; on {glue:text}`seg_main_backbone` alone:
# {glue:text}`seg_attn_minus_control_main`).

# %%
attention_labels = [d for d in labels if d.startswith("attn")]
pairs = pd.concat([paired_differences(scores, label, "control").assign(comparison=f"{label} − control")
                   for label in attention_labels]) if "control" in labels and attention_labels else pd.DataFrame()
if len(pairs):
    differences = (pairs.groupby(["backbone", "comparison", "init"], sort=False)["difference"]
                   .apply(lambda d: format_ci(d.tolist(), show_n=False)).unstack("init").pipe(by_init))
    differences.columns.name = "initialisation"
    headline_rows = differences.index.get_level_values("comparison") == "attn_all − control"
    save_results(profile, f"segmentation_{dataset}_attn_minus_control", differences[headline_rows])
    glue_table("tbl_seg_differences", differences)
    fig = plot_paired_differences(pairs, width=PAGE_WIDTH_IN, legend_title="initialisation")
    glue_figure("fig_seg_differences", fig)
else:
    glue_table("tbl_seg_differences", pd.DataFrame({"note": ["the grid has no control or no attention decoder"]}))
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH_IN, 1.0))
    ax.text(0.5, 0.5, "no attention-aware decoder and control in this run", ha="center", va="center")
    ax.set_axis_off()
    glue_figure("fig_seg_differences", fig)


def interval_text(values: list[float]) -> str:
    """'+m [+lo, +hi]' in points (values are fractions); a single pair has no interval."""
    m, lo, hi = t_interval([100 * v for v in values])
    return f"{m:+.1f} (one pair, no interval)" if len(values) == 1 else f"{m:+.1f} [{lo:+.1f}, {hi:+.1f}]"


headline = pairs[pairs.comparison == "attn_all − control"] if len(pairs) else pairs
if len(headline):
    m, lo, hi = t_interval((100 * headline.difference).tolist())
    glue_result("seg_attn_minus_control", interval_text(headline.difference.tolist()))
    main = headline[headline.backbone == main_backbone]
    glue_result("seg_attn_minus_control_main", interval_text(main.difference.tolist()) if len(main) else "not run")
    verdict = ("no measurable difference (the interval contains 0)" if len(headline) == 1 or lo <= 0 <= hi
               else "a gain from the attention" if lo > 0 else "a loss from the attention")
else:
    glue_result("seg_attn_minus_control", "not computed (attn_all or control missing)")
    glue_result("seg_attn_minus_control_main", "not computed")
    verdict = "no answer: the grid lacks attn_all or control"
glue_result("seg_attn_minus_control_n", len(headline), "d")
glue_result("seg_verdict", verdict)

# %% [markdown]
# ```{glue:figure} fig_seg_differences
# :name: fig-seg-differences
#
# mIoU of each attention-aware decoder minus the same-capacity control, one dot per backbone × seed, coloured
# by initialisation; black: the mean over all pairs with its 95 % Student-t interval. Right of the dashed line
# the attention helps.
# ```
#
# ```{glue:figure} tbl_seg_differences
# :name: tbl-seg-differences
#
# The same paired differences (points) per backbone and initialisation: mean [95 % interval] over seeds.
# ```
#
# ## Per-class IoU
#
# Where does a decoder gain or lose? {numref}`tbl-seg-per-class` splits the mIoU of the best backbone and
# initialisation, {glue:text}`seg_best_cell`, into its classes for the linear probe, the control and the
# attention-aware decoders.

# %%
cell_means = scores.groupby(["backbone", "init", "decoder"], sort=False)["mIoU"].mean()
best_backbone, best_init, best_decoder = cell_means.idxmax()
best_rows = scores[(scores.backbone == best_backbone) & (scores.init == best_init) & (scores.decoder == best_decoder)]
glue_result("seg_best_cell", f"{best_backbone} / {best_init}")
glue_result("seg_best_decoder", best_decoder)
glue_result("seg_best_miou", format_ci(best_rows.mIoU.tolist(), show_n=False).replace(" (n=1)", ""))
shown = [d for d in dict.fromkeys(["linear", "control", "attn_all", "attn_all+sup", best_decoder]) if d in labels][:5]
cell = scores[(scores.backbone == best_backbone) & (scores.init == best_init)]
# classes as rows, decoders as columns: 11 (or 27) rows of at most 5 numbers
per_class = pd.DataFrame({d: (cell[cell.decoder == d][[f"IoU {c}" for c in class_names]].mean() * 100).round(1).values
                          for d in shown}, index=pd.Index(class_names, name="class"))
per_class.columns.name = "decoder"
glue_table("tbl_seg_per_class", per_class)

# %% [markdown]
# ```{glue:figure} tbl_seg_per_class
# :name: tbl-seg-per-class
#
# Per-class val IoU (%) on {glue:text}`seg_best_cell`, mean over its seeds, for the linear probe, the control,
# the attention-aware decoder and the best decoder of the grid ({glue:text}`seg_best_decoder`).
# ```
#
# ## Predictions on varied val frames
#
# Frames spread evenly over the val split (never neighbours), predicted by the best model's first seed, beside
# the ground truth ({numref}`fig-seg-predictions`). The model is saved with its backbone
# ({glue:text}`seg_checkpoint`), so `rtsseg evaluate --checkpoint <path> --data <CamVid folder> --split val`
# re-scores it on any folder in the CamVid layout.

# %%
seed0 = int(best_rows.seed.min())
model = load_backbone(profile, best_backbone, best_init, seed0, image_size, record=record)  # cpu: the figure is small
segmenter = Segmenter(model, trained[best_backbone, best_init, seed0, best_decoder].cpu()).eval()
val_set = sets["val"]
picks = evenly_spaced(len(val_set), n_figure_images)
images = torch.stack([val_set[i][0] for i in picks])
masks = torch.stack([val_set[i][1] for i in picks])
with torch.no_grad():
    preds = predict_masks(segmenter, images, tuple(masks.shape[-2:]), device="cpu")
palette = CAMVID_PALETTE if dataset == "camvid" else default_palette(num_classes)
h, w = masks.shape[-2:]
fig = plot_predictions(images, masks, preds, class_names, palette=palette, tile=PAGE_WIDTH_IN / (3 * w / h))
glue_figure("fig_seg_predictions", fig)
frames = [val_set.indices[i] for i in picks]  # indices into the whole val split
# "3 · 28 · 53" and not "3, 28, 53": myst-nb would read the latter back as a tuple
glue_result("seg_pred_frames", " · ".join(map(str, frames)))
checkpoint = save_segmenter(
    run_dir(profile, "segmentation", "best", "segmenter.pt"), model, {"img_size": image_size}, segmenter.decoder,
    {"dataset": dataset, "input_size": list(input_size), "class_names": class_names, "init": best_init,
     "seed": seed0, "decoder_name": best_decoder, "val_mIoU": float(best_rows[best_rows.seed == seed0].mIoU.iloc[0])})
glue_result("seg_checkpoint", rel(checkpoint))

# %% [markdown]
# ```{glue:figure} fig_seg_predictions
# :name: fig-seg-predictions
#
# {glue:text}`seg_dataset` val frames {glue:text}`seg_pred_frames`: image, ground truth (void black) and the
# prediction of {glue:text}`seg_best_decoder` on {glue:text}`seg_best_cell`.
# ```
#
# ## Anchor and cost
#
# SegNet {cite}`badrinarayanan2017segnet`, a VGG-16 encoder–decoder trained end to end on the 367 CamVid train
# images at 360×480, reaches 55.6 mIoU (65.2 class-average accuracy) on the 233 CamVid *test* images. Our numbers
# are on *val*, with frozen backbones of 0.6–2.7 M parameters pretrained at 64 px on Tiny-ImageNet and a
# {glue:text}`seg_input_size` input: the anchor says how far a full-scale, fully supervised model gets, not what
# this study can reach. The grid took {glue:text}`seg_wall_min` minutes ({numref}`tbl-seg-cost`); the backbone
# outputs are cached on disk, so a rerun skips them.

# %%
cost = (pd.DataFrame(timing).groupby("what", sort=False)[["wall s", "cpu s"]].agg(["count", "mean", "sum"])
        .round(1))
glue_table("tbl_seg_cost", cost)
glue_result("seg_wall_min", pd.DataFrame(timing)["wall s"].sum() / 60, ".1f")

# %% [markdown]
# ```{glue:figure} tbl_seg_cost
# :name: tbl-seg-cost
#
# Cost of the grid: how many times each step ran, its mean and total wall-clock and CPU seconds (CPU time
# exceeds wall time when several threads work).
# ```
#
# ## Result
#
# On {glue:text}`seg_dataset` val, the attention-aware decoder (per-head maps, attention propagation and gated
# fusion together) minus its same-capacity control is {glue:text}`seg_attn_minus_control` mIoU points over
# {glue:text}`seg_attn_minus_control_n` paired backbone × initialisation × seed runs (95 % Student-t interval):
# {glue:text}`seg_verdict`. The best cell, {glue:text}`seg_best_decoder` on {glue:text}`seg_best_cell`, reaches
# {glue:text}`seg_best_miou` % mIoU, far below SegNet's 55.6 on CamVid test at full scale.
#
# ## Run record

# %%
record.finish()
