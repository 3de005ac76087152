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
# # 6. Segmentation: a linear probe on frozen features
#
# The baseline every decoder must beat: a per-token linear classifier (affine-free BatchNorm + 1×1 conv) on the
# frozen last-stage feature map, trained with cross-entropy on logits upsampled to the label's resolution.
# mIoU is computed the way the anchors demand — one confusion matrix over the whole val split, void pixels
# (label 255) left out, predictions upsampled to each label's own resolution (never labels resized to the
# network's input) — by `rtsseg.seg.metrics`. The `cpu` profile uses CamVid {cite}`brostow2009camvid`
# (images squashed to the network's small input, labels kept at 360×480); the `gpu` profile uses COCO-Stuff-27
# {cite}`caesar2018cocostuff`, where STEGO's ViT-B/8 linear probe reaches 41.0 mIoU {cite}`hamilton2022stego`.

# %% tags=["parameters"]
profile = "cpu"
data_root = None  # None: $RTSSEG_DATA, else ../shared/data
dataset = "camvid"  # camvid | cocostuff27 | cocostuff171
backbones = ["vit_small64", "swin_small64", "botnet_small"]
seeds = [0, 1]
image_size = 64  # the backbones' input size in pretraining
input_size = [96, 128]  # network input (h, w) for segmentation (CamVid's 3:4 aspect)
max_train = 184  # None: the whole train split (evenly spaced frames otherwise)
max_val = None  # None: the whole val split
epochs = 5
lr = 5e-3
batch_size = 16
n_figure_images = 3

# %%
import pandas as pd
import torch

from rtsseg.config import data_root as resolve_data_root, default_device
from rtsseg.experiments import INITS, load_backbone
from rtsseg.report import RunRecord, notebook_params, save_results
from rtsseg.seg.data import segmentation_loaders
from rtsseg.seg.plot import CAMVID_PALETTE, default_palette, plot_predictions
from rtsseg.seg.probe import FrozenBackboneSegmenter, evaluate_segmentation, predict_masks, train_probe
from rtsseg.stats import seed_table

params = notebook_params(globals(), "07_segmentation")
record = RunRecord("07_segmentation", params)
root = resolve_data_root(data_root)
device = default_device()
INITS = list(INITS)
train_loader, val_loader, class_names = segmentation_loaders(
    dataset, root, tuple(input_size), batch_size=batch_size, max_train=max_train, max_val=max_val
)
num_classes = len(class_names)
print(f"{dataset}: {len(train_loader.dataset)} train, {len(val_loader.dataset)} val images, {num_classes} classes, "
      f"network input {input_size}")

# %%
rows, models = [], {}
for backbone in backbones:
    for init in INITS:
        for seed in seeds:
            model = load_backbone(profile, backbone, init, seed, image_size, device)
            head, history = train_probe(model, train_loader, num_classes, epochs=epochs, lr=lr, device=device, seed=seed)
            segmenter = FrozenBackboneSegmenter(model, head)
            s = evaluate_segmentation(segmenter, val_loader, num_classes, device=device)
            rows.append({"backbone": backbone, "init": init, "seed": seed, "mIoU": s.miou,
                         "pixel accuracy": s.pixel_accuracy, **{f"IoU {c}": v for c, v in zip(class_names, s.iou)}})
            models[backbone, init, seed] = segmenter
scores = pd.DataFrame(rows)
table = pd.concat({m: seed_table(scores, "backbone", "init", m)[INITS] for m in ["mIoU", "pixel accuracy"]}, axis=1)
save_results(profile, f"segmentation_{dataset}", table)
print(f"{dataset} val, linear probe on frozen features (%), mean ± std over seeds {seeds}")
table

# %% [markdown]
# ## Per-class IoU (%), mean over seeds

# %%
per_class = scores.groupby(["backbone", "init"], sort=False)[[f"IoU {c}" for c in class_names]].mean() * 100
per_class.round(1)

# %% [markdown]
# ## Predictions
#
# Val images, first seed, the initialisation with the best mean mIoU for each backbone.

# %%
images, masks = next(iter(val_loader))
images, masks = images[:n_figure_images], masks[:n_figure_images]
for backbone in backbones:
    best = scores[scores.backbone == backbone].groupby("init")["mIoU"].mean().idxmax()
    preds = predict_masks(models[backbone, best, seeds[0]], images, tuple(masks.shape[-2:]), device=device)
    palette = CAMVID_PALETTE if dataset == "camvid" else default_palette(num_classes)
    fig = plot_predictions(images, masks, preds, class_names, palette=palette)
    fig.suptitle(f"{backbone}, {best}")

# %%
record.finish()
