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
# # 5. Attention maps: does self-supervision make them find *this* object?
#
# DINO {cite}`caron2021dino` showed that a self-supervised ViT's last-layer CLS attention segments objects
# (Jaccard of each head's 60 %-mass mask with VOC12 object masks, ViT-S/16, best head: 22.0 random, 27.3
# supervised, 45.9 DINO). We ask the same of Barlow Twins and DINO trained here, against a random and a
# supervised network trained on the same images with the same budget.
#
# **The null is an image-independent map, not chance.** Objects are not placed at random: Tiny-ImageNet boxes
# are centred and cover half of the image, CamVid things lie on a band. A centre map that never looks at the
# image scores well above AUROC 0.5. So the headline score of every map is its **object-specific excess**: its
# score against its own image's ground truth minus its score against *other* images' ground truths of the same
# set (a permutation null: derangements within the set, averaged over several permutations, paired per image;
# `rtsseg.attention.evaluate.object_specific`). Any image-independent map — the centre map, the mean object of
# the train boxes, a model's own mean map — has excess 0 by construction; planted maps (the ground truth blurred
# plus noise) keep a large one. The best head is chosen on one half of the images and reported on the other.
# Intervals resample seeds and, within them, images (hierarchical bootstrap); CamVid frames are video, so they
# are resampled in contiguous blocks within each drive, the block length chosen from the measured
# autocorrelation (`rtsseg.stats`). The raw AUROC (0.5 = chance) stays beside the excess as context.
#
# **Positive controls.** Planted maps, and the **attention-supervised** backbone of chapter 4, trained so that
# its heads' maps fall in *their own* image's box more than in the other boxes of the batch — a loss no
# image-independent map can satisfy (`rtsseg.attention.supervision.contrastive_box_attention_loss`).
#
# **Maps.** ViT: the CLS token's attention over the patches, per head, in the last block (DINO's map). Swin and
# BoTNet have no CLS token; their map is the attention each token *receives*, averaged over all queries.

# %% tags=["parameters"]
profile = "cpu"
data_root = None  # None: $RTSSEG_DATA, else ../shared/data
main_backbone = "vit_small64"  # the main attention backbone: all seeds in `seeds`
backbones = ["vit_small64", "swin_small64", "botnet_small"]
seeds = [0, 1, 2]  # seeds of the main backbone
other_seeds = [0]  # seeds of the other backbones
inits = ["random", "supervised", "barlow twins", "dino", "attention-supervised"]
# published weights as extra initialisations, "<checkpoint>/<backbone>" (rtsseg.models.published), each beside
# a random init of its backbone: dino/vit_s16, dino/vit_s8, dino/vit_s8_64, barlow twins/botnet50 (not resnet50:
# no attention). Known semantic attention (DINO): an anchor for the excess. [] in the book (no network here)
published = []
published_dir = None  # a folder with the official files (dino_deitsmall8_pretrain.pth, resnet50.pth); None: download
image_size = 64
n_val_images = 2000  # Tiny-ImageNet val images with a box (evenly spaced over the split)
n_train_boxes = 2000  # Tiny-ImageNet train boxes the mean-object map is fitted on
small_box_area = 0.3  # the low-prior subset: boxes under this share of the image
camvid_splits = ["train", "val"]  # every labelled CamVid frame: the backbones never see CamVid while pretraining
min_things_fraction = 0.01  # CamVid frames with fewer things pixels are left out (and counted)
n_camvid_frames = None  # None: every labelled frame; a number: that many, evenly spaced (the smoke profile)
n_perm = 8  # derangements of the permutation null
n_figure_images = 8
n_head_images = 2  # images of the per-head figure
planted_snr = 4.0  # SNR of the planted-map control
n_boot = 1000
boot_seed = 0

# %%
import pandas as pd
import torch

from rtsseg.analysis import attention as A
from rtsseg.attention.evaluate import capture_maps
from rtsseg.attention.groundtruth import box_area_fraction, camvid_frames, tiny_imagenet_boxes
from rtsseg.config import data_root as resolve_data_root, default_device
from rtsseg.data import camvid
from rtsseg.data.tinyimagenet import load_tensors, tinyimagenet_root
from rtsseg.experiments import cache_dir, iter_models, model_runs, published_backbones, published_inits
from rtsseg.findings import findings_paragraph, save_findings
from rtsseg.glue import PAGE_WIDTH_IN, figure_style, glue_figure, glue_result, glue_table
from rtsseg.report import RunRecord, notebook_params, results_dir, save_results

