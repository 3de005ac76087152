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
# # 3. DINO pretraining
#
# DINO {cite}`caron2021dino` trains a student network to predict the output of a teacher network on other
# crops of the same image. The teacher is not trained: its weights are an exponential moving average of the
# student's (momentum 0.996 rising to 1 on a cosine). Both end in a head (3-layer MLP, bottleneck, L2
# normalisation, weight-normalised last layer of K prototypes); the teacher's output is *centred* (a running
# mean of its outputs is subtracted, momentum 0.9) and *sharpened* (temperature 0.04 vs 0.1 for the student),
# the two forces that keep it from collapsing to a uniform or a one-hot distribution. The teacher sees the 2
# global crops, the student those and N small local crops ("multi-crop"); the loss is the cross-entropy
# between teacher and student distributions over every pair of *different* crops.
#
# Our implementation (`rtsseg.ssl.dino`, `rtsseg.ssl.dino_train`) follows the official code (AdamW with lr and
# weight-decay schedules, per-parameter gradient clipping, last layer frozen at the start), on the same images,
# backbone and resolution as Barlow Twins (chapter 2), with two scalings for 64 px images and a 2.7 M-parameter
# backbone: K = 4096 prototypes instead of 65,536, local crops of 32 px instead of 96.
#
# **Budget.** A DINO step costs more than a Barlow Twins step (teacher forward, local crops). We compare the
# two methods at **equal training FLOPs** (counted with `torch.utils.flop_counter`, not timed): `epochs = None`
# below picks the number of DINO epochs whose FLOPs match Barlow Twins' `bt_epochs` on the same images.

# %% tags=["parameters"]
profile = "cpu"
data_root = None  # None: $RTSSEG_DATA, else ../shared/data
data = "tinyimagenet"  # "synthetic": class-coloured noise (tests)
backbones = ["vit_small64"]
seeds = [0, 1, 2]
image_size = 64
epochs = None  # None: equal FLOPs with Barlow Twins' bt_epochs (rounded, at least 1)
bt_epochs = 2  # the Barlow Twins budget of chapter 2 for this backbone (same profile: its epochs of vit_small64)
bt_projector_dims = [1024, 1024, 1024]
batch_size = 64
max_images_per_class = None  # None: all train images of the subset, as in chapter 2
n_local_crops = 4
out_dim = None  # None: 16 x next power of two of the backbone width (4096 for vit_small64)
lr = 5e-4  # at batch 256, scaled linearly
min_lr = 1e-6
warmup_epochs = 0.5
weight_decay = 0.04
weight_decay_end = 0.4
momentum_teacher = 0.996
clip_grad = 3.0
freeze_last_layer = 0.1  # epochs
warmup_teacher_temp = 0.04
teacher_temp = 0.04
warmup_teacher_temp_epochs = 0
knn_train_per_class = 20
knn_val_per_class = 10
synthetic_images = 256
num_threads = 0  # 0: torch's default

# %%
import math

import matplotlib.pyplot as plt
import pandas as pd
import torch

from rtsseg.book import figure_style, glue_figure, glue_result, glue_table, rel
from rtsseg.config import data_root as resolve_data_root
from rtsseg.experiments import cache_dir, dino_dir
from rtsseg.report import RunRecord, notebook_params, read_results, save_results
from rtsseg.ssl.dino_plot import plot_dino_history, summarize_dino
from rtsseg.ssl.dino_train import config_from_params, equal_flops_epochs, pretrain_dino, step_flops
from rtsseg.stats import mean_std

params = notebook_params(globals(), "03_pretrain_dino")
record = RunRecord("03_pretrain_dino", params)
figure_style()
root = resolve_data_root(data_root)
if num_threads:
    torch.set_num_threads(num_threads)

