"""Fine-tuned attention: the last backbone block(s) trained with and without the attention-supervision loss.

Why: on a frozen backbone the attention-supervision loss can only re-weight the heads; here the last
``--unfreeze-blocks`` blocks train with the decoder (:mod:`rtsseg.seg.finetune`), in two arms that differ only in
the loss (λ = ``--attention-loss-weight`` or 0): same start, seeds, batches, steps and data. Per seed: the
decoder's val mIoU and things mIoU of both arms, and the attention's object-specific excess AUROC (chapter 5's
measure, :func:`rtsseg.analysis.attention.excess_result`, on the CamVid val things frames) before and after;
then the paired differences over seeds with their t interval and verdict. Tuning as the frozen grid: the
early-stopping epoch on the held-out block of CamVid train, apart from val; the table is CamVid val.

    .venv/bin/python scripts/finetune_attention.py --seeds 0 1 2   # ~5-10 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--profile", default="cpu", help="runs/<profile>/ for trained inits and the saved models")
    p.add_argument("--data-root", default=None, help="data root holding camvid/ (default $RTSSEG_DATA or ../shared/data)")
    p.add_argument("--backbone", default="vit_small64")
    p.add_argument("--init", default="random", help="random, supervised, barlow twins, dino")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--unfreeze-blocks", type=int, default=1, help="the last n blocks train, the rest stays frozen")
    p.add_argument("--attention-loss-weight", type=float, default=0.1, help="λ of the 'attention loss' arm")
    p.add_argument("--decoder", default="attn_all", help="a decoder with propagation (attn_prop, attn_all)")
    p.add_argument("--image-size", type=int, default=64, help="the backbone's pretraining size (and the scoring crops')")
    p.add_argument("--input-size", type=int, nargs=2, default=[96, 128])
    p.add_argument("--max-train", type=int, default=96)
    p.add_argument("--max-val", type=int, default=None)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-3, help="the decoder's learning rate")
    p.add_argument("--backbone-lr-scale", type=float, default=0.1, help="unfrozen blocks: lr x this")
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--label-stride", type=int, default=4)
    p.add_argument("--embed-dim", type=int, default=64)
    p.add_argument("--fuse-dim", type=int, default=64)
    p.add_argument("--k", type=int, default=1, help="propagation steps")
    p.add_argument("--n-boot", type=int, default=500, help="bootstrap replicates of each excess score")
    p.add_argument("--save-dir", type=Path, default=None,
                   help="save each arm's model here (default runs/<profile>/segmentation/finetune)")
    p.add_argument("--out", type=Path, default=None, help="write the per-seed rows as CSV here")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import pandas as pd

    from rtsseg.analysis.attention import excess_result
    from rtsseg.attention.groundtruth import camvid_frames
    from rtsseg.config import data_root
    from rtsseg.data import camvid
    from rtsseg.experiments import load_backbone
    from rtsseg.profiles import run_dir
    from rtsseg.seg.experiment import split_datasets
    from rtsseg.seg.finetune import FinetuneConfig, finetune_pair

    root = data_root(args.data_root)
    sets, names, _, dropped = split_datasets("camvid", root, args.input_size, args.max_train, args.max_val)
    gset = camvid_frames([camvid.CamVid(camvid.camvid_root(root), "val")], args.image_size)
    print(f"fit {len(sets['fit'])}, held-out {len(sets['holdout'])}, val {len(sets['val'])} images; {dropped} train "
          f"frames dropped within the gap to val; {len(gset)} val frames with things for the attention score",
          flush=True)
    cfg = FinetuneConfig(unfreeze_blocks=args.unfreeze_blocks, decoder=args.decoder,
                         attention_loss_weight=args.attention_loss_weight, epochs=args.epochs, lr=args.lr,
                         backbone_lr_scale=args.backbone_lr_scale, batch_size=args.batch_size,
                         label_stride=args.label_stride, patience=args.patience, embed_dim=args.embed_dim,
                         fuse_dim=args.fuse_dim, k=args.k)
    save = args.save_dir or run_dir(args.profile, "segmentation", "finetune", args.backbone,
                                    args.init.replace(" ", "_"))
    t0 = time.perf_counter()
    pair = finetune_pair(lambda s: load_backbone(args.profile, args.backbone, args.init, s, args.image_size), sets,
                         len(names), args.seeds, gset, functools.partial(excess_result, n_boot=args.n_boot), cfg,
                         things=camvid.THINGS, save_dir=save, backbone_kwargs={"img_size": args.image_size},
                         checkpoint_config={"dataset": "camvid", "input_size": list(args.input_size),
                                            "class_names": names, "init": args.init},
                         log=lambda line: print(line, flush=True))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        pair.rows.to_csv(args.out, index=False)
    cols = ["mIoU", "things mIoU", "excess before", "excess after"]
    means = pair.rows.groupby("arm", sort=False)[cols].mean().mul([100, 100, 1, 1]).round(3)
    print("\nval, mean over seeds (mIoU, things mIoU in %; excess AUROC of the best head):\n" + means.to_string())
    d = pair.differences.copy()
    print(f"\npaired over seeds {args.seeds} (mIoU in fractions, excess in AUROC; 95 % t interval):\n"
          + d.set_index("quantity").round(4).to_string())
    print(f"\nmodels saved under {save}; {time.perf_counter() - t0:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
