"""Size the training chapters of a profile to a wall-clock budget from one measured epoch of each trainer.

The gpu-short edition must fit a few minutes of one GPU, and how many epochs fit depends on the GPU's real
throughput (augmentation, monitors and kernel launches included), which no FLOP estimate gives reliably. So,
on the machine itself, before the chapters run, this script trains ONE epoch of each pretraining method with
the exact configuration the chapter would use (the notebook's defaults + the profile), reads the epoch's wall
time from the run's own history (``wall_s`` of epoch 1 minus epoch 0: one epoch of training plus one round of
the per-epoch monitors), and derives the epochs that fit each chapter's share of the budget:

    E_bt   = min(profile epochs, floor(share_02 / t_bt), floor(share_03 / (t_dino * F_bt / F_dino)))
    E_dino = E_bt * F_bt / F_dino          (chapter 3's own equal-FLOPs rule, from bt_epochs = E_bt)
    E_sup  = min(profile epochs, floor(share_04 / (t_sup * (n_sup + 1.3 n_control))))

where ``F`` are the counted FLOPs per image of a training step (``rtsseg.ssl.flops.step_flops``), and
chapter 4 trains ``n_sup`` supervised runs plus ``n_control`` attention-supervised ones (slower by about 1.3x:
unfused attention while recording). To keep the calibration short, each measured epoch runs on a fraction of
the training images (``--fraction``) and is scaled up by its inverse, monitors included (an overestimate: the
per-epoch monitors do not grow with the fraction). The
result is printed as JSON ``{"sets": ["02:epochs=..", ...], "measured": {...}}``: ``scripts/gpu_run.py
--calibrate`` passes the sets to the chapters as papermill parameters, so every executed chapter shows the
epochs it really ran, and the calibration itself is returned in ``timings.json``. Calibration runs go to a
throw-away runs folder; they are never reused by the chapters (their configuration differs: 1 epoch).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def step_defaults(profile: str, name: str) -> dict:
    """The parameters chapter ``name`` runs with under ``profile``: notebook defaults, then the profile's."""
    from rtsseg.params import declared_parameters, read_notebook
    from rtsseg.profiles import step, step_params

    s = step(name)
    return {**declared_parameters(read_notebook(s), s.source), **step_params(profile, s.name)}


def epoch_seconds(run: Path) -> float:
    """Wall seconds of epoch 1 (training + one round of monitors) from a run's ``history.csv``: the difference
    to the epoch-0 row where the trainer logs one (BT, DINO: monitors before training), else its own wall_s."""
    import pandas as pd

    h = pd.read_csv(run / "history.csv")
    if len(h) >= 2 and int(h["epoch"].iloc[0]) == 0:
        return float(h["wall_s"].iloc[-1] - h["wall_s"].iloc[0])
    return float(h["wall_s"].iloc[-1])


def first(value):
    return value[0] if isinstance(value, (list, tuple)) else value


