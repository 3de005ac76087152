"""The decoder's ceiling: attention-aware decoder on oracle attention − same-capacity control, same frozen features.

Why: chapter 7's "attention-aware − control" on a backbone's own attention is near 0; this script shows what
the same decoder gains when the attention *does* locate the classes (:mod:`rtsseg.seg.oracle`: affinity and
maps built from the label mask at the token grid, clean and degraded at several SNRs). One frozen backbone
(default: ``vit_small64``, random init, whose features are the weakest and so leave the most to gain) per
seed; per seed the control, the attention-aware decoder on the backbone's own attention and on each oracle
level train on the same cached stages. The table: val mIoU and things mIoU, and the paired difference
``attention-aware − control`` over seeds with its t interval (``rtsseg.seg.experiment.cell_differences``).

    .venv/bin/python scripts/oracle_ceiling.py --seeds 0 1 2 --snrs inf 20 5   # ~5-10 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--profile", default="cpu", help="runs/<profile>/ for trained inits and the output cache")
    p.add_argument("--data-root", default=None, help="data root holding camvid/ (default $RTSSEG_DATA or ../shared/data)")
    p.add_argument("--backbone", default="vit_small64")
    p.add_argument("--init", default="random", help="random, supervised, barlow twins, dino")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--snrs", type=float, nargs="+", default=[math.inf, 20.0, 5.0],
                   help="oracle signal-to-noise levels (inf = the clean oracle)")
    p.add_argument("--decoder", default="attn_all", help="the attention-aware decoder compared with 'control'")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--input-size", type=int, nargs=2, default=[96, 128])
    p.add_argument("--max-train", type=int, default=96)
    p.add_argument("--max-val", type=int, default=None)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--lrs", type=float, nargs="+", default=[5e-3])
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--label-stride", type=int, default=4)
    p.add_argument("--embed-dim", type=int, default=64)
    p.add_argument("--fuse-dim", type=int, default=64)
    p.add_argument("--k", type=int, default=1, help="propagation steps")
    p.add_argument("--out", type=Path, default=None, help="write the per-run rows as CSV here")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import pandas as pd

    from rtsseg.config import data_root
    from rtsseg.data.camvid import THINGS
    from rtsseg.experiments import load_backbone
    from rtsseg.profiles import run_dir
    from rtsseg.seg.experiment import backbone_stores, cell_differences, cell_table, fit_decoder, split_datasets
    from rtsseg.seg.oracle import oracle_store, same_class_mass

    sets, names, pre, dropped = split_datasets("camvid", data_root(args.data_root), args.input_size, args.max_train,
                                               args.max_val)
    k_cls = len(names)
    print(f"fit {len(sets['fit'])}, held-out {len(sets['holdout'])}, val {len(sets['val'])} images; "
          f"{dropped} train frames dropped within the gap to val", flush=True)
    cache = run_dir(args.profile, "segmentation", "cache")
    rows, t0 = [], time.perf_counter()
    for seed in args.seeds:
        model = load_backbone(args.profile, args.backbone, args.init, seed, args.image_size)
        stores = backbone_stores(model, sets, pre, cache, args.batch_size)
        sources = [("control", "control", stores), ("backbone", args.decoder, stores)]
        for snr in args.snrs:
            o = {k: oracle_store(v, k_cls, snr, seed=seed) for k, v in stores.items()}
            sources.append((f"oracle snr={snr:g}", args.decoder, o))
        for source, name, st in sources:
            row, _ = fit_decoder(name, st, k_cls, seed, args.lrs, args.epochs, args.batch_size, 0.0,
                                 args.label_stride, args.patience, None, args.embed_dim, args.fuse_dim, args.k,
                                 things=THINGS)
            val = st["val"]
            n = len(val)
            import torch

            mass = (float("nan") if source == "control" else same_class_mass(
                torch.stack(val.affinity[:n]).float(), torch.stack(val.masks[:n]).long(),
                tuple(val.maps[0].shape[-2:]), k_cls))
            rows.append({"backbone": args.backbone, "init": args.init, "attention": source, "seed": seed,
                         "decoder": "control" if source == "control" else f"{name} | {source}",
                         "mIoU": row["mIoU"], "things mIoU": row["things mIoU"], "same-class mass": mass,
                         "lr": row["lr"], "best_epoch": row["best_epoch"], "train_s": row["train_s"]})
            print(f"seed {seed} {source:>18}: mIoU {100 * row['mIoU']:.1f}, things {100 * row['things mIoU']:.1f}, "
                  f"same-class mass {mass:.2f} ({row['train_s']:.0f} s)", flush=True)
    scores = pd.DataFrame(rows)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        scores.to_csv(args.out, index=False)
    means = (scores.groupby("attention", sort=False)[["mIoU", "things mIoU", "same-class mass"]].mean()
             .mul([100, 100, 1]).round(2))
    print("\nval scores, mean over seeds (mIoU, things mIoU in %):\n" + means.to_string())
    labels = [d for d in dict.fromkeys(scores.decoder) if d != "control"]
    tables = [cell_table(cell_differences(scores, label, "control", values=("mIoU", "things mIoU")))
              for label in labels]
    print(f"\n{args.decoder} − control, paired over seeds {args.seeds} (points, 95 % t interval):")
    print(pd.concat(tables, keys=[d.split(" | ")[1] for d in labels], names=["attention"]).to_string())
    print(f"\n{time.perf_counter() - t0:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