# %% [markdown]
# ## Cost of a training step: DINO vs Barlow Twins
#
# FLOPs per image of one training step (forward and backward; DINO adds the teacher's forward on the global
# crops), counted on the CPU in fp32. Matrix products and convolutions are counted; elementwise work (EMA,
# optimiser, augmentation) is not, for either method.

# %%
flops = {}
for backbone in backbones:
    bt = step_flops(backbone, "barlow_twins", image_size=image_size, projector_dims=tuple(bt_projector_dims))
    dino = step_flops(backbone, "dino", image_size=image_size, n_local_crops=n_local_crops, out_dim=out_dim)
    flops[backbone] = dict(bt=bt, dino=dino, epochs=epochs or max(
        1, round(equal_flops_epochs(bt_epochs, bt["flops_per_image"], dino["flops_per_image"]))))
flops_table = pd.DataFrame([
    {"backbone": b, "Barlow Twins GFLOP/image": f["bt"]["flops_per_image"] / 1e9,
     "DINO GFLOP/image": f["dino"]["flops_per_image"] / 1e9,
     "DINO / BT": f["dino"]["flops_per_image"] / f["bt"]["flops_per_image"],
     "BT epochs": bt_epochs, "DINO epochs": f["epochs"],
     "DINO / BT total FLOPs": f["epochs"] * f["dino"]["flops_per_image"] / (bt_epochs * f["bt"]["flops_per_image"])}
    for b, f in flops.items()
]).set_index("backbone").round(3)
save_results(profile, "dino_flops", flops_table)
glue_table("tbl_dino_flops", flops_table)

# %% [markdown]
# ```{glue:figure} tbl_dino_flops
# :name: tbl-dino-flops
#
# FLOPs per image of one training step of each method, and the DINO epochs whose total FLOPs match Barlow
# Twins' epochs of chapter 2.
# ```

# %% [markdown]
# ## Training runs
#
# One run per backbone and seed; a run resumes from its last checkpoint if interrupted and is not repeated
# when complete (its folder is named by its configuration and code). The k-NN monitor (k = 20, T = 0.07)
# scores the *teacher's* backbone, the network DINO evaluates and the one handed to the next chapters.

# %%
runs, histories = {}, {}
for backbone in backbones:
    for seed in seeds:
        cfg = config_from_params(
            params, backbone=backbone, seed=seed, epochs=flops[backbone]["epochs"], data_root=str(root),
            cache_dir=str(cache_dir()), run_parent=str(dino_dir(profile, backbone, seed)),
            num_threads=num_threads or None,
        )
        runs[backbone, seed] = pretrain_dino(cfg)
        record.trained("dino", backbone, seed, runs[backbone, seed])  # chapters 5-7 analyse exactly this run
        histories[backbone, seed] = pd.read_csv(runs[backbone, seed] / "history.csv")
pd.DataFrame({"run folder": {f"{b} seed {s}": rel(run) for (b, s), run in runs.items()}})

# %% [markdown]
# ## k-NN accuracy, loss and collapse monitors per epoch
#
# Teacher entropy near log K with KL near 0 would be the uniform collapse (centering winning over
# sharpening), entropy near 0 with KL near 0 the one-hot collapse; a healthy run keeps the entropy between
# the two and a positive KL.

# %%
for i, backbone in enumerate(backbones):
    k_out = flops[backbone]["dino"]["out_dim"]
    fig = plot_dino_history({s: histories[backbone, s] for s in seeds}, out_dim=k_out, title=backbone)
    if i == 0:
        glue_figure("fig_dino_history", fig)
    else:
        plt.show()

# %% [markdown]
# ```{glue:figure} fig_dino_history
# :name: fig-dino-history
#
# DINO training of the first backbone, per epoch and seed: the teacher backbone's k-NN top-1 on val (epoch 0:
# random init), the loss on fixed monitor crops, the teacher entropy (dashed: log K, the uniform collapse) and
# the KL between teacher and student. Further backbones, if any, follow below.
# ```
#
# ## Results

