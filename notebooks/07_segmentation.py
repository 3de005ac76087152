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
# * **control** — the MLP decoder widened to the parameter count of `attn_all` (±1 %, tested), without attention;
# * **oracle** — `attn_all` on attention built from the *labels* at the token grid (`rtsseg.seg.oracle`: each token
#   attends uniformly to the tokens of its class; head maps show fixed class groups), clean (`snr=inf`) and
#   degraded (blur + noise at the SNRs of the parameters), on the same frozen features: the ceiling of what a
#   decoder could gain from attention that locates the objects. A decoder that gains nothing here could not
#   answer the question.
#
# Honest tuning: the early-stopping epoch (and the learning rate, where a profile offers several) is chosen on a
# block held out of CamVid *train* (the last 20 % of each of its three video sequences: neighbouring frames are
# near-duplicates, so interleaved frames would leak); the tables report CamVid *val* {cite}`brostow2009camvid`,
# which no choice looked at. The val clip is part of one train drive (0016E5 frames 7959–8159, between train
# frames 7920 and 8190), so every train frame closer than {glue:text}`seg_min_gap` frames (5 s at 30 fps) to a val
# frame is dropped from fitting and tuning alike: {glue:text}`seg_n_dropped` frames here. mIoU: one confusion matrix over the split, void ignored, logits upsampled to the
# native labels. The question's answer is the paired difference `attn_all` − `control`
# ({numref}`fig-seg-differences`).
#
# **Class weighting.** At this input a thing (pole, sign, car, pedestrian, bicyclist) covers about one token,
# and an unweighted cross-entropy left every thing class at IoU 0 for every decoder. Every decoder here (the
# fine-tuned ones too) trains with SegNet's loss on CamVid {cite}`badrinarayanan2017segnet`: median frequency
# balancing, class weights computed from the fit images' labels (`rtsseg.seg.metrics.median_frequency_weights`;
# parameter `class_weighting`). The choice was made on the held-out block, never on val
# (`scripts/class_weighting_study.py`, its rows in `scripts/results/class_weighting_2026-12-03.json`): there it
# raised the things mIoU of every decoder and initialisation it was tried with.