params = notebook_params(globals(), "05_attention_maps")
record = RunRecord("05_attention_maps", params)
figure_style()
root = resolve_data_root(data_root)
runs = model_runs(backbones, main_backbone, seeds, other_seeds)

# %% [markdown]
# ## Ground truth
#
# Tiny-ImageNet val boxes (filled, at the 64 px label resolution), the boxes under
# {glue:text}`attn_small_box_pct` of the image, and the CamVid *things* (pole, sign, car, pedestrian,
# bicyclist) of every labelled frame of CamVid {glue:text}`attn_camvid_splits` in the centre square crop,
# ordered by drive and frame. The mean-object map is fitted on
# Tiny-ImageNet *train* boxes; for CamVid on the same frames (an image-independent reference either way).

# %%
tin_root = tinyimagenet_root(root)
val = load_tensors(tin_root, "val", cache_dir=cache_dir(), progress=False)
train = load_tensors(tin_root, "train", cache_dir=cache_dir(), progress=False)
tin = tiny_imagenet_boxes(val.images, val.boxes, n_val_images, image_size)
small_keep = box_area_fraction(val.boxes[tin.index], val.images.shape[-1]) < small_box_area
small = tin.subset(small_keep, f"boxes < {small_box_area:.0%}")
glue_result("attn_small_box_pct", small_box_area, "{:.0%}")
glue_result("attn_camvid_splits", " + ".join(camvid_splits))
cam = camvid_frames([camvid.CamVid(camvid.camvid_root(root), s) for s in camvid_splits], image_size,
                    min_fraction=min_things_fraction)
if n_camvid_frames is not None:
    cam = cam.subset(torch.linspace(0, len(cam) - 1, min(n_camvid_frames, len(cam))).round().long().unique())
sets = {"Tiny-ImageNet boxes": tin, small.name: small, "CamVid things": cam}
train_boxes = tiny_imagenet_boxes(train.images, train.boxes, n_train_boxes, image_size).gts
fit_gts = {"Tiny-ImageNet boxes": train_boxes, small.name: train_boxes, "CamVid things": cam.gts}
glue_table("tbl_attn_gt", A.ground_truth_table(sets))

# %% [markdown]
# ```{glue:figure} tbl_attn_gt
# :name: tbl-attn-gt
#
# The ground truths the maps are scored against: images kept, images left out (no usable ground truth; for the
# small boxes, the boxes above the threshold), the share of the image the ground truth covers, and the CamVid
# drives the frames come from.
# ```
#
# ## Maps of every initialisation
#
# Maps are captured once per run (backbone, initialisation, seed); an initialisation whose checkpoint does not
# exist yet is skipped and named.

# %%
maps, missing = {}, []
for backbone, init, seed, model in iter_models(profile, runs, inits, image_size, missing, default_device(), record,
                                               published, published_dir, need_attention=True):
    for name, s in (("tin", tin), ("cam", cam)):
        maps.setdefault((backbone, init, name), []).append(capture_maps(model, s.images, progress=False))
if missing:
    glue_table("tbl_attn_missing", pd.DataFrame(missing, columns=["backbone", "init", "seed", "why skipped"]),
               display=True)
grid = tuple(maps[main_backbone, "random", "tin"][0].shape[-2:])  # random init always exists


def run_maps(backbone, init, gt):
    """Every seed's maps of a run on ground truth ``gt`` (the small-box set is a subset of the val boxes)."""
    m = maps.get((backbone, init, "cam" if gt == "CamVid things" else "tin"), [])
    return [x[small_keep] for x in m] if gt == small.name else m


# %% [markdown]
# ## Object-specific scores
#
# Per ground truth: the references (image-independent maps, excess 0 by construction; planted maps, the
# positive control), then every backbone and initialisation, and the main backbone's own mean maps (what it puts
# in the same place on every image). "AUROC own / other": the best head against its own image's ground truth
# and against the other images'; the excess is their difference, with its 95 % interval.