# %%
rows, summaries = [], {}
for backbone in backbones:
    k_out = flops[backbone]["dino"]["out_dim"]
    s = summaries[backbone] = summarize_dino({seed: histories[backbone, seed] for seed in seeds}, k_out)
    rows.append({
        "backbone": backbone, "epochs": s["epochs"],
        "k-NN before (%)": mean_std([100 * histories[backbone, seed].iloc[0]["knn_acc"] for seed in seeds]),
        "k-NN after (%)": mean_std([100 * histories[backbone, seed].iloc[-1]["knn_acc"] for seed in seeds]),
        "teacher entropy (nats)": f"{s['teacher_entropy'][0]:.2f} (log K = {s['log_k']:.2f})",
        "KL (nats)": f"{s['kl'][0]:.3f}", "collapse": ", ".join(sorted(set(s["collapse"]))),
    })
results = pd.DataFrame(rows).set_index("backbone")
save_results(profile, "dino_knn", results)
glue_table("tbl_dino_knn", results)

# %% [markdown]
# ```{glue:figure} tbl_dino_knn
# :name: tbl-dino-knn
#
# DINO after the last epoch: the teacher backbone's k-NN top-1 on val before (random init) and after training,
# mean ± std over seeds, and the collapse monitors (teacher entropy against log K, KL teacher–student).
# ```

# %%
backbone = backbones[0]
s, f = summaries[backbone], flops[backbone]
hs = [histories[backbone, seed] for seed in seeds]
glue_result("dino_backbone", backbone)
glue_result("dino_epochs", s["epochs"], "d")
glue_result("dino_bt_epochs", bt_epochs, "d")
glue_result("dino_n_local", n_local_crops, "d")
glue_result("dino_step_ratio", f["dino"]["flops_per_image"] / f["bt"]["flops_per_image"], ".2f")
glue_result("dino_flops_ratio", f["epochs"] * f["dino"]["flops_per_image"] / (bt_epochs * f["bt"]["flops_per_image"]),
            ".2f")
glue_result("dino_knn_before", mean_std([100 * h.iloc[0]["knn_acc"] for h in hs]))
glue_result("dino_knn_after", mean_std([100 * h.iloc[-1]["knn_acc"] for h in hs]))
glue_result("dino_knn_ratio", mean_std([h.iloc[-1]["knn_acc"] / h.iloc[0]["knn_acc"] for h in hs], decimals=2))
glue_result("dino_n_seeds", len(seeds), "d")
glue_result("dino_entropy", f"{s['teacher_entropy'][0]:.2f}")
glue_result("dino_log_k", f"{s['log_k']:.2f}")
glue_result("dino_collapse", ", ".join(sorted(set(s["collapse"]))))
bt_table = read_results(profile).get("pretrain_knn")
glue_result("dino_bt_knn_after", str(bt_table.loc[backbone, "k-NN after (%)"])
            if bt_table is not None and backbone in bt_table.index else "not run in this profile")

# %% [markdown]
# ## Result
#
# On {glue:text}`dino_backbone`, {glue:text}`dino_epochs` DINO epochs with {glue:text}`dino_n_local` local crops
# cost {glue:text}`dino_flops_ratio` × the FLOPs of {glue:text}`dino_bt_epochs` Barlow Twins epochs (a DINO step
# is {glue:text}`dino_step_ratio` × a Barlow Twins step). They move the teacher's k-NN top-1 on val from
# {glue:text}`dino_knn_before` % at random init to {glue:text}`dino_knn_after` % (mean ± std over
# {glue:text}`dino_n_seeds` seeds), {glue:text}`dino_knn_ratio` × the random init; Barlow Twins reached
# {glue:text}`dino_bt_knn_after` % on the same images and budget (chapter 2). The teacher entropy ended at
# {glue:text}`dino_entropy` nats of log K = {glue:text}`dino_log_k` ({glue:text}`dino_collapse`).

# %%
record.finish()
