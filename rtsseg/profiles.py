"""Experiment profiles: the parameters each notebook runs with, and where the pipeline writes (run paths of
the trained models and ``load_backbone``: :mod:`rtsseg.experiments`).

``smoke`` proves the path end to end in a few minutes on 2 CPU cores; ``cpu`` is the book's default run on
2 CPU cores (small backbones at 64 px); ``gpu`` is the full-size configuration for a Colab/cluster GPU.
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
        "04_supervised_baseline": dict(_SMOKE_TRAIN),
        "05_attention_maps": dict(backbones=["vit_small64"], seeds=[0], n_val_images=32, n_camvid_images=4, n_boot=100),
        "06_embeddings": dict(
            backbones=["vit_small64"], seeds=[0], train_per_class=4, val_per_class=2, tsne_classes=5
        ),
        "07_segmentation": dict(
            backbones=["vit_small64"], seeds=[0], max_train=16, max_val=8, epochs=2, input_size=[96, 128]
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
        # the probe's loss runs at the labels' 360x480: ~10 s per epoch over all 367 train images on 2 cores
        "07_segmentation": dict(
            backbones=SMALL_BACKBONES, seeds=[0, 1], input_size=[96, 128], max_train=184, epochs=5, lr=5e-3
        ),
        "08_findings": {},
    },
    "gpu": {
        "01_data": {},
        "02_pretrain_barlow_twins": dict(
            _GPU_TRAIN,
            epochs=100,
            batch_size=256,
            max_images_per_class=None,
            projector_dims=[8192, 8192, 8192],
            knn_train_per_class=100,
            knn_val_per_class=50,
            warmup_epochs=10.0,
        ),
        "03_pretrain_dino": dict(
            backbones=["vit_s16"], image_size=224, batch_size=256, max_images_per_class=None, bt_epochs=100,
            bt_projector_dims=[8192, 8192, 8192], n_local_crops=6, warmup_epochs=10.0, freeze_last_layer=1.0,
            teacher_temp=0.07, warmup_teacher_temp_epochs=30, knn_train_per_class=100, knn_val_per_class=50,
        ),
        "04_supervised_baseline": dict(
            _GPU_TRAIN, epochs=100, batch_size=256, max_images_per_class=None, warmup_epochs=10.0
        ),
        "05_attention_maps": dict(
            main_backbone="vit_s16", backbones=_GPU_TRAIN["backbones"], other_seeds=[0, 1, 2], image_size=224
        ),
        "06_embeddings": dict(backbones=_GPU_TRAIN["backbones"], seeds=[0, 1, 2], image_size=224),
        "07_segmentation": dict(
            dataset="cocostuff27", backbones=_GPU_TRAIN["backbones"], seeds=[0, 1, 2], image_size=224,
            input_size=[224, 224], max_train=5000, epochs=20,
        ),
        "08_findings": {},
    },
}


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


_MOVED = ("pretrain_dir", "supervised_dir", "cache_dir", "INITS", "load_backbone")


def __getattr__(name: str):
    # run paths and load_backbone moved to rtsseg.experiments (analysis layer); kept importable from here
    if name in _MOVED:
        from rtsseg import experiments

        return getattr(experiments, name)
    raise AttributeError(f"module 'rtsseg.profiles' has no attribute {name!r}")