# %% tags=["parameters"]
profile = "cpu"
data_root = None  # None: $RTSSEG_DATA, else ../shared/data
dataset = "camvid"  # camvid | cocostuff27 | cocostuff171 | cocostuff27-val2017 (val2017 only: the Colab size)
main_backbone = "vit_small64"  # the main backbone: every seed in `seeds`
# swin_small64 is left out of the cpu grid for the 2.5 h book budget (it costs as much as botnet_small, below);
# the gpu profiles and `-p backbones '[...]'` run it
backbones = ["vit_small64", "botnet_small"]
seeds = [0, 1, 2]  # seeds of the main backbone
other_seeds = [0]  # seeds of the other backbones
inits = None  # None: random / supervised / barlow twins / dino; e.g. ["random"]
# published weights as extra cells, "<checkpoint>/<backbone>" (rtsseg.models.published), each beside a random init
# of its backbone: dino/vit_s16, dino/vit_s8, dino/vit_s8_64, barlow twins/botnet50 (not resnet50: no attention).
# [] in the book (no network here)
published = []
published_dir = None  # a folder with the official files (dino_deitsmall8_pretrain.pth, resnet50.pth); None: download
image_size = 64  # the backbones' input size in pretraining
input_size = [96, 128]  # network input (h, w) for segmentation (CamVid's 3:4 aspect)
max_train = 96  # fit images (evenly spaced over train minus the held-out block); None: all
max_val = None  # None: the whole val split
holdout_fraction = 0.2
min_gap_frames = 150  # train frames this close (frames; 5 s at 30 fps) to a val frame are dropped, and counted
decoders = ["linear", "mlp", "control", "attn_maps", "attn_prop", "attn_gate", "attn_all"]
attention_loss_weights = [0.1]  # λ of the attention-supervision loss on attn_all; [] for none
lrs = [5e-3]  # several values: the one with the best held-out mIoU is kept per run
epochs = 8
patience = 3  # early stopping on the held-out block
batch_size = 16
label_stride = 4  # training loss on every 4th label row/column (evaluation: all pixels)
class_weighting = "median_frequency"  # "none" | "median_frequency" (SegNet's CamVid loss; chosen on the held-out block)
embed_dim = 64
fuse_dim = 64
propagation_steps = 1
oracle_snrs = [1e999, 20.0, 5.0]  # attn_all on oracle attention (labels) at these SNRs (1e999 is inf: clean); []: none
oracle_backbones = ["vit_small64"]  # backbones whose cells get the oracle rows (3 trainings per run each)
finetune_inits = ["random", "barlow twins"]  # main backbone's inits fine-tuned in both arms (all `seeds`); [] for none
unfreeze_blocks = 1  # fine-tuning trains the backbone's last blocks (the rest frozen) with the decoder
finetune_loss_weight = 0.1  # λ of the attention-supervision loss in the fine-tuning's "attention loss" arm
backbone_lr_scale = 0.1  # the unfrozen blocks' learning rate: lrs[0] x this
n_attention_frames = None  # CamVid val things frames scoring the attention (None: all)
amp = "auto"
n_figure_images = 4
# Cost of these defaults (one thread, measured on the shared 2-core machine at load ~2 with 12 epochs; the cost
# table below has this run's own): backbone outputs over 96 fit + 19 held-out + 101 val images take 5 / 7 / 11 s
# for vit / swin / botnet; one attn_all training (12 epochs, label_stride 4, one lr) takes 11 / 44 / 49 s, so
# ~7 / 29 / 33 s at 8 epochs. The grid: vit 3 seeds x 4 inits x 8 variants x ~7 s ~ 11 min, botnet 1 seed x 4 x
# 8 x ~33 s ~ 18 min, backbone outputs ~ 1 min: ~ 30 min on one thread, ~ 25 min on 2 cores. Fine-tuning
# (vit, 1 block, 8 epochs): ~35 s (no loss) / ~60 s (attention loss) per seed and init, ~ 5 min per init.

# %%
from functools import partial

from rtsseg.analysis.attention import excess_result  # chapter 5's object-specific score
from rtsseg.book import PAGE_WIDTH_IN, figure_style, glue_figure, glue_result, glue_table, rel
from rtsseg.config import data_root as resolve_data_root, default_device
from rtsseg.experiments import INITS, iter_models, load_backbone, model_runs, published_cells  # INITS: the 4 inits
from rtsseg.findings import save_findings
from rtsseg.profiles import run_dir
from rtsseg.report import RunRecord, notebook_params, save_results
from rtsseg.seg import chapter as ch
from rtsseg.seg.finetune import FinetuneConfig

params = notebook_params(globals(), "07_segmentation")
record = RunRecord("07_segmentation", params)
figure_style()
put = ch.publisher(glue_result, glue_table, glue_figure, partial(save_results, profile), display)
extra = published_cells(published, model_runs(backbones, main_backbone, seeds, other_seeds), inits or INITS)
setup, glued = ch.prepare(resolve_data_root(data_root), default_device(), INITS, extra_cells=extra, **params)
put(glued);

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
# a backbone x initialisation x seed without a trained run (e.g. DINO, trained on the main backbone only in the
# cpu profile) is skipped and listed here
missing = []
models = iter_models(profile, setup.runs, setup.inits, image_size, missing, setup.device, record, published,
                     published_dir, need_attention=True)
grid = ch.run_grid(models, setup, run_dir(profile, "segmentation", "cache"),
                   lambda *k: run_dir(profile, "segmentation", "runs", *k), missing, **params)
put(ch.grid_section(grid, setup, dataset));

