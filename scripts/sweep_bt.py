"""λ / optimizer sweep for Barlow Twins, chosen on a validation split carved from the TRAINING data (issue 9).

Never touches Tiny-ImageNet val for the choice: every run pretrains on the first ``--train-per-class``
images of each class; the k-NN score that decides is measured with a bank of ``--bank-per-class`` of those
training images and queries from the last ``--heldout-per-class`` images of each class, which no run saw
(checked by file name). The trainer's own per-epoch k-NN monitor (on val) is logged but not used.

CPU hours: run it on a quiet machine or a GPU, not on the shared 2 cores. Example (cpu-profile scale):

    python scripts/sweep_bt.py --backbone vit_small64 --epochs 10 --lambdas 0.0051 0.02 0.05 0.1 \\
        --optimizers lars adamw --projector 1024 1024 1024 --out runs/sweep_bt

Writes ``<out>/sweep.csv`` (one row per run) and prints the best configuration per optimizer. λ is the
off-diagonal weight; the paper's 0.0051 was tuned for an 8192-wide projector (≈ 1/D scaling suggests larger
values for narrow projectors, which is what the sweep checks).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
from pathlib import Path

import torch


def heldout_split(root: Path, train_per_class: int, heldout_per_class: int, bank_per_class: int, cache_dir):
    """(bank images, bank labels, query images, query labels) from the train split only; the queries are
    images no pretraining run with ``max_images_per_class=train_per_class`` sees."""
    from rtsseg.data.tinyimagenet import TinyImageNet, load_tensors

    seen = {p.name for p in TinyImageNet(root, "train", train_per_class).files}
    full_ds = TinyImageNet(root, "train")
    full = load_tensors(root, "train", None, cache_dir)
    bank, query = [], []
    labels = full.labels
    for c in labels.unique().tolist():
        idx = (labels == c).nonzero().flatten()
        if len(idx) < train_per_class + heldout_per_class:
            raise ValueError(f"class {c} has {len(idx)} train images < {train_per_class} + {heldout_per_class}")
        bank += idx[:bank_per_class].tolist()
        query += idx[-heldout_per_class:].tolist()
    leaked = {full_ds.files[i].name for i in query} & seen
    if leaked:
        raise RuntimeError(f"{len(leaked)} held-out images are in the pretraining set, e.g. {sorted(leaked)[:3]}")
    bank, query = torch.tensor(bank), torch.tensor(query)
    return full.images[bank], labels[bank], full.images[query], labels[query], int(labels.max()) + 1


def main(argv: list[str] | None = None) -> int:
    from rtsseg.analysis.embeddings import extract_embeddings
    from rtsseg.config import data_root
    from rtsseg.data.tinyimagenet import tinyimagenet_root
    from rtsseg.experiments import cache_dir
    from rtsseg.knn import knn_accuracy
    from rtsseg.models import build_backbone
    from rtsseg.ssl.train import PretrainConfig, pretrain

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backbone", default="vit_small64")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lambdas", type=float, nargs="+", default=[0.0051, 0.02, 0.05])
    p.add_argument("--optimizers", nargs="+", default=["lars"], help="needs PretrainConfig.optimizer for != lars")
    p.add_argument("--projector", type=int, nargs="+", default=[1024, 1024, 1024])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--train-per-class", type=int, default=80)
    p.add_argument("--heldout-per-class", type=int, default=20)
    p.add_argument("--bank-per-class", type=int, default=20)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--device", default=None)
    p.add_argument("--out", default="runs/sweep_bt")
    a = p.parse_args(argv)

    fields = {f.name for f in dataclasses.fields(PretrainConfig)}
    if any(o != "lars" for o in a.optimizers) and "optimizer" not in fields:
        raise SystemExit("PretrainConfig has no `optimizer` field in this checkout (LARS only): "
                         "sweep --optimizers lars, or merge the trainer that adds it")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    root = tinyimagenet_root(data_root(None))
    cache = cache_dir()
    xb, yb, xq, yq, n_cls = heldout_split(root, a.train_per_class, a.heldout_per_class, a.bank_per_class, cache)
    print(f"held-out k-NN: bank {len(xb)} / queries {len(xq)} train images, {n_cls} classes (val untouched)")
    rows = []
    for opt, lambd, seed in itertools.product(a.optimizers, a.lambdas, a.seeds):
        run = out / f"{a.backbone}_{opt}_lambda{lambd:g}_seed{seed}"
        kw = dict(backbone=a.backbone, epochs=a.epochs, batch_size=a.batch_size, lambd=lambd, seed=seed,
                  projector_dims=tuple(a.projector), max_images_per_class=a.train_per_class,
                  image_size=a.image_size, run_parent=str(run), device=a.device, progress=False)
        if "optimizer" in fields:
            kw["optimizer"] = opt
        folder = pretrain(PretrainConfig(**kw))  # <run>/<identity>
        model = build_backbone(a.backbone, weights=folder / "checkpoint.pt", img_size=a.image_size)
        dev = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
        fb = extract_embeddings(model, xb, device=dev, progress=False)
        fq = extract_embeddings(model, xq, device=dev, progress=False)
        acc = knn_accuracy(fb, yb, fq, yq, n_cls)
        rows.append({"backbone": a.backbone, "optimizer": opt, "lambda": lambd, "seed": seed,
                     "projector": "x".join(map(str, a.projector)), "epochs": a.epochs,
                     "heldout_knn_top1": acc})
        print(rows[-1], flush=True)
        with open(out / "sweep.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    for opt in a.optimizers:
        mine = [r for r in rows if r["optimizer"] == opt]
        by_lambda = {lam: sum(r["heldout_knn_top1"] for r in mine if r["lambda"] == lam) / len(a.seeds)
                     for lam in a.lambdas}
        best = max(by_lambda, key=by_lambda.get)
        print(f"{opt}: best lambda {best:g} (held-out train k-NN {100 * by_lambda[best]:.2f} %, mean over seeds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
