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
# # 1. The data
#
# Three public data sets, read from `$RTSSEG_DATA` (never copied into the repository). Every count on this page
# is computed from the files of this run's data root.
#
# - **Tiny-ImageNet** {cite}`le2015tinyimagenet`: {glue:text}`n_tin_train` training images of
#   {glue:text}`n_tin_classes` ImageNet classes at 64×64 px, the unlabelled pool for self-supervised pretraining;
#   its labels and the {glue:text}`n_tin_val` validation images with their object boxes serve only for
#   evaluation (k-NN and linear probes, t-SNE colours, attention against the box).
# - **CamVid** {cite}`brostow2009camvid` in the SegNet split {cite}`badrinarayanan2017segnet`
#   ({glue:text}`n_camvid_train` train / {glue:text}`n_camvid_val` val images, 360×480,
#   {glue:text}`n_camvid_classes` classes + void): per-pixel labels of *stuff* (sky, road, …) and *things*
#   (cars, pedestrians, …), the segmentation benchmark that fits a CPU.
# - **COCO-Stuff** {cite}`caesar2018cocostuff`, the proposal's target, in the 27 coarse classes of the curated
#   split of IIC/PiCIE/STEGO {cite}`ji2019iic,cho2021picie,hamilton2022stego`. Only the curated id lists ship with
#   the offline data; the images (≈20 GB) are downloaded on a GPU machine (see {doc}`/book/reproduce`).

# %% tags=["parameters"]
profile = "cpu"
data_root = None  # None: $RTSSEG_DATA, else ../shared/data beside the repository
seed = 0
n_examples = 4

# %%
import matplotlib.pyplot as plt
import pandas as pd
import torch
from matplotlib.patches import Patch

from rtsseg.glue import PAGE_WIDTH_IN, figure_style, glue_figure, glue_result, glue_table
from rtsseg.config import data_root as resolve_data_root, seed_everything
from rtsseg.data import camvid, cocostuff, tinyimagenet
from rtsseg.report import RunRecord, notebook_params
from rtsseg.seg.plot import CAMVID_PALETTE, colorize

params = notebook_params(globals(), "01_data")
record = RunRecord("01_data", params)
seed_everything(seed)
figure_style()
root = resolve_data_root(data_root)

# %% [markdown]
# ## CamVid
#
# Pixel frequencies decide what a segmentation mean over classes rewards: {glue:text}`camvid_stuff_pct` % of the
# labelled validation pixels are *stuff* and {glue:text}`camvid_things_pct` % are *things*
# ({numref}`tbl-camvid-freq`), so a decoder that gets roads and sky right already scores well on pixel accuracy,
# while the mean IoU over classes weighs the rare things equally.

# %%
camvid_train = camvid.CamVid(camvid.camvid_root(root), "train")
camvid_val = camvid.CamVid(camvid.camvid_root(root), "val")
counts = torch.zeros(camvid.NUM_CLASSES + 1, dtype=torch.long)  # [classes + void]
for _, mask in camvid_val:
    counts += torch.bincount(mask.flatten().clamp(max=camvid.NUM_CLASSES), minlength=camvid.NUM_CLASSES + 1)
labelled = counts[: camvid.NUM_CLASSES].sum()
freq = pd.DataFrame(
    {
        "class": camvid.CLASS_NAMES,
        "kind": ["stuff" if i in camvid.STUFF else "thing" for i in range(camvid.NUM_CLASSES)],
        "share of labelled val pixels (%)": (100 * counts[: camvid.NUM_CLASSES] / labelled).numpy().round(1),
    }
).set_index("class")
glue_result("n_camvid_train", len(camvid_train), ",d")
glue_result("n_camvid_val", len(camvid_val), ",d")
glue_result("n_camvid_classes", camvid.NUM_CLASSES, "d")
glue_result("camvid_stuff_pct", freq.loc[freq["kind"] == "stuff", "share of labelled val pixels (%)"].sum(), ".1f")
glue_result("camvid_things_pct", freq.loc[freq["kind"] == "thing", "share of labelled val pixels (%)"].sum(), ".1f")
glue_result("camvid_void_pct", 100 * counts[-1].item() / counts.sum().item(), ".1f")
glue_table("tbl_camvid_freq", freq)

# %% [markdown]
# ```{glue:figure} tbl_camvid_freq
# :name: tbl-camvid-freq
#
# CamVid classes and their share of the labelled validation pixels; void ({glue:text}`camvid_void_pct` % of all
# pixels) is ignored by the loss and the metrics.
# ```