# %% [markdown]
# ```{glue:figure} tbl_seg_ablation
# :name: tbl-seg-ablation
#
# {glue:text}`seg_dataset` val mIoU and things mIoU (mean IoU over pole, sign, car, pedestrian, bicyclist) (%)
# of each decoder on each frozen backbone and initialisation: mean [95 % Student-t interval] over the seeds,
# "(n=1)" a single seed; `| oracle snr=…` rows read the labels (a ceiling, not a result). `control` has the parameter count of
# `attn_all` without its attention inputs; `+sup` adds the attention-supervision loss; "–": no trained run of
# that initialisation for that backbone (listed above the table).
# ```
#
# ## The answer: attention-aware − control, paired
#
# Both decoders of a pair see the same cached backbone outputs and the same seed and have the same number of
# parameters: their difference is the attention's ({numref}`fig-seg-differences`, {numref}`tbl-seg-differences`).
# The cells (backbone × initialisation) differ in level and spread, so each gets its own t interval over its
# seeds ({numref}`tbl-seg-differences`); pooled, as the mean of the {glue:text}`seg_attn_minus_control_cells`
# cell means ({glue:text}`seg_attn_minus_control_n` pairs; bootstrap over seeds within cells), the attention-aware
# decoder with all three mechanisms scores {glue:text}`seg_attn_minus_control` mIoU points against its control:
# {glue:text}`seg_verdict`. With the clean oracle attention the same decoder scores
# {glue:text}`seg_oracle_minus_control` ({glue:text}`seg_oracle_verdict`): the room a backbone's attention could fill.
#
# **Three numbers per backbone** ({numref}`tbl-seg-three-numbers`): the oracle ceiling, the learned attention's
# gain, and where the gain sits between 0 and the ceiling (gain / ceiling; the seeds of a cell resampled
# together for both): {glue:text}`seg_three_numbers`.

# %%
answer = put(ch.answer_section(grid.scores, dataset, main_backbone, width=PAGE_WIDTH_IN))

# %% [markdown]
# ```{glue:figure} fig_seg_differences
# :name: fig-seg-differences
#
# mIoU of each attention-aware decoder minus the same-capacity control: one line per backbone × initialisation,
# one dot per seed (coloured by initialisation), the black mark the cell's mean and the bar its 95 % Student-t
# interval over its seeds (none for a single seed). No mean over all pairs is drawn: the pooled answer is the
# mean of cell means above. Right of the dashed line the attention helps.
# ```
#
# ```{glue:figure} tbl_seg_differences
# :name: tbl-seg-differences
#
# The same paired differences (points) per comparison, backbone and initialisation, for mIoU and things mIoU:
# mean [95 % Student-t interval] over the cell's seeds, its seed count and verdict.
# ```
#
# ```{glue:figure} tbl_seg_three_numbers
# :name: tbl-seg-three-numbers
#
# Per backbone, pooled over its initialisations (mean of cell means, bootstrap over seeds within cells): the
# oracle ceiling (`attn_all` on clean oracle attention − control, mIoU points), the learned attention's gain
# (`attn_all` − control, points) and the gain's share of the ceiling (a fraction: 0 none of it, 1 all of it),
# each with its verdict against 0; "–": the grid has no oracle rows for that backbone (share: or its ceiling is
# not above 0, where a ratio to it means nothing).
# ```
#
# ## Fine-tuned attention: does the loss move the attention itself?
#
# On a frozen backbone the attention-supervision loss can only re-weight the heads. Here
# {glue:text}`seg_ft_blocks` of the backbone train together with `attn_all` (`rtsseg.seg.finetune`), in two arms
# that differ only in the loss: cross-entropy alone, or plus λ = {glue:text}`seg_ft_weight` times the
# attention-supervision loss, from the same backbone, seeds, batches, steps and data, tuned as the grid
# (early-stopping epoch on the held-out block; val reported). Before and after, the attention is scored with
# chapter 5's object-specific excess AUROC (best head, cross-fitted) on the CamVid val things frames
# ({numref}`tbl-seg-finetune`, {numref}`tbl-seg-finetune-differences`). Pooled over the fine-tuned cells: {glue:text}`seg_ft_miou`;
# {glue:text}`seg_ft_excess`. Each arm's model is saved with its backbone, so `rtsseg evaluate` re-scores it.

