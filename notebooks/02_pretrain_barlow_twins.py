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
# # 2. Barlow Twins pretraining
#
# Barlow Twins {cite}`zbontar2021barlow` feeds two augmented views of each image through the backbone and a
# projector, standardises each embedding dimension over the batch (BatchNorm without affine), and pushes the
# cross-correlation matrix $C = z_1^\top z_2 / N$ towards the identity:
# $\mathcal{L} = \sum_i (1 - C_{ii})^2 + \lambda \sum_{i \neq j} C_{ij}^2$, with $\lambda = 0.0051$.
# Our implementation (`rtsseg.ssl`) follows the official code: global-batch statistics across processes,
# the two asymmetric augmentation pipelines (blur σ and kernel scaled to the image size), LARS with biases and
# norm weights excluded {cite}`you2017lars` for the convolutional network, and AdamW for the transformers, as
# DINO and MoCo v3 train ViTs (LARS barely moves parameters initialised near zero, such as the CLS token).
#
# The compute goes to fewer, longer runs: the main attention backbone with several seeds on all training
# images, the other backbones with one seed.
#
# Pretraining uses only the *images* of the Tiny-ImageNet subset. Labels enter only through the monitor: a
# weighted k-NN classifier (k = 20, T = 0.07, as in DINO {cite}`caron2021dino`) on a fixed bank of train
# embeddings, scored on Tiny-ImageNet val, once before training (epoch 0) and after each epoch.

# %% tags=["parameters"]
profile = "cpu"
data_root = None  # None: $RTSSEG_DATA, else ../shared/data
main_backbone = "vit_small64"  # the main attention backbone: every seed in `seeds`
backbones = ["vit_small64", "swin_small64", "botnet_small"]
seeds = [0, 1, 2]  # seeds of the main backbone
other_seeds = [0]  # seeds of the other backbones
image_size = 64
# Epochs per backbone (a backbone not listed trains `epochs`). Budget on 2 CPU cores (fp32: this VM has no AMX,
# so amp=auto keeps fp32), all 20,000 images, from benchmarks/bench_mfu.py (2 threads, batch 64): vit_small64
# 82 img/s ~ 4.1 min/epoch, swin_small64 60 img/s ~ 5.6 min, botnet_small 61 img/s ~ 5.4 min, plus ~20 s of
# k-NN monitor per epoch. Chapter: 3 seeds x 2 x 4.4 + 5.9 + 5.7 ~ 38 min. Self-supervision at this budget
# stays in its first epochs: the chapter measures how far it gets; the GPU edition carries the learned model.
epochs = 2
epochs_by_backbone = {"swin_small64": 1, "botnet_small": 1}
batch_size = 128
max_images_per_class = None  # None: all train images of the subset
# Optimizer per family (first key the backbone name starts with): AdamW for transformers, LARS for conv nets.
# Measured here on vit_small64: AdamW, batch 128, applied lr 1e-3, 2 epochs -> k-NN 3.05 %; LARS, batch 64,
# applied lr 0.05, 6 epochs -> 3.1 %: AdamW reaches it in a third of the epochs.
optimizer_by_family = {"vit": "adamw", "swin": "adamw", "botnet": "lars", "resnet": "lars"}
adamw_lr = 2e-3  # AdamW peak lr at batch 256, scaled linearly: 1e-3 applied at batch 128
adamw_weight_decay = 0.04
lr_weights = 0.2  # LARS peak lr of the weights at batch 256, scaled linearly
lr_biases = 0.0048
weight_decay = 1e-6  # LARS
projector_dims = [1024, 1024, 1024]
lambd = 0.0051
warmup_epochs = 0.5
knn_train_per_class = 20
knn_val_per_class = 10
num_threads = None  # None: torch's default

# %%
import torch

