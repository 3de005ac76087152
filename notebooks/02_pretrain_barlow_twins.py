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
# LARS with biases and norm weights excluded {cite}`you2017lars`, the two asymmetric augmentation pipelines.
#
# Pretraining uses only the *images* of the Tiny-ImageNet subset. Labels enter only through the monitor: a
# weighted k-NN classifier (k = 20, T = 0.07, as in DINO {cite}`caron2021dino`) on a fixed bank of train
# embeddings, scored on Tiny-ImageNet val, once before training (epoch 0) and after each epoch.

# %% tags=["parameters"]
profile = "cpu"
data_root = None  # None: $RTSSEG_DATA, else ../shared/data
backbones = ["vit_small64", "swin_small64", "botnet_small"]
seeds = [0, 1]
image_size = 64
epochs = 2
batch_size = 64
max_images_per_class = 40  # None: all train images of the subset
projector_dims = [1024, 1024, 1024]
lambd = 0.0051
lr_weights = 0.2
lr_biases = 0.0048
weight_decay = 1e-6
warmup_epochs = 0.5
knn_train_per_class = 20
knn_val_per_class = 10
num_threads = 0  # 0: torch's default

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from rtsseg.config import data_root as resolve_data_root
from rtsseg.data.tinyimagenet import load_tensors, tinyimagenet_root
from rtsseg.experiments import cache_dir, pretrain_dir
from rtsseg.report import RunRecord, notebook_params, save_results
from rtsseg.ssl import BarlowTwinsAugment, PretrainConfig, pretrain
from rtsseg.ssl.plot import plot_augmented_pairs, plot_ccmatrix, plot_history
from rtsseg.stats import mean_std

params = notebook_params(globals(), "02_pretrain_barlow_twins")
record = RunRecord("02_pretrain_barlow_twins", params)
root = resolve_data_root(data_root)

# %% [markdown]
# ## The two augmentation pipelines
#
# View 1 is always blurred and never solarised; view 2 is blurred with p = 0.1 and solarised with p = 0.2.
# Both are computed on the whole batch at once (on the training device), not image by image.

# %%
train = load_tensors(tinyimagenet_root(root), "train", max_per_class=max_images_per_class, cache_dir=cache_dir())
print(f"pretraining pool: {len(train.images)} images of {len(train.classes)} classes, {image_size} px")
g = torch.Generator().manual_seed(seeds[0])
picks = torch.randperm(len(train.images), generator=g)[:6]
plot_augmented_pairs(train.images[picks], BarlowTwinsAugment(image_size), seed=seeds[0]);

# %% [markdown]
# ## Training runs
#
# One run per backbone and seed. A run resumes from its last checkpoint if interrupted, and is not repeated
# when already complete.

# %%
runs = {}
for backbone in backbones:
    for seed in seeds:
        cfg = PretrainConfig(
            backbone=backbone, data_root=str(root), cache_dir=str(cache_dir()), image_size=image_size,
            epochs=epochs, batch_size=batch_size, max_images_per_class=max_images_per_class,
            projector_dims=tuple(projector_dims), lambd=lambd, lr_weights=lr_weights, lr_biases=lr_biases,
            weight_decay=weight_decay, warmup_epochs=warmup_epochs, knn_train_per_class=knn_train_per_class,
            knn_val_per_class=knn_val_per_class, seed=seed, run_parent=str(pretrain_dir(profile, backbone, seed)),
            num_threads=num_threads or None,
        )
        t0 = time.time()
        runs[backbone, seed] = pretrain(cfg)
        print(f"{backbone} seed {seed}: {time.time() - t0:.0f} s this call -> {runs[backbone, seed]}")

histories = {key: pd.read_csv(run / "history.csv") for key, run in runs.items()}

# %% [markdown]
# ## Loss, collapse check and k-NN accuracy per epoch
#
# The loss is split into its invariance (on-diagonal) and redundancy-reduction (off-diagonal, ×λ) terms,
# measured on fixed augmented monitor batches. `emb_std` is the mean per-dimension standard deviation of the
# L2-normalised backbone embeddings: a value near 0 would mean collapse.

# %%
for backbone in backbones:
    plot_history({seed: histories[backbone, seed] for seed in seeds}, title=backbone);

# %% [markdown]
# ## Cross-correlation matrix after training
#
# The top-left 64×64 block of $C$ on a monitor batch, first seed: the diagonal should approach 1 and the rest 0.

# %%
fig, axes = plt.subplots(1, len(backbones), figsize=(4.2 * len(backbones), 3.8))
for ax, backbone in zip(np.atleast_1d(axes), backbones):
    last = int(histories[backbone, seeds[0]]["epoch"].max())
    c = torch.load(runs[backbone, seeds[0]] / f"ccmatrix_e{last}.pt", weights_only=True)
    plot_ccmatrix(c, ax=ax, title=f"{backbone}, epoch {last}")
plt.tight_layout()

# %% [markdown]
# ## Results
#
# k-NN top-1 accuracy (%) on Tiny-ImageNet val before training (random init) and after, mean ± std over seeds,
# with the wall time of each run. Chance is 1/{number of classes}.

# %%
rows = []
for backbone in backbones:
    first = [histories[backbone, s].iloc[0] for s in seeds]
    last = [histories[backbone, s].iloc[-1] for s in seeds]
    rows.append(
        {
            "backbone": backbone,
            "epochs": int(last[0]["epoch"]),
            "k-NN before (%)": mean_std([100 * r["knn_acc"] for r in first]),
            "k-NN after (%)": mean_std([100 * r["knn_acc"] for r in last]),
            "final loss": mean_std([r["loss"] for r in last], decimals=1),
            "emb std after": mean_std([r["emb_std"] for r in last], decimals=3),
            "train wall time (min)": mean_std([histories[backbone, s]["wall_s"].max() / 60 for s in seeds]),
        }
    )
results = pd.DataFrame(rows).set_index("backbone")
save_results(profile, "pretrain_knn", results)
print(f"seeds {seeds}; chance = {100 / len(train.classes):.2f} %")
results

# %%
record.finish()