def calibrate(profile: str, shares: dict[str, float], runs: Path, fraction: float = 0.5) -> dict:
    from rtsseg.config import data_root
    from rtsseg.experiments import cache_dir, family_value
    from rtsseg.report import config_from
    from rtsseg.ssl.dino_train import config_from_params, pretrain_dino
    from rtsseg.ssl.flops import step_flops
    from rtsseg.ssl.supervised import SupervisedConfig, train_supervised
    from rtsseg.ssl.train import PretrainConfig, pretrain

    root, cache = str(data_root()), str(cache_dir())
    p02, p03, p04 = (step_defaults(profile, n) for n in ("02", "03", "04"))
    backbone = p02.get("main_backbone") or first(p02["backbones"])
    per_class = max(1, round(100 * fraction))  # the subset holds 100 train images per class
    measured: dict[str, dict] = {}

    t0 = time.time()
    extra = ({"optimizer": family_value(p02["optimizer_by_family"], backbone, "optimizer_by_family")}
             if "optimizer_by_family" in p02 else {})
    bt = config_from(PretrainConfig, p02, backbone=backbone, seed=0, epochs=1, warmup_epochs=0.5, data_root=root,
                     cache_dir=cache, run_parent=str(runs / "bt"), max_images_per_class=per_class, **extra)
    measured["02"] = {"epoch_s": epoch_seconds(pretrain(bt)) / fraction, "call_s": time.time() - t0}

    t0 = time.time()
    dino = config_from_params(p03, backbone=backbone, seed=0, epochs=1, warmup_epochs=0.5,
                              warmup_teacher_temp_epochs=0, data_root=root, cache_dir=cache,
                              run_parent=str(runs / "dino"), max_images_per_class=per_class)
    measured["03"] = {"epoch_s": epoch_seconds(pretrain_dino(dino)) / fraction, "call_s": time.time() - t0}
    f_bt = step_flops(backbone, "barlow_twins", image_size=p03["image_size"],
                      projector_dims=tuple(p03["bt_projector_dims"]))["flops_per_image"]
    f_dino = step_flops(backbone, "dino", image_size=p03["image_size"], n_local_crops=p03["n_local_crops"],
                        out_dim=p03["out_dim"])["flops_per_image"]

    t0 = time.time()
    sup_backbone = p04.get("main_backbone") or first(p04["backbones"])
    sup = config_from(SupervisedConfig, p04, backbone=sup_backbone, seed=0, epochs=1, warmup_epochs=0.5,
                      data_dir=str(Path(root) / "tiny-imagenet-200"), cache_dir=cache, run_parent=str(runs / "sup"),
                      max_images_per_class=per_class)
    measured["04"] = {"epoch_s": epoch_seconds(train_supervised(sup)) / fraction, "call_s": time.time() - t0}
    others = [b for b in p04["backbones"] if b != p04.get("main_backbone")]
    n_sup = len(p04["seeds"]) + len(others) * len(p04.get("other_seeds", p04["seeds"]))
    n_control = len(p04.get("control_seeds", []))

    e_bt = min(int(p02["epochs"]), math.floor(shares["02"] / measured["02"]["epoch_s"]),
               math.floor(shares["03"] / (measured["03"]["epoch_s"] * f_bt / f_dino)))
    e_bt = max(e_bt, 1)
    e_sup = max(1, min(int(p04["epochs"]),
                       math.floor(shares["04"] / (measured["04"]["epoch_s"] * (n_sup + 1.3 * n_control)))))
    sets = [f"02:epochs={e_bt}", f"03:bt_epochs={e_bt}", f"04:epochs={e_sup}"]
    return {"backbone": backbone, "measured": measured, "flops_per_image": {"bt": f_bt, "dino": f_dino},
            "fraction": fraction, "supervised_runs": {"plain": n_sup, "control": n_control},
            "shares_s": shares, "epochs": {"02": e_bt, "03": e_bt * f_bt / f_dino, "04": e_sup}, "sets": sets}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="gpu-short")
    p.add_argument("--share", action="append", default=[], metavar="STEP=SECONDS",
                   help="budget of a training chapter, e.g. 02=120 (02, 03 and 04 are needed)")
    p.add_argument("--fraction", type=float, default=0.5, help="share of the training images a measured epoch uses")
    p.add_argument("--json", default=None, help="also write the result here")
    args = p.parse_args(argv)
    shares = {k.split("_", 1)[0]: float(v) for k, v in (s.split("=", 1) for s in args.share)}
    missing = {"02", "03", "04"} - set(shares)
    if missing:
        raise SystemExit(f"--share missing for {sorted(missing)}: e.g. --share 02=120 --share 03=120 --share 04=60")
    with tempfile.TemporaryDirectory(prefix="rtsseg-calibrate-") as tmp:
        result = calibrate(args.profile, shares, Path(tmp), args.fraction)
    text = json.dumps(result, indent=2)
    if args.json:
        Path(args.json).write_text(text)
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
