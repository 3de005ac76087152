"""Experiment profiles: the parameters each notebook runs with, and where the pipeline writes (run paths of
the trained models and ``load_backbone``: :mod:`rtsseg.experiments`).

``smoke`` proves the path end to end in a few minutes on 2 CPU cores; ``cpu`` is the book's default run on
2 CPU cores (small backbones at 64 px); ``colab`` is the cpu edition's backbones with 10x the main backbone's
epochs, sized for one free Colab T4 session (~70-90 min, estimated from counted FLOPs below); ``gpu-short``
is the whole book in about 8 minutes of one H100
(ViT-S/8 at 64 px, ``scripts/gpu_run.sh``); ``gpu`` is the full-size configuration for a Colab/cluster GPU.
A profile lists, per step, only the parameters that differ from the notebook's own defaults (the parameters
cell, tagged ``parameters``, holds the cpu profile's values): change a default in the notebook, not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rtsseg.config import REPO_ROOT, runs_root

NOTEBOOKS = REPO_ROOT / "notebooks"
BOOK = REPO_ROOT / "book"


@dataclass(frozen=True)
class Step:
    name: str  # file stem in notebooks/, e.g. "02_pretrain_barlow_twins"
    depends: tuple[str, ...] = ()  # steps whose outputs this step reads

    @property
    def source(self) -> Path:
        return NOTEBOOKS / f"{self.name}.py"


STEPS: tuple[Step, ...] = (
    Step("01_data"),
    Step("02_pretrain_barlow_twins"),
    Step("03_pretrain_dino"),
    Step("04_supervised_baseline"),
    Step("05_attention_maps", depends=("02_pretrain_barlow_twins", "03_pretrain_dino", "04_supervised_baseline")),
    Step("06_embeddings", depends=("02_pretrain_barlow_twins", "03_pretrain_dino", "04_supervised_baseline")),
    Step("07_segmentation", depends=("02_pretrain_barlow_twins", "03_pretrain_dino", "04_supervised_baseline")),
    Step(
        "08_findings",
        depends=(
            "01_data",
            "02_pretrain_barlow_twins",
            "03_pretrain_dino",
            "04_supervised_baseline",
            "05_attention_maps",
            "06_embeddings",
            "07_segmentation",
        ),
    ),
)

SMALL_BACKBONES = ["vit_small64", "swin_small64", "botnet_small"]

_SMOKE_TRAIN = dict(
    backbones=["vit_small64"],
    seeds=[0],
    epochs=1,
    max_images_per_class=4,
    batch_size=32,
)

_GPU_TRAIN = dict(
    backbones=["vit_s16", "swin_t", "botnet50"],
    seeds=[0, 1, 2],
    image_size=224,
)

# ---- gpu-short: one H100 for about 8 minutes (scripts/gpu_run.sh) ------------------------------------------
# Sized from FLOPs. ViT-S/8 at 64 px = 64 patches + CLS, 12 blocks of width 384, 21.7 M parameters:
#   forward  ~ 2 x 21.3 M x 65 tokens + attention ~ 2.9 GFLOP per image
#   BT step  ~ 2 views x 3 (fwd + bwd) x 2.9 + projector 384-2048-2048-2048 (~0.3) ~ 17.5 GFLOP per image pair
#            (benchmarks/bench_mfu.py's FlopCounterMode count for vit_s8@64: 17.1 GFLOP per image)
#   epoch    = 20,000 pairs ~ 350 TFLOP; batch 512 -> 39 steps of ~9 TFLOP
# An H100 does ~800 bf16 TFLOP/s on large matrix products; a 384-wide, 65-token ViT without torch.compile
# reaches perhaps 20-30 % of it (~160-240 TFLOP/s): ~40-55 ms per step, ~1.5-2.2 s per epoch, plus ~0.5 s
# per epoch of monitoring (k-NN on 25+25 images per class ~ 30 TFLOP, the monitor batch, a ~340 MB checkpoint).
#   02 Barlow Twins, 100 epochs        ~ 35 PFLOP  ~ 2.5-3.5 min
#   03 DINO at equal FLOPs             ~ 35 PFLOP  ~ 2.5-3.5 min  (DinoConfig defaults: 2 global 64 px + 6 local
#      32 px crops: student fwd 2 x 2.9 + 6 x 0.75 GFLOP, x3 with bwd ~ 31 + teacher 2 globals ~ 6 ~ 37 GFLOP per
#      image -> ~47 epochs)
#   04 supervised, 100 epochs (1 view) ~ 17 PFLOP  ~ 1.3-1.8 min
#   05-07 inference, frozen-feature probes, figures; 01/08 tables ~ 1.5 min with kernel start-ups
# Total ~ 6-7 min without DINO, ~ 9-10 min with it, for ONE seed: the profile has one seed (3 seeds would
# triple 02-04, which do not fit; the seed spread of the cpu edition is the only one the book has).
# Swin and BoTNet small at 64 px are overhead-bound on a GPU (~30 ms per step whatever their FLOPs, ~1.5 s per
# epoch): at 100 epochs they would add ~5 min each in 02 + 04, so they stay out until notebooks 02/04 take
# per-backbone epochs (GPU_SHORT_SMALL_BACKBONES below is ready for that). The CamVid pack is at half
# resolution (240x180): the probe's input is 176x240 (a multiple of the patch size) and its mIoU is scored
# on 240x180 labels.
GPU_SHORT_BACKBONES = ["vit_s8_64"]
GPU_SHORT_SMALL_BACKBONES = {"swin_small64": 20, "botnet_small": 20}  # name -> epochs: notebooks 02/04 take them as
#   epochs_by_backbone (with backbones + other_seeds); not wired in, for the time budget above
_GPU_SHORT_COMMON = dict(backbones=GPU_SHORT_BACKBONES, seeds=[0])
# (max_images_per_class: the notebooks' default None, all images)
# epochs: the most that fit; scripts/gpu_run.sh --calibrate measures one epoch of each trainer on the GPU itself and
# lowers 02's epochs (03 follows at equal FLOPs through bt_epochs) and 04's to fit their share of the budget.
_GPU_SHORT_TRAIN = dict(_GPU_SHORT_COMMON, epochs=100, batch_size=512, warmup_epochs=5.0)

# ---- colab: the whole book in one free Colab T4 session (~90 min), the cpu edition's backbones at 64 px -----
# Sized from counted FLOPs (rtsseg.ssl.flops.step_flops / torch FlopCounterMode, per image, fwd + bwd):
#   Barlow Twins (2 views, projector 1024^3): vit_small64 2.12, swin_small64 2.02, botnet_small 1.26 GFLOP
#   DINO (2 x 64 px + 4 x 32 px crops, teacher on the globals): vit_small64 4.13 GFLOP
#   supervised (1 view): vit_small64 1.04, swin_small64 0.99, botnet_small 0.61 GFLOP
# T4: 65 TFLOP/s fp16 peak (no bf16: autocast picks fp16 + GradScaler); assumed 15 % of it, 10 TFLOP/s, plus
# 40 ms per optimiser step (kernel launches of a 2.7 M-parameter model: gpu-short saw ~30 ms per step of the
# small backbones on an H100). Batch sizes and recipes are the cpu edition's (only the epochs grow, so the two
# editions compare), on the book's 20,000 images (rtsseg download tiny-imagenet DEST --per-class 100):
#   02 BT: vit 3 seeds x 20 epochs, swin and botnet 10 each: 3.2 PFLOP ~ 5.3 min + 12,560 steps ~ 8.4 min ~ 15 min
#   03 DINO at equal FLOPs (bt_epochs 20 -> 10 DINO epochs), 3 seeds: 2.5 PFLOP ~ 4.1 min + 9,390 steps ~ 11 min
#   04 supervised: vit 3 seeds x 20 + the attention-supervised control 2 seeds x 20, swin and botnet 10 each:
#      2.4 PFLOP ~ 4 min + 18,840 steps ~ 12.6 min ~ 17.5 min
#   05 / 06 inference (< 0.1 PFLOP) and CPU-side statistics ~ 2 + 2 min; 07 all three backbones, all CamVid
#      train images, 160 decoder trainings of ~4 s ~ 12 min; 01 / 08 < 1 min; pip, downloads, kernels ~ 7 min
# Total ~ 70 min (book/reproduce.md has the table). Not measured on a T4: the first Colab run's run records are.
COLAB_BACKBONES = SMALL_BACKBONES
_COLAB_OTHER_EPOCHS = {"swin_small64": 10, "botnet_small": 10}

PROFILES: dict[str, dict[str, dict]] = {
    "smoke": {
        "01_data": dict(n_examples=2),
        "02_pretrain_barlow_twins": dict(
            _SMOKE_TRAIN, projector_dims=[256, 256, 256], knn_train_per_class=2, knn_val_per_class=2
        ),
        "03_pretrain_dino": dict(
            seeds=[0], max_images_per_class=1, batch_size=32, n_local_crops=2, knn_train_per_class=2,
            knn_val_per_class=1, warmup_epochs=0.2, bt_epochs=1, bt_projector_dims=[256, 256, 256],
        ),
        "04_supervised_baseline": dict(_SMOKE_TRAIN, val_per_class=1),
        "05_attention_maps": dict(backbones=["vit_small64"], seeds=[0], n_val_images=32, n_camvid_frames=16, n_boot=100),
        "06_embeddings": dict(
            backbones=["vit_small64"], seeds=[0], train_per_class=4, val_per_class=2, tsne_classes=5
        ),
        # 4 inits x (linear, control, attn_all, attn_all+sup) on 16 fit / 3 held-out / 8 val images, 2 epochs:
        # ~1 min on 2 cores (the checkpoints of steps 02-04 must exist: the pipeline runs them first)
        "07_segmentation": dict(
            backbones=["vit_small64"], seeds=[0], max_train=16, max_val=8, epochs=2,
            decoders=["linear", "control", "attn_all"],
        ),
        "08_findings": {},
    },
    "cpu": {
        "01_data": {},
        # 01, 02, 04, 06, 08: the notebooks' own defaults are the cpu profile
        "02_pretrain_barlow_twins": {},
        "03_pretrain_dino": {},
        "04_supervised_baseline": {},
        "05_attention_maps": {},
        "06_embeddings": {},
        # 07: the notebook's defaults (~25-30 min on 2 cores; the estimate is in its parameters cell)
        "07_segmentation": {},
        "08_findings": {},
    },
    "colab": {
        "01_data": {},
        "02_pretrain_barlow_twins": dict(epochs=20, epochs_by_backbone=dict(_COLAB_OTHER_EPOCHS)),  # cpu: 2 / 1 / 1
        "03_pretrain_dino": dict(bt_epochs=20),  # equal FLOPs with 02's vit_small64 (cpu: 2)
        "04_supervised_baseline": dict(epochs=20, epochs_by_backbone=dict(_COLAB_OTHER_EPOCHS)),  # cpu: 2 / 1 / 4
        "05_attention_maps": {},  # the cpu edition's images, controls and bootstrap
        "06_embeddings": {},
        "07_segmentation": dict(backbones=list(COLAB_BACKBONES), max_train=None, epochs=12),  # cpu: vit + botnet, 96, 8
        "08_findings": {},
    },
    "gpu-short": {
        "01_data": {},
        "02_pretrain_barlow_twins": dict(
            _GPU_SHORT_TRAIN, main_backbone=GPU_SHORT_BACKBONES[0], adamw_lr=5e-4,  # DINO's ViT-S lr at batch 256
            projector_dims=[2048, 2048, 2048], knn_train_per_class=25, knn_val_per_class=25
        ),
        "03_pretrain_dino": dict(  # equal FLOPs with 02 (epochs None): 6 local crops of 32 px, as DINO's recipe
            _GPU_SHORT_COMMON, bt_epochs=100, bt_projector_dims=[2048, 2048, 2048], batch_size=512, n_local_crops=6,
            warmup_epochs=5.0, knn_train_per_class=25, knn_val_per_class=25,
        ),
        "04_supervised_baseline": dict(_GPU_SHORT_TRAIN, main_backbone=GPU_SHORT_BACKBONES[0]),
        # the val pack holds 25 images per class (5,000): every one of them with a box
        "05_attention_maps": dict(_GPU_SHORT_COMMON, main_backbone=GPU_SHORT_BACKBONES[0], n_val_images=5000),
        "06_embeddings": dict(_GPU_SHORT_COMMON, main_backbone=GPU_SHORT_BACKBONES[0], train_per_class=100,
                              val_per_class=25),
        # 07 on ViT-S/8 (64 px pretraining) at a 128x176 input = 16x22 = 352 tokens + CLS, all 367 train images
        # (294 fit + 73 held-out) and 101 val, 4 inits x 8 decoder variants = 32 trainings, one lr, seed 0:
        #   backbone outputs ~20 GFLOP per image x 468 ~ 9 TFLOP per init: < 1 s of compute, plus the cache write
        #     (the affinity is 6 x 353^2 fp16 ~ 1.5 MB per image, ~0.7 GB per init)
        #   a training: 20 epochs x (5 fit steps of 64 + 2 held-out steps), each ~10-20 ms (the batch's affinity
        #     copied host -> GPU dominates) ~ 1-1.5 s -> 32 trainings ~ 30-50 s; ~1-1.5 min in all (estimate).
        #   Measured on an H100 (2026-11-26) at 20 epochs: not finished after 120 s (the cached outputs were
        #   written, the grid was still training), so 10 epochs and a 180 s cap in scripts/gpu_run.py
        "07_segmentation": dict(
            _GPU_SHORT_COMMON, main_backbone="vit_s8_64", input_size=[128, 176], max_train=None, epochs=10,
            batch_size=64, label_stride=2,
        ),
        "08_findings": {},
    },
    "gpu": {
        "01_data": {},
        "02_pretrain_barlow_twins": dict(
            backbones=_GPU_TRAIN["backbones"],
            image_size=224,
            main_backbone="vit_s16",
            other_seeds=[0, 1, 2],
            epochs=100,
            batch_size=256,
            adamw_lr=5e-4,  # DINO's ViT-S/16 lr at batch 256
            projector_dims=[8192, 8192, 8192],
            knn_train_per_class=100,
            knn_val_per_class=50,
            warmup_epochs=10.0,
        ),
        "03_pretrain_dino": dict(
            backbones=["vit_s16"], image_size=224, batch_size=256, bt_epochs=100,
            bt_projector_dims=[8192, 8192, 8192], n_local_crops=6, warmup_epochs=10.0, freeze_last_layer=1.0,
            teacher_temp=0.07, warmup_teacher_temp_epochs=30, knn_train_per_class=100, knn_val_per_class=50,
        ),
        "04_supervised_baseline": dict(
            backbones=_GPU_TRAIN["backbones"], image_size=224, main_backbone="vit_s16", other_seeds=[0, 1, 2],
            epochs=100, batch_size=256, warmup_epochs=10.0,
        ),
        "05_attention_maps": dict(
            main_backbone="vit_s16", backbones=_GPU_TRAIN["backbones"], other_seeds=[0, 1, 2], image_size=224
        ),
        "06_embeddings": dict(backbones=_GPU_TRAIN["backbones"], main_backbone="vit_s16", other_seeds=[0, 1, 2],
                              image_size=224),
        "07_segmentation": dict(
            dataset="cocostuff27", main_backbone="vit_s16", backbones=_GPU_TRAIN["backbones"], other_seeds=[0, 1, 2],
            image_size=224, input_size=[224, 224], max_train=5000, epochs=20, lrs=[1e-3, 3e-3], patience=8,
            label_stride=2,
        ),
        "08_findings": {},
    },
}


def model_runs(backbones: list[str], main_backbone: str, seeds: list[int],
               other_seeds: list[int]) -> list[tuple[str, int]]:
    """The (backbone, seed) grid of the training and analysis chapters: every seed of ``seeds`` for the main
    backbone, the ``other_seeds`` for the others (fewer runs where the question is not asked). Here, below every
    layer that needs it (the chapters through ``rtsseg.experiments``, ``rtsseg.seg.chapter``), so it is written
    once."""
    return [(b, s) for b in backbones for s in (seeds if b == main_backbone else other_seeds)]


def step(name: str) -> Step:
    for s in STEPS:
        if s.name == name or s.name.split("_", 1)[0] == name:
            return s
    raise KeyError(f"unknown step {name!r}; steps: {[s.name for s in STEPS]}")


def step_params(profile: str, name: str) -> dict:
    if profile not in PROFILES:
        raise KeyError(f"unknown profile {profile!r}; profiles: {sorted(PROFILES)}")
    return {"profile": profile, **PROFILES[profile][name]}


# ---- where things go -------------------------------------------------------------------------------

def executed_notebook(profile: str, name: str) -> Path:
    """Executed notebooks render in the book: ``book/<profile>/<step>.ipynb`` (smoke is git-ignored)."""
    return BOOK / profile / f"{name}.ipynb"


def run_dir(profile: str, *parts: str) -> Path:
    """Checkpoints and caches of a profile: ``runs/<profile>/...`` (git-ignored)."""
    return runs_root() / profile / Path(*parts) if parts else runs_root() / profile