# %%
ft_cfg = FinetuneConfig(unfreeze_blocks, "attn_all", finetune_loss_weight, epochs, lrs[0], backbone_lr_scale,
                        batch_size=batch_size, label_stride=label_stride, patience=patience, embed_dim=embed_dim,
                        fuse_dim=fuse_dim, k=propagation_steps, amp=amp, class_weighting=class_weighting)
ft_rows, ft_pairs, ft_missing = ch.finetune_cells(
    lambda b, i, s: load_backbone(profile, b, i, s, image_size, record=record),
    [(main_backbone, i) for i in finetune_inits] if dataset == "camvid" else [], seeds, setup,
    ch.attention_frames(resolve_data_root(data_root), image_size, n_attention_frames) if finetune_inits else None,
    excess_result, ft_cfg, run_dir(profile, "segmentation", "finetune"),
    {"dataset": dataset, "input_size": list(input_size), "class_names": setup.class_names}, {"img_size": image_size})
finetuned = put(ch.finetune_section(ft_rows, ft_pairs, ft_missing, dataset, unfreeze_blocks, finetune_loss_weight))
save_findings(profile, "07_segmentation", answer.findings + finetuned.findings);

# %% [markdown]
# ```{glue:figure} tbl_seg_finetune
# :name: tbl-seg-finetune
#
# Fine-tuned backbone + `attn_all` per initialisation and arm: {glue:text}`seg_dataset` val mIoU and things mIoU
# (%), and the attention's object-specific excess AUROC before and after fine-tuning; mean [95 % Student-t
# interval] over the seeds.
# ```
#
# ```{glue:figure} tbl_seg_finetune_differences
# :name: tbl-seg-finetune-differences
#
# The fine-tuning's paired differences per seed (mIoU in points, excess in AUROC): mean [95 % Student-t
# interval] over the seeds, their count and verdict against 0.
# ```
#
# ## Per-class IoU
#
# Where does a decoder gain or lose? {numref}`tbl-seg-per-class` splits the mIoU of the best backbone and
# initialisation, {glue:text}`seg_best_cell`, into its classes for the linear probe, the control and the
# attention-aware decoders.

# %%
per_class, best = ch.per_class_section(grid.scores, setup.class_names)
put(per_class);

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
model = load_backbone(profile, best[0], best[1], best[2], image_size, record=record)  # cpu: the figure is small
predictions, checkpoint = ch.predictions_section(model, grid, setup, best, run_dir(
    profile, "segmentation", "best", "segmenter.pt"), dataset, input_size, image_size, n_figure_images, PAGE_WIDTH_IN)
put(predictions)
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
put(ch.cost_section(grid.timing, ft_rows));

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
# {glue:text}`seg_attn_minus_control_n` paired runs in {glue:text}`seg_attn_minus_control_cells` cells (mean of
# cell means, bootstrap over seeds within cells): {glue:text}`seg_verdict`; on clean oracle attention,
# {glue:text}`seg_oracle_minus_control`. Per backbone: {glue:text}`seg_three_numbers`. Fine-tuning
# {glue:text}`seg_ft_blocks` with the attention loss: {glue:text}`seg_ft_miou`; {glue:text}`seg_ft_excess`. The best cell, {glue:text}`seg_best_decoder` on {glue:text}`seg_best_cell`, reaches
# {glue:text}`seg_best_miou` % mIoU, far below SegNet's 55.6 on CamVid test at full scale.
#
# ## Run record

# %%
record.finish()
