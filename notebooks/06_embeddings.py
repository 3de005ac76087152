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
# # 6. Embeddings: t-SNE, k-NN and linear probes
#
# The pooled embedding of each backbone (CLS token for ViT, global average otherwise), for the four
# initialisations of chapters 2–4: random, supervised, Barlow Twins and DINO. k-NN: cosine similarity, k = 20,
# temperature 0.07, as DINO's `eval_knn.py` {cite}`caron2021dino`; linear probe: multinomial logistic
# regression on standardised embeddings (full-batch L-BFGS). Both train on a labelled subset of the
# Tiny-ImageNet train images and are scored on Tiny-ImageNet val. For scale: DINO ViT-S/16 on ImageNet reaches
# 74.5 % k-NN / 77.0 % linear.

# %% tags=["parameters"]
profile = "cpu"
data_root = None  # None: $RTSSEG_DATA, else ../shared/data
main_backbone = "vit_small64"  # the main attention backbone: every seed in `seeds`
backbones = ["vit_small64", "swin_small64", "botnet_small"]
seeds = [0, 1, 2]  # seeds of the main backbone (as trained in chapters 2-4)
other_seeds = [0]  # seeds of the other backbones
image_size = 64
train_per_class = 20  # labelled train images per class for k-NN / linear
val_per_class = 10  # val images per class scored
tsne_classes = 10  # classes shown in the t-SNE figure
linear_epochs = 100

# %%
import matplotlib.pyplot as plt
import pandas as pd

from rtsseg.analysis.embeddings import extract_embeddings, linear_probe_accuracy, plot_tsne, tsne_2d
from rtsseg.book import PAGE_WIDTH_IN, figure_style, glue_figure, glue_result, glue_table
from rtsseg.config import data_root as resolve_data_root, default_device
from rtsseg.data.tinyimagenet import load_tensors, per_class_indices, tinyimagenet_root
from rtsseg.experiments import INITS, cache_dir, iter_models, model_runs
from rtsseg.knn import knn_accuracy
from rtsseg.report import RunRecord, notebook_params, save_results
from rtsseg.stats import mean_std, seed_table

params = notebook_params(globals(), "06_embeddings")
record = RunRecord("06_embeddings", params)
figure_style()
root = resolve_data_root(data_root)
device = default_device()
runs_of = model_runs(backbones, main_backbone, seeds, other_seeds)

# %%
tin = tinyimagenet_root(root)
train = load_tensors(tin, "train", cache_dir=cache_dir(), progress=False)
val = load_tensors(tin, "val", cache_dir=cache_dir(), progress=False)
tr, va = per_class_indices(train.labels, train_per_class), per_class_indices(val.labels, val_per_class)
num_classes = len(train.classes)
glue_result("emb_n_train", len(tr), ",d")
glue_result("emb_n_val", len(va), ",d")
glue_result("emb_chance", 100 / num_classes, ".2g")

# %% [markdown]
# ## k-NN and linear probes
#
# {glue:text}`emb_n_train` labelled train images and {glue:text}`emb_n_val` val images (chance
# {glue:text}`emb_chance` %). An initialisation whose checkpoint does not exist in this run is skipped and
# named.

# %%
rows, feats, missing = [], {}, []
for backbone, init, seed, model in iter_models(profile, runs_of, INITS, image_size, missing, device, record):
    x_tr = extract_embeddings(model, train.images[tr], input_size=image_size, device=device)
    x_va = extract_embeddings(model, val.images[va], input_size=image_size, device=device)
    feats[backbone, init, seed] = x_va
    y_tr, y_va = train.labels[tr], val.labels[va]
    rows.append({"backbone": backbone, "init": init, "seed": seed,
                 "k-NN": knn_accuracy(x_tr, y_tr, x_va, y_va, num_classes, k=20, temperature=0.07),
                 "linear": linear_probe_accuracy(x_tr, y_tr, x_va, y_va, num_classes,
                                                 epochs=linear_epochs, seed=seed)})
scores = pd.DataFrame(rows)
inits = [i for i in INITS if i in set(scores["init"])]
tables = {m: seed_table(scores, "backbone", "init", m)[inits].fillna("–") for m in ["k-NN", "linear"]}
save_results(profile, "embeddings", pd.concat(tables, axis=1))
glue_table("tbl_emb_knn", tables["k-NN"])
glue_table("tbl_emb_linear", tables["linear"])
if missing:
    display(pd.DataFrame(missing, columns=["backbone", "init", "seed", "why skipped"]))

