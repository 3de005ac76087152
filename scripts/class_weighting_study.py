#!/usr/bin/env python3
"""Chapter 7's class weighting, chosen on the held-out block: unweighted vs median-frequency cross-entropy.

Why: in the cpu book every thing class (pole, sign, car, pedestrian, bicyclist) has IoU 0 for every decoder.
At 96x128 px a thing is about a token, and the unweighted loss leaves the small classes to the stuff classes.
SegNet (Badrinarayanan et al. 2017) trains on CamVid with median frequency balancing
(:func:`rtsseg.seg.metrics.median_frequency_weights`). This script fits the chapter's decoders both ways on the
same cached backbone outputs. It scores them on the held-out block, which lies at least ``min_gap_frames`` from
every val frame, so the choice never sees val. It prints held-out mIoU and things mIoU per decoder and weighting.

    .venv/bin/python scripts/class_weighting_study.py --inits random "barlow twins" --seeds 0 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--profile", default="cpu", help="runs/<profile>/ for trained inits and the output cache")
    p.add_argument("--backbone", default="vit_small64")
    p.add_argument("--inits", nargs="+", default=["random", "barlow twins"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--decoders", nargs="+", default=["linear", "control", "attn_all"])
    p.add_argument("--weightings", nargs="+", default=["none", "median_frequency"])
    p.add_argument("--input-size", type=int, nargs=2, default=[96, 128])
    p.add_argument("--max-train", type=int, default=96)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = p.parse_args(argv)

    from rtsseg.config import data_root
    from rtsseg.data.camvid import THINGS
    from rtsseg.experiments import load_backbone
    from rtsseg.profiles import run_dir
    from rtsseg.seg.experiment import backbone_stores, fit_decoder, split_datasets
    from rtsseg.seg.metrics import subset_miou
    from rtsseg.seg.train import evaluate_store

    sets, names, pre, _ = split_datasets("camvid", data_root(), args.input_size, args.max_train, None)
    rows, t0 = [], time.perf_counter()
    for init in args.inits:
        for seed in args.seeds:
            model = load_backbone(args.profile, args.backbone, init, seed, 64)
            stores = backbone_stores(model, sets, pre, run_dir(args.profile, "segmentation", "cache"))
            for weighting in args.weightings:
                for name in args.decoders:
                    _, dec = fit_decoder(name, stores, len(names), seed, [args.lr], args.epochs, label_stride=4,
                                         patience=3, things=THINGS, class_weighting=weighting)
                    held = evaluate_store(dec, stores["holdout"], len(names))  # the tuning split, not val
                    rows.append({"backbone": args.backbone, "init": init, "seed": seed, "decoder": name,
                                 "weighting": weighting, "holdout mIoU": held.miou,
                                 "holdout things mIoU": subset_miou(held.iou, THINGS),
                                 "holdout iou": [round(float(x), 4) for x in held.iou]})
                    print(f"{init:>12} seed {seed} {name:>9} {weighting:>16}: held-out mIoU {100 * held.miou:.1f}, "
                          f"things {100 * rows[-1]['holdout things mIoU']:.1f}", flush=True)
    print(f"{time.perf_counter() - t0:.0f} s in all (held-out block: {len(sets['holdout'])} frames)")
    if args.json is not None:
        args.json.write_text(json.dumps({"classes": names, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
