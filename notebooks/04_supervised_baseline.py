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
# # 3. Supervised baseline with the same budget
#
# DINO compares its attention maps with those of a *supervised* ViT {cite}`caron2021dino`. Our counterpart:
# each small backbone trained with cross-entropy on the labels of the same Tiny-ImageNet images, at the same
# resolution, for the same number of epochs and the same batch size as its Barlow Twins run (random resized
# crop and flip as augmentation, AdamW with warmup and cosine decay). The checkpoints feed chapters 4–6.

# %% tags=["parameters"]
profile = "cpu"
data_root = None  # None: $RTSSEG_DATA, else ../shared/data
backbones = ["vit_small64", "swin_small64", "botnet_small"]
seeds = [0, 1]
image_size = 64
epochs = 2
batch_size = 64
max_images_per_class = 40  # None: all train images of the subset
lr = 1e-3
weight_decay = 0.05
warmup_epochs = 0.5

# %%
import pandas as pd

from rtsseg.analysis.plots import plot_curves
from rtsseg.ssl.supervised import SupervisedConfig, train_supervised
from rtsseg.config import data_root as resolve_data_root
from rtsseg.experiments import supervised_dir
from rtsseg.report import RunRecord, notebook_params, save_results
from rtsseg.stats import mean_std

params = notebook_params(globals(), "04_supervised_baseline")
record = RunRecord("04_supervised_baseline", params)
root = resolve_data_root(data_root)

# %%
runs = {}
for backbone in backbones:
    for seed in seeds:
        cfg = SupervisedConfig(
            backbone=backbone, image_size=image_size, epochs=epochs, batch_size=batch_size, lr=lr,
            weight_decay=weight_decay, warmup_epochs=warmup_epochs, seed=seed,
            max_images_per_class=max_images_per_class, data_dir=str(root / "tiny-imagenet-200"),
            run_parent=str(supervised_dir(profile, backbone, seed)),
        )
        runs[backbone, seed] = train_supervised(cfg)
histories = {key: pd.read_csv(run / "history.csv") for key, run in runs.items()}

# %% [markdown]
# ## Training curves (train split; evaluation on val is in chapter 5)

# %%
plot_curves(histories, ["loss", "train_acc"]);

# %%
rows = []
for backbone in backbones:
    last = [histories[backbone, s].iloc[-1] for s in seeds]
    rows.append(
        {
            "backbone": backbone,
            "epochs": int(last[0]["epoch"]),
            "final train loss": mean_std([r["loss"] for r in last], decimals=2),
            "final train acc (%)": mean_std([100 * r["train_acc"] for r in last]),
            "train wall time (min)": mean_std([histories[backbone, s]["wall_s"].sum() / 60 for s in seeds]),
        }
    )
results = pd.DataFrame(rows).set_index("backbone")
save_results(profile, "supervised_train", results)
results

# %%
record.finish()