# %% [markdown]
# ```{glue:figure} tbl_emb_knn
# :name: tbl-emb-knn
#
# k-NN top-1 (%) on Tiny-ImageNet val, per backbone and initialisation, mean ± std over seeds (n: seeds).
# ```
#
# ```{glue:figure} tbl_emb_linear
# :name: tbl-emb-linear
#
# Linear-probe top-1 (%) on Tiny-ImageNet val, same embeddings and images.
# ```

# %%
def knn_gain(init: str, backbone: str = main_backbone) -> str:
    """k-NN of ``init`` minus random init, points, paired by seed (the same seed's random network), mean ± std."""
    s = scores[scores["backbone"] == backbone].pivot_table(index="seed", columns="init", values="k-NN")
    if init not in s or "random" not in s:
        return "not run in this edition"
    d = (s[init] - s["random"]).dropna()
    return mean_std([100 * v for v in d]) if len(d) else "not run in this edition"


glue_result("emb_main_backbone", main_backbone)
glue_result("bt_knn_gain", knn_gain("barlow twins"))
glue_result("dino_knn_gain", knn_gain("dino"))
glue_result("sup_knn_gain", knn_gain("supervised"))
main_knn = scores[(scores["backbone"] == main_backbone) & (scores["init"] == "random")]["k-NN"]
glue_result("emb_random_knn", mean_std([100 * v for v in main_knn]) if len(main_knn) else "not run")

# %% [markdown]
# ## t-SNE of val embeddings
#
# The first {glue:text}`emb_tsne_classes` classes of the val images, main backbone, first seed, one panel per
# initialisation ({numref}`fig-emb-tsne`).

# %%
shown = val.labels[va] < tsne_classes
names = [n.split(",")[0] for n in val.class_names[:tsne_classes]]
tsne_backbone = main_backbone if main_backbone in backbones else backbones[0]
tsne_seed = next(s for b, s in runs_of if b == tsne_backbone)
panels = [i for i in inits if (tsne_backbone, i, tsne_seed) in feats]
ncols = min(2, len(panels))
nrows = -(-len(panels) // ncols)
side = PAGE_WIDTH_IN / ncols
fig, axes = plt.subplots(nrows, ncols, figsize=(PAGE_WIDTH_IN, side * 0.85 * nrows + 1.0), squeeze=False)
for ax, init in zip(axes.flat, panels):
    x = feats[tsne_backbone, init, tsne_seed][shown]
    pts = tsne_2d(x, seed=tsne_seed, perplexity=min(30.0, (len(x) - 1) / 3))
    plot_tsne(pts, val.labels[va][shown], names, ax=ax, title=init, legend=False)
for ax in list(axes.flat)[len(panels):]:
    ax.axis("off")
handles, labels = axes.flat[0].get_legend_handles_labels()
fig.legend(handles, labels, loc="lower center", ncol=min(5, len(labels)), frameon=False, markerscale=1.5)
fig.tight_layout(rect=(0, 0.06 * (1 + (len(labels) - 1) // 5) / nrows, 1, 1))
glue_figure("fig_emb_tsne", fig)
glue_result("emb_tsne_classes", tsne_classes, "d")
glue_result("emb_tsne_backbone", tsne_backbone)

# %% [markdown]
# ```{glue:figure} fig_emb_tsne
# :name: fig-emb-tsne
#
# t-SNE of the val embeddings of {glue:text}`emb_tsne_backbone` (first seed) under each initialisation,
# coloured by class.
# ```
#
# ## Result
#
# On the main backbone, {glue:text}`emb_main_backbone`, the random network's k-NN top-1 is
# {glue:text}`emb_random_knn` % (chance {glue:text}`emb_chance` %). Relative to it, paired by seed, Barlow Twins
# adds {glue:text}`bt_knn_gain` points, DINO {glue:text}`dino_knn_gain` points and supervised training
# {glue:text}`sup_knn_gain` points (mean ± std over seeds; {numref}`tbl-emb-knn`, linear probes in
# {numref}`tbl-emb-linear`).

# %%
record.finish()
