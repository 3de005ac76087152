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
# published weights as extra initialisations, "<checkpoint>/<backbone>" (rtsseg.models.published), each beside a
# random init of its backbone: dino/vit_s16, dino/vit_s8, dino/vit_s8_64, barlow twins/resnet50, barlow
# twins/botnet50. [] in the book (no network here)
published = []
published_dir = None  # a folder with the official files (dino_deitsmall8_pretrain.pth, resnet50.pth); None: download
image_size = 64
train_per_class = 20  # labelled train images per class for k-NN / linear
val_per_class = 10  # val images per class scored
tsne_classes = 10  # classes shown in the t-SNE figure
linear_epochs = 100

# %%
import pandas as pd

from rtsseg.analysis import chapter6 as E
from rtsseg.analysis.embeddings import extract_embeddings
from rtsseg.config import data_root as resolve_data_root, default_device
from rtsseg.data.tinyimagenet import load_tensors, per_class_indices, tinyimagenet_root
from rtsseg.experiments import INITS, cache_dir, iter_models, model_runs, published_inits
from rtsseg.glue import PAGE_WIDTH_IN, figure_style, glue_figure, glue_result, glue_table
from rtsseg.report import RunRecord, notebook_params, save_results

params = notebook_params(globals(), "06_embeddings")
record = RunRecord("06_embeddings", params)
figure_style()
root = resolve_data_root(data_root)
device = default_device()
runs_of = model_runs(backbones, main_backbone, seeds, other_seeds)
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
for backbone, init, seed, model in iter_models(profile, runs_of, INITS, image_size, missing, device, record,
                                               published, published_dir):
    x_tr = extract_embeddings(model, train.images[tr], input_size=image_size, device=device)
    x_va = feats[backbone, init, seed] = extract_embeddings(model, val.images[va], input_size=image_size, device=device)
    rows.append({"backbone": backbone, "init": init, "seed": seed,
                 **E.probe_scores(x_tr, train.labels[tr], x_va, val.labels[va], num_classes, linear_epochs, seed)})
scores = pd.DataFrame(rows)
inits, tables = E.score_tables(scores, INITS + published_inits(published))
save_results(profile, "embeddings", pd.concat(tables, axis=1))
glue_table("tbl_emb_knn", tables["k-NN"])
glue_table("tbl_emb_linear", tables["linear"])
if missing:
    display(pd.DataFrame(missing, columns=["backbone", "init", "seed", "why skipped"]))

# %% [markdown]
# ```{glue:figure} tbl_emb_knn
# :name: tbl-emb-knn
#
# k-NN top-1 (%) on Tiny-ImageNet val, per backbone and initialisation, mean ± standard deviation over seeds
# (n: seeds).
# ```
#
# ```{glue:figure} tbl_emb_linear
# :name: tbl-emb-linear
#
# Linear-probe top-1 (%) on Tiny-ImageNet val, same embeddings and images.
# ```

# %%
for name, text in E.result_texts(scores, main_backbone).items():
    glue_result(name, text)

# %% [markdown]
# ## t-SNE of val embeddings
#
# The first {glue:text}`emb_tsne_classes` classes of the val images, main backbone, first seed, one panel per
# initialisation ({numref}`fig-emb-tsne`).

# %%
tsne_backbone, tsne_seed = E.tsne_run(runs_of, main_backbone, backbones)
glue_figure("fig_emb_tsne", E.plot_tsne_panels(feats, val.labels[va], val.class_names, inits, tsne_backbone, tsne_seed,
                                               tsne_classes, width=PAGE_WIDTH_IN))
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
# {glue:text}`sup_knn_gain` points (mean ± standard deviation over seeds; {numref}`tbl-emb-knn`, linear probes in
# {numref}`tbl-emb-linear`).

# %%
record.finish()