from rtsseg.config import data_root as resolve_data_root
from rtsseg.data.tinyimagenet import load_tensors, tinyimagenet_root
from rtsseg.experiments import cache_dir, family_value, model_runs, pretrain_dir
from rtsseg.findings import save_findings
from rtsseg.glue import PAGE_WIDTH_IN, figure_style, glue_figure, glue_result, glue_table
from rtsseg.report import RunRecord, config_from, notebook_params, save_results
from rtsseg.ssl import BarlowTwinsAugment, PretrainConfig, pretrain
from rtsseg.ssl import chapter as C
from rtsseg.ssl.plot import plot_augmented_pairs, plot_history

params = notebook_params(globals(), "02_pretrain_barlow_twins")
record = RunRecord("02_pretrain_barlow_twins", params)
figure_style()
root = resolve_data_root(data_root)
runs_of = model_runs(backbones, main_backbone, seeds, other_seeds)
opts = {b: family_value(optimizer_by_family, b, "optimizer_by_family") for b in backbones}
main_name = C.main_of(main_backbone, backbones)

# %% [markdown]
# ## The two augmentation pipelines
#
# View 1 is always blurred and never solarised; view 2 is blurred with p = 0.1 and solarised with p = 0.2
# ({numref}`fig-bt-views`). Both are computed on the whole batch at once (on the training device), not image
# by image. The pretraining pool is {glue:text}`bt_pool` images of {glue:text}`bt_classes` classes at
# {glue:text}`bt_image_size` px.

# %%
train = load_tensors(tinyimagenet_root(root), "train", max_per_class=max_images_per_class, cache_dir=cache_dir(),
                     progress=False)
for name, text in C.pool_texts(len(train.images), len(train.classes), image_size).items():
    glue_result(name, text)
picks = torch.randperm(len(train.images), generator=torch.Generator().manual_seed(seeds[0]))[:6]
glue_figure("fig_bt_views", plot_augmented_pairs(train.images[picks], BarlowTwinsAugment(image_size), seed=seeds[0],
                                                 width=PAGE_WIDTH_IN))

# %% [markdown]
# ```{glue:figure} fig_bt_views
# :name: fig-bt-views
#
# Six training images (top) and their two Barlow Twins views.
# ```
#
# ## Training runs
#
# One run per backbone and seed. A run resumes from its last checkpoint if interrupted, and is not repeated
# when already complete.

# %%
runs = {}
for backbone, seed in runs_of:
    # every PretrainConfig field named like a parameter takes the parameter's value
    cfg = config_from(
        PretrainConfig, params, backbone=backbone, seed=seed, epochs=C.epochs_of(backbone, epochs, epochs_by_backbone),
        optimizer=opts[backbone], data_root=str(root), cache_dir=str(cache_dir()),
        run_parent=str(pretrain_dir(profile, backbone, seed)),
    )
    runs[backbone, seed] = pretrain(cfg)
    record.trained("barlow twins", backbone, seed, runs[backbone, seed])  # chapters 5-7 analyse exactly this run
histories = C.read_histories(runs)
save_results(profile, "pretrain_history", C.history_table(histories))  # k-NN etc. per epoch, per run
C.show_run_folders(runs)  # whole folder names: chapters 5-7 load exactly these runs

# %% [markdown]
# ## Loss, collapse check and k-NN accuracy per epoch
#
# The loss is split into its invariance (on-diagonal) and redundancy-reduction (off-diagonal, ×λ) terms,
# measured on fixed augmented monitor batches. The embedding std is the mean per-dimension standard deviation
# of the L2-normalised backbone embeddings: a value near 0 would mean collapse. The k-NN monitor is a weighted
# k-NN classifier (k = 20) on a fixed bank of train embeddings, scored on val; epoch 0 is the random init.

# %%
glue_figure("fig_bt_history_main", plot_history(C.seed_histories(histories, main_name),
                                                title=f"{main_name} ({opts[main_name]})", width=PAGE_WIDTH_IN))
