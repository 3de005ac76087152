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
# # 5. Embeddings: t-SNE, k-NN and linear probes
#
# The pooled embedding of each backbone (CLS token for ViT, global average otherwise), for the three
# initialisations of chapter 4. k-NN: cosine similarity, k = 20, temperature 0.07, as DINO's `eval_knn.py`
# {cite}`caron2021dino`; linear probe: multinomial logistic regression on standardised embeddings
# (full-batch L-BFGS). Both train on a labelled subset of the Tiny-ImageNet train images and are scored on
# Tiny-ImageNet val. For scale: DINO ViT-S/16 on ImageNet reaches 74.5 % k-NN / 77.0 % linear.

# %% tags=["parameters"]
profile = "cpu"
data_root = None  # None: $RTSSEG_DATA, else ../shared/data
backbones = ["vit_small64", "swin_small64", "botnet_small"]
seeds = [0, 1]
image_size = 64
train_per_class = 20  # labelled train images per class for k-NN / linear
val_per_class = 10  # val images per class scored
tsne_classes = 10  # classes shown in the t-SNE figures
linear_epochs = 100

# %%
import matplotlib.pyplot as plt
import pandas as pd
import torch

from rtsseg.analysis.embeddings import extract_embeddings, linear_probe_accuracy, plot_tsne, tsne_2d
from rtsseg.analysis.knn import knn_accuracy
from rtsseg.config import data_root as resolve_data_root, default_device
from rtsseg.data.tinyimagenet import load_tensors, tinyimagenet_root
from rtsseg.experiments import INITS, cache_dir, load_backbone
from rtsseg.report import RunRecord, notebook_params, save_results
from rtsseg.stats import seed_table

params = notebook_params(globals(), "06_embeddings")
record = RunRecord("06_embeddings", params)
root = resolve_data_root(data_root)
device = default_device()
INITS = list(INITS)

def per_class(labels: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the first ``n`` items of every class (deterministic)."""
    return torch.cat([(labels == c).nonzero().flatten()[:n] for c in labels.unique()])

# %%
tin = tinyimagenet_root(root)
train = load_tensors(tin, "train", cache_dir=cache_dir())
val = load_tensors(tin, "val", cache_dir=cache_dir())
tr, va = per_class(train.labels, train_per_class), per_class(val.labels, val_per_class)
num_classes = len(train.classes)
print(f"{len(tr)} labelled train and {len(va)} val images, {num_classes} classes (chance {100 / num_classes:.2f} %)")

# %%
rows, feats = [], {}
for backbone in backbones:
    for init in INITS:
        for seed in seeds:
            model = load_backbone(profile, backbone, init, seed, image_size, device)
            x_tr = extract_embeddings(model, train.images[tr], input_size=image_size, device=device)
            x_va = extract_embeddings(model, val.images[va], input_size=image_size, device=device)
            feats[backbone, init, seed] = x_va
            y_tr, y_va = train.labels[tr], val.labels[va]
            rows.append({"backbone": backbone, "init": init, "seed": seed,
                         "k-NN": knn_accuracy(x_tr, y_tr, x_va, y_va, num_classes, k=20, temperature=0.07),
                         "linear": linear_probe_accuracy(x_tr, y_tr, x_va, y_va, num_classes,
                                                         epochs=linear_epochs, seed=seed)})
scores = pd.DataFrame(rows)
table = pd.concat({m: seed_table(scores, "backbone", "init", m)[INITS] for m in ["k-NN", "linear"]}, axis=1)
save_results(profile, "embeddings", table)
print(f"top-1 accuracy (%) on Tiny-ImageNet val, mean ± std over seeds {seeds}")
table

# %% [markdown]
# ## t-SNE of val embeddings
#
# The first `tsne_classes` classes, first seed, one panel per initialisation.

# %%
shown = val.labels[va] < tsne_classes
names = [n.split(",")[0] for n in val.class_names[:tsne_classes]]
for backbone in backbones:
    fig, axes = plt.subplots(1, len(INITS), figsize=(5 * len(INITS), 4.4))
    for ax, init in zip(axes, INITS):
        x = feats[backbone, init, seeds[0]][shown]
        pts = tsne_2d(x, seed=seeds[0], perplexity=min(30.0, (len(x) - 1) / 3))
        plot_tsne(pts, val.labels[va][shown], names, ax=ax, title=f"{backbone}, {init}")
    fig.tight_layout()

# %%
record.finish()