# %%
n_cols = n_examples
fig, axes = plt.subplots(2, n_cols, figsize=(PAGE_WIDTH_IN, PAGE_WIDTH_IN / n_cols * 0.75 * 2 + 1.2), squeeze=False)
for j in range(n_cols):
    image, mask = camvid_val[j * (len(camvid_val) // n_cols)]
    axes[0, j].imshow(image.permute(1, 2, 0))  # [H, W, 3] uint8
    axes[1, j].imshow(colorize(mask, CAMVID_PALETTE))
    for ax in axes[:, j]:
        ax.axis("off")
axes[0, 0].set_title("image", loc="left")
axes[1, 0].set_title("label (void black)", loc="left")
handles = [Patch(color=CAMVID_PALETTE[i] / 255, label=name) for i, name in enumerate(camvid.CLASS_NAMES)]
handles.append(Patch(color="black", label="void"))
fig.legend(handles=handles, loc="lower center", ncol=6, frameon=False, handlelength=1.0, columnspacing=1.0)
fig.tight_layout(rect=(0, 0.14, 1, 1))
glue_figure("fig_camvid_examples", fig)

# %% [markdown]
# ```{glue:figure} fig_camvid_examples
# :name: fig-camvid-examples
#
# CamVid validation images (top) and their labels (bottom), evenly spaced through the split.
# ```
#
# ## Tiny-ImageNet
#
# Chance accuracy over the {glue:text}`n_tin_classes` classes is {glue:text}`tin_chance` %: the floor of every
# k-NN and linear-probe accuracy of chapters 2–6. The boxes are the ground truth the attention chapter scores
# the maps against ({numref}`fig-tin-examples`); they cover {glue:text}`tin_box_area_pct` % of the image on
# average, the score a map spread uniformly over the image would get.

# %%
tin_train = tinyimagenet.TinyImageNet(tinyimagenet.tiny_imagenet_root(root), "train")
tin_val = tinyimagenet.TinyImageNet(tinyimagenet.tiny_imagenet_root(root), "val")
n_classes = len(tin_train.classes)
glue_result("n_tin_classes", n_classes, "d")
glue_result("n_tin_train", len(tin_train), ",d")
glue_result("n_tin_val", len(tin_val), ",d")
glue_result("tin_chance", 100 / n_classes, ".2g")
boxes = tin_val.boxes[~tin_val.boxes.isnan().any(dim=1)]  # [N, 4] x0, y0, x1, y1 in pixels of 64
area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=0) / 64**2
glue_result("tin_box_area_pct", 100 * area.mean().item(), ".0f")

g = torch.Generator().manual_seed(seed)
picks = torch.randperm(len(tin_val), generator=g)[: 2 * n_examples].tolist()
fig, axes = plt.subplots(2, n_examples, figsize=(PAGE_WIDTH_IN, PAGE_WIDTH_IN / n_examples * 2 + 0.6), squeeze=False)
for ax, i in zip(axes.flat, picks):
    image, label, box = tin_val[i]
    ax.imshow(image.permute(1, 2, 0))  # [64, 64, 3] uint8
    x0, y0, x1, y1 = box.tolist()
    ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="yellow", lw=2))
    ax.set_title(tin_val.class_names[label][:16])
    ax.axis("off")
fig.tight_layout()
glue_figure("fig_tin_examples", fig)

# %% [markdown]
# ```{glue:figure} fig_tin_examples
# :name: fig-tin-examples
#
# Random Tiny-ImageNet validation images with their class and object box (yellow).
# ```
#
# ## COCO-Stuff-27 curated split

# %%
curated = cocostuff.curated_ids(root / "cocostuff" / "curated")
glue_result("n_coco_curated_train", len(curated.get("train2017", [])), ",d")
glue_result("n_coco_curated_val", len(curated.get("val2017", [])), ",d")
glue_result("n_coco_classes", cocostuff.NUM_CLASSES_27, "d")

# %% [markdown]
# The curated lists name {glue:text}`n_coco_curated_train` training and {glue:text}`n_coco_curated_val`
# validation images labelled with {glue:text}`n_coco_classes` coarse classes; the `gpu` profile runs on them.
#
# ## Result
#
# The pretraining pool holds {glue:text}`n_tin_train` images of {glue:text}`n_tin_classes` classes (chance
# {glue:text}`tin_chance` %); CamVid gives {glue:text}`n_camvid_train` training and {glue:text}`n_camvid_val`
# validation images whose labelled pixels are {glue:text}`camvid_stuff_pct` % stuff and
# {glue:text}`camvid_things_pct` % things. Those counts were read from the data of this run, not typed.
#
# ## Run record

# %%
record.finish()