# %%
rows_backbones = list(dict.fromkeys(backbones + published_backbones(published)))
results, paired = A.score_all(sets, run_maps, rows_backbones, inits + published_inits(published), main_backbone,
                               fit_gts, grid, planted_snr, n_perm, n_boot, boot_seed)
table = A.results_table(results)
save_results(profile, "attention_object_specific", table)
A.save_per_image_scores(results, results_dir(profile) / "attention_per_image.npz")  # per image and head, every row
for i, gt in enumerate(sets):
    glue_table(f"tbl_attn_excess_{i}", A.display_table(table, gt))
glue_result("attn_block_len", results["CamVid things", "centre map"].block_len or 1, "d")

# %% [markdown]
# ```{glue:figure} tbl_attn_excess_0
# :name: tbl-attn-excess-tin
#
# Object-specific scores on the Tiny-ImageNet val boxes; intervals over seeds and images (hierarchical bootstrap).
# ```
#
# ```{glue:figure} tbl_attn_excess_1
# :name: tbl-attn-excess-small
#
# The same on the val boxes under the small-box threshold of {numref}`tbl-attn-gt`.
# ```
#
# ```{glue:figure} tbl_attn_excess_2
# :name: tbl-attn-excess-camvid
#
# The same on the CamVid things of every labelled frame; frames are resampled in blocks of
# {glue:text}`attn_block_len` within each drive.
# ```
#
# ## Figures
#
# Head-mean maps of the main backbone's first seed on the same images for every initialisation, on one colour
# scale (1 = a uniform map; the ground truth outlined); then, as in DINO's figures, every head of the last layer
# with its 60 %-mass mask outlined; then the distribution of the per-head excess of each initialisation.

# %%
figures = A.chapter_figures(sets, lambda i, gt: (run_maps(main_backbone, i, gt) or [None])[0], inits, results,
                             main_backbone, n_figure_images, n_head_images, PAGE_WIDTH_IN)
for name, fig in figures.items():
    glue_figure(name, fig)
glue_result("attn_main_backbone", main_backbone)

# %% [markdown]
# ```{glue:figure} attn_grid
# :name: fig-attn-grid
#
# Attention of {glue:text}`attn_main_backbone` (head mean, first seed) on the same Tiny-ImageNet val images
# under each initialisation, on one colour scale (1 = a uniform map); the object box is outlined.
# ```
#
# ```{glue:figure} attn_grid_camvid
# :name: fig-attn-grid-camvid
#
# The same on CamVid frames; the *things* are outlined.
# ```
#
# ```{glue:figure} attn_heads_0
# :name: fig-attn-heads-0
#
# Every head of the last layer of {glue:text}`attn_main_backbone` (first seed), one row per initialisation, on
# one val image: the head's map over the image and its 60 %-mass mask (cyan); the box in yellow (column 0).
# ```
#
# ```{glue:figure} attn_heads_1
# :name: fig-attn-heads-1
#
# The same on another val image.
# ```
#
# ```{glue:figure} attn_head_excess
# :name: fig-attn-head-excess
#
# Object-specific AUROC excess of every head (every seed) of {glue:text}`attn_main_backbone` on the Tiny-ImageNet
# val boxes, per initialisation; bars at the median, 0 = an image-independent map, dotted: planted maps.
# ```

# %%
findings = A.attention_findings(results, paired, main_backbone, list(sets))
save_findings(profile, "05_attention_maps", findings)
glue_result("attention_result", findings_paragraph(findings))
for name, text in A.landing_texts(findings).items():
    glue_result(name, text)

# %% [markdown]
# ## Result
#
# Every sentence states an interval (seeds and images resampled) and its null; "above" / "below" means the
# whole 95 % interval lies on that side of the null, "no measurable difference" that it contains it, and the
# smallest detectable effect is what this design could have seen. {glue:text}`attention_result`
#
# For scale, DINO's published Jaccard with VOC12 object masks (ViT-S/16, best head, 224 px, ImageNet): random
# 22.0, supervised 27.3, DINO 45.9 {cite}`caron2021dino`; our ground truth, scale and budget differ.

# %%
record.finish()