others = C.plot_other_backbones(histories, main_name, opts, width=PAGE_WIDTH_IN)
if others is None:  # nothing to draw: the figure slot says why
    glue_result("fig_bt_history_others", f"Only the main backbone, {main_name}, trained in this edition.")
else:
    glue_figure("fig_bt_history_others", others)

# %% [markdown]
# ```{glue:figure} fig_bt_history_main
# :name: fig-bt-history-main
#
# Barlow Twins training of the main backbone: monitor loss, its two terms, the embedding std and the k-NN
# top-1 on val, per epoch and seed (epoch 0: random init).
# ```
#
# ```{glue:figure} fig_bt_history_others
# :name: fig-bt-history-others
#
# The other backbones: monitor loss and k-NN top-1 on val per epoch (where only the main backbone trained, a
# sentence says so instead).
# ```

# %% [markdown]
# ## Cross-correlation matrix after training
#
# The top-left 64×64 block of $C$ on a monitor batch, first seed ({numref}`fig-bt-ccmatrix`): the diagonal
# should approach 1 and the rest 0.

# %%
glue_figure("fig_bt_ccmatrix", C.plot_ccmatrices(runs, histories, backbones, width=PAGE_WIDTH_IN))

# %% [markdown]
# ```{glue:figure} fig_bt_ccmatrix
# :name: fig-bt-ccmatrix
#
# Cross-correlation matrix $C$ (top-left 64×64 block) after the last epoch, first seed of each backbone.
# ```
#
# ## Results
#
# k-NN top-1 accuracy (%) on Tiny-ImageNet val before training (the random init, epoch 0) and after, mean ±
# standard deviation over seeds, their ratio per seed, and the wall time of one run ({numref}`tbl-bt-knn`).
# Chance is
# {glue:text}`bt_chance` %.

# %%
knn, monitors = C.bt_tables(histories, backbones, opts)
save_results(profile, "pretrain_knn", knn)
glue_table("tbl_bt_knn", knn)
glue_table("tbl_bt_monitors", monitors)
finding = C.knn_gain_finding([histories[k] for k in C.keys_of(histories, main_name)], "pretrain.bt_knn_minus_random",
                             "02_pretrain_barlow_twins",
                             f"Barlow Twins − random init ({main_name}), k-NN top-1 on val")
save_findings(profile, "02_pretrain_barlow_twins", [finding])
for name, text in C.bt_result_texts(histories, main_name, C.epochs_of(main_name, epochs, epochs_by_backbone),
                                    finding).items():
    glue_result(name, text)

# %% [markdown]
# ```{glue:figure} tbl_bt_knn
# :name: tbl-bt-knn
#
# k-NN top-1 on Tiny-ImageNet val before (random init) and after Barlow Twins pretraining, mean ± standard
# deviation over seeds, and the ratio after / before computed per seed.
# ```
#
# ```{glue:figure} tbl_bt_monitors
# :name: tbl-bt-monitors
#
# Monitors after the last epoch: Barlow Twins loss on the monitor batch, embedding std (collapse → 0) and the
# wall time of one run, mean ± standard deviation over seeds.
# ```
#
# ## Result
#
# On the main backbone, {glue:text}`bt_main_backbone`, {glue:text}`bt_main_epochs` epochs of Barlow Twins on
# {glue:text}`bt_pool` unlabelled images move the k-NN top-1 on val from {glue:text}`bt_knn_before` % at random
# init to {glue:text}`bt_knn_after` % (mean ± standard deviation over {glue:text}`bt_main_seeds` seeds; chance
# {glue:text}`bt_chance` %): {glue:text}`bt_knn_ratio` × the random init, in {glue:text}`bt_wall_min` minutes per
# run. Paired by seed (each seed's trained network against its own random init, a 95 % t interval over seeds):
# {glue:text}`bt_knn_minus_random`. Chapter 6 compares these features with the supervised and DINO ones on the
# same k-NN protocol.

# %%
record.finish()
