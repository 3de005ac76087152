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
# Three public data sets, read from `$RTSSEG_DATA` (default `../shared/data`, never copied into the repository):
#
# - **Tiny-ImageNet-200** {cite}`le2015tinyimagenet`, 64×64 images of 200 ImageNet classes: the unlabelled pool
#   for Barlow Twins pretraining (here a 20,000-image subset, 100 per class). Its class labels and object boxes are
#   used only for evaluation: k-NN and linear probes, t-SNE colours, and whether attention falls inside the box.
# - **CamVid** {cite}`brostow2009camvid` in the SegNet split {cite}`badrinarayanan2017segnet` (367 train / 101 val,
#   360×480, 11 classes + void): per-pixel labels of *stuff* (sky, road, …) and *things* (cars, pedestrians, …),
#   the segmentation benchmark that fits a CPU.
# - **COCO-Stuff** {cite}`caesar2018cocostuff`, the proposal's target (164k images, 171 classes; and the 27 coarse
#   classes of the curated split of IIC/PiCIE/STEGO {cite}`ji2019iic,cho2021picie,hamilton2022stego`). Only the
#   curated id lists ship here; the images (≈20 GB) are downloaded on Colab with `rtsseg download cocostuff DEST`.

# %% tags=["parameters"]
profile = "cpu"
data_root = None  # None: $RTSSEG_DATA, else ../shared/data beside the repository
seed = 0
n_examples = 4

# %%
import matplotlib.pyplot as plt
import pandas as pd
import torch

from rtsseg.config import data_root as resolve_data_root, seed_everything
from rtsseg.data import camvid, cocostuff, tinyimagenet
from rtsseg.report import RunRecord, notebook_params
from rtsseg.seg.plot import CAMVID_PALETTE, colorize

params = notebook_params(globals(), "01_data")
record = RunRecord("01_data", params)
seed_everything(seed)
root = resolve_data_root(data_root)
print("data root:", root)

# %% [markdown]
# ## CamVid

# %%
camvid_train = camvid.CamVid(camvid.camvid_root(root), "train")
camvid_val = camvid.CamVid(camvid.camvid_root(root), "val")
counts = torch.zeros(camvid.NUM_CLASSES + 1, dtype=torch.long)
for _, mask in camvid_val:
    counts += torch.bincount(mask.flatten().clamp(max=camvid.NUM_CLASSES), minlength=camvid.NUM_CLASSES + 1)
freq = pd.DataFrame(
    {
        "class": camvid.CLASS_NAMES + ["void (ignored)"],
        "kind": ["stuff" if i in camvid.STUFF else "thing" for i in range(camvid.NUM_CLASSES)] + ["-"],
        "val pixels (%)": (100 * counts / counts.sum()).round(decimals=2).tolist(),
    }
)
print(f"CamVid: {len(camvid_train)} train, {len(camvid_val)} val images")
freq

# %%
fig, axes = plt.subplots(2, n_examples, figsize=(3.2 * n_examples, 5))
for j in range(n_examples):
    image, mask = camvid_val[j * (len(camvid_val) // n_examples)]
    axes[0, j].imshow(image.permute(1, 2, 0))
    axes[1, j].imshow(colorize(mask, CAMVID_PALETTE))
    for ax in axes[:, j]:
        ax.axis("off")
axes[0, 0].set_title("CamVid val image")
axes[1, 0].set_title("label (void in black)")
plt.tight_layout()

# %% [markdown]
# ## Tiny-ImageNet-200 (subset)

# %%
tin_train = tinyimagenet.TinyImageNet(tinyimagenet.tiny_imagenet_root(root), "train")
tin_val = tinyimagenet.TinyImageNet(tinyimagenet.tiny_imagenet_root(root), "val")
print(f"Tiny-ImageNet: {len(tin_train)} train, {len(tin_val)} val images, {len(tin_train.classes)} classes")
g = torch.Generator().manual_seed(seed)
picks = torch.randperm(len(tin_val), generator=g)[: 2 * n_examples].tolist()
fig, axes = plt.subplots(1, len(picks), figsize=(1.8 * len(picks), 2.2))
for ax, i in zip(axes, picks):
    image, label, box = tin_val[i]
    ax.imshow(image.permute(1, 2, 0))
    x0, y0, x1, y1 = box.tolist()
    ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="yellow", lw=1.5))
    ax.set_title(tin_val.class_names[label].split(",")[0][:14], fontsize=8)
    ax.axis("off")
plt.tight_layout()

# %% [markdown]
# ## COCO-Stuff-27 curated split

# %%
curated = cocostuff.curated_ids(root / "cocostuff" / "curated")
pd.DataFrame({"split": list(curated), "curated images": [len(v) for v in curated.values()]})

# %% [markdown]
# ## Run record

# %%
record.finish()
