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
# # 4. Attention maps: does Barlow Twins make them semantic?
#
# DINO {cite}`caron2021dino` showed that a self-supervised ViT's last-layer CLS attention segments objects,
# and measured it: the Jaccard index between each head's 60 %-mass attention mask and PASCAL VOC12 object masks
# (ViT-S/16, best head) is 22.0 for a random network, 27.3 supervised, 45.9 DINO. We ask the same of Barlow
# Twins, for every attention backbone, against a random network and a supervised one trained on the same images
# with the same budget (chapter 3).
#
# **Maps.** ViT: the CLS token's attention over the patches, per head, in the last block (DINO's map). Swin and
# BoTNet have no CLS token; for them a head's map is the attention each token *receives*, averaged over all
# queries (inside each window for Swin), in the last attention layer — the same definition for both, see
# `rtsseg.attention.capture`. Every map sums to 1.
#
# **Ground truth.** Tiny-ImageNet val object boxes (filled rectangles, at the 64 px label resolution) and CamVid
# val *things* (pole, sign, car, pedestrian, bicyclist) in the centre square crop, at the label's own resolution.
# **Scores** (`rtsseg.attention.evaluate`): per head, the Jaccard averaged over images; the best head (one head for
# the whole set) and the mean over heads; and the share of the head-mean attention falling inside the
# ground truth, next to the ground truth's own area share (the value of a uniform map).

# %% tags=["parameters"]
profile = "cpu"
data_root = None  # None: $RTSSEG_DATA, else ../shared/data
backbones = ["vit_small64", "swin_small64", "botnet_small"]
seeds = [0, 1]
image_size = 64
n_val_images = 2000  # Tiny-ImageNet val images with a box (evenly spaced over the split)
n_camvid_images = 101  # CamVid val images (all 101)
min_things_fraction = 0.01  # CamVid crops with fewer things pixels are left out (and counted)
n_figure_images = 1

# %%
import pandas as pd
import torch
import torch.nn.functional as F

from rtsseg.attention import box_mask, capture_attention, class_mask
from rtsseg.attention.evaluate import attention_scores, center_square
from rtsseg.attention.plot import plot_attention_heads
from rtsseg.config import data_root as resolve_data_root, default_device
from rtsseg.data import camvid
from rtsseg.data.tinyimagenet import load_tensors, tinyimagenet_root
from rtsseg.experiments import INITS, cache_dir, load_backbone
from rtsseg.report import RunRecord, notebook_params, save_results
from rtsseg.stats import mean_std, seed_table

params = notebook_params(globals(), "05_attention_maps")
record = RunRecord("05_attention_maps", params)
root = resolve_data_root(data_root)
device = default_device()
INITS = list(INITS)

# %% [markdown]
# ## Ground truth

# %%
val = load_tensors(tinyimagenet_root(root), "val", cache_dir=cache_dir())
has_box = ~val.boxes.isnan().any(dim=1)
idx = has_box.nonzero().flatten()
idx = idx[torch.linspace(0, len(idx) - 1, min(n_val_images, len(idx))).long()]
tin_images = val.images[idx]
if image_size != tin_images.shape[-1]:
    tin_images = F.interpolate(tin_images.float(), size=image_size, mode="bilinear", antialias=True)
    tin_images = tin_images.round().clamp(0, 255).to(torch.uint8)
tin_gts = torch.stack([box_mask(b, val.images.shape[-2:]) for b in val.boxes[idx]])  # at 64 px

cam = camvid.CamVid(camvid.camvid_root(root), "val")
cam_images, cam_gts, left_out = [], [], 0
for i in range(min(n_camvid_images, len(cam))):
    image, mask = center_square(*cam[i], image_size)
    things = class_mask(mask, camvid.THINGS)
    if things.float().mean() < min_things_fraction:
        left_out += 1
        continue
    cam_images.append(image)
    cam_gts.append(things)
cam_images, cam_gts = torch.stack(cam_images), torch.stack(cam_gts)
print(f"Tiny-ImageNet val: {len(tin_images)} images with boxes; CamVid val: {len(cam_images)} crops "
      f"({left_out} left out with < {min_things_fraction:.0%} things pixels)")

# %% [markdown]
# ## Per-head maps, DINO style
#
# First seed. Rows: the image, head mean, overlay, union of the 60 % masks; each head's map; each head's mask.

# %%
for backbone in backbones:
    for init in INITS:
        model = load_backbone(profile, backbone, init, seeds[0], image_size, device)
        for j in range(n_figure_images):
            k = j * (len(tin_images) // max(n_figure_images, 1))
            with torch.no_grad():
                maps = capture_attention(model, model.normalize(tin_images[k : k + 1].to(device)))[0].cpu()
            plot_attention_heads(tin_images[k], maps, title=f"{backbone}, {init}: Tiny-ImageNet val")
        with torch.no_grad():
            maps = capture_attention(model, model.normalize(cam_images[:1].to(device)))[0].cpu()
        plot_attention_heads(cam_images[0], maps, title=f"{backbone}, {init}: CamVid val");

# %% [markdown]
# ## Jaccard of 60 %-mass masks with the ground truth

# %%
rows = []
for backbone in backbones:
    for init in INITS:
        for seed in seeds:
            model = load_backbone(profile, backbone, init, seed, image_size, device)
            for data, images, gts in [("Tiny-ImageNet boxes", tin_images, tin_gts), ("CamVid things", cam_images, cam_gts)]:
                s = attention_scores(model, images, gts)
                rows.append({"backbone": backbone, "init": init, "seed": seed, "ground truth": data,
                             "best head": s.best_head_jaccard, "mean over heads": s.mean_head_jaccard,
                             "mass in gt": s.mass_in_gt, "gt area": s.gt_area})
scores = pd.DataFrame(rows)

# %%
for data in ["Tiny-ImageNet boxes", "CamVid things"]:
    sub = scores[scores["ground truth"] == data]
    table = pd.concat(
        {m: seed_table(sub, "backbone", "init", m)[INITS] for m in ["best head", "mean over heads", "mass in gt"]},
        axis=1,
    )
    save_results(profile, f"attention_{'tin' if data.startswith('Tiny') else 'camvid'}", table)
    print(f"{data}: Jaccard and attention mass inside the ground truth (%), mean ± std over seeds {seeds}; "
          f"a uniform map puts {100 * sub['gt area'].iloc[0]:.1f} % of its mass inside")
    display(table)

# %% [markdown]
# ## Does Barlow Twins change the best-head Jaccard?
#
# Difference to the random network of the same seed, in Jaccard points (mean ± std over seeds): a value within
# its spread of 0 means no measurable effect at this scale.

# %%
wide = scores.pivot_table(index=["ground truth", "backbone", "seed"], columns="init", values="best head")
deltas = pd.DataFrame({
    "barlow twins − random": wide["barlow twins"] - wide["random"],
    "supervised − random": wide["supervised"] - wide["random"],
})
deltas.groupby(level=["ground truth", "backbone"], sort=False).agg(lambda v: mean_std(100 * v))

# %% [markdown]
# For scale, DINO's published Jaccard with VOC12 object masks (ViT-S/16, best head, 224 px, ImageNet):
# random 22.0, supervised 27.3, DINO 45.9 {cite}`caron2021dino`. Our ground truth (boxes, things) and scale
# (64 px, 20k images, minutes of training) differ, so only the *ordering* random / supervised / Barlow Twins
# is comparable.

# %%
record.finish()
