"""``rtsseg evaluate``: score a trained segmenter (backbone + decoder checkpoint) on a folder, print JSON.

    rtsseg evaluate --checkpoint runs/cpu/segmentation/.../segmenter.pt --data /path/to/CamVid --split val

``--data`` is the data set's own folder (the ``CamVid`` folder with ``train/ trainannot/ ...``, or the
``cocostuff`` folder with ``images/ annotations/``), or a data root holding ``camvid/`` / ``cocostuff/``.
Images are resized to the checkpoint's network input; labels are scored at their own resolution (logits
upsampled, one confusion matrix over the split, void ignored) as in training. The JSON holds mIoU, per-class
IoU, pixel accuracy (fractions in [0, 1]), the number of images and the checkpoint's config.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

DATASETS = ("camvid", "cocostuff27", "cocostuff171")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rtsseg evaluate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="segmenter.pt (backbone + decoder) from the segmentation step")
    p.add_argument("--data", required=True, help="the data set folder (CamVid/ or cocostuff/) or a data root above it")
    p.add_argument("--split", required=True, help="camvid: train | val | test; cocostuff: train2017 | val2017")
    p.add_argument("--dataset", default="camvid", choices=DATASETS)
    p.add_argument("--backbone", default=None, help="refuse checkpoints of any other backbone (registry name)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cpu")
    return p


def _dataset(name: str, root: Path, split: str, input_size):
    from rtsseg.data.transforms import ImageOnlyResize

    transform = ImageOnlyResize(tuple(input_size)) if input_size else None
    if name == "camvid":
        from rtsseg.data.camvid import CLASS_NAMES, SPLITS, CamVid

        if split not in SPLITS:
            raise ValueError(f"--split {split!r}: CamVid splits are {SPLITS}")
        if not (root / f"{split}.txt").is_file() and not (root / split).is_dir() and (root / "camvid").is_dir():
            root = root / "camvid"  # a data root above the CamVid folder
        return CamVid(root, split=split, transform=transform), list(CLASS_NAMES)
    from rtsseg.data.cocostuff import COCOStuff

    if not (root / "images").is_dir() and (root / "cocostuff").is_dir():
        root = root / "cocostuff"
    ds = COCOStuff(root, split, coarse=name == "cocostuff27", transform=transform)
    return ds, list(ds.class_names)


def evaluate(checkpoint: str, data: str, split: str, dataset: str = "camvid", backbone: str | None = None,
             batch_size: int = 8, device: str = "cpu") -> dict:
    """The JSON-able result of ``rtsseg evaluate`` (see the module docstring)."""
    from torch.utils.data import DataLoader

    from rtsseg.seg.data import collate_masks_as_list
    from rtsseg.seg.probe import evaluate_segmentation
    from rtsseg.seg.train import load_segmenter

    # The device is checked before the checkpoint is read: an unknown string or a GPU this machine lacks would
    # otherwise end in torch's traceback after the backbone was built.
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"--device {device}: not a device. Fix: --device cpu, --device cuda or --device cuda:N"
                         ) from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"--device {device}: this machine has no CUDA GPU. Fix: --device cpu")
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"--device {device}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}. "
                             f"Fix: --device cuda:0")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"--device {device}: this machine has no Apple MPS GPU. Fix: --device cpu")
    elif dev.type != "cpu":
        raise ValueError(f"--device {device}: evaluation runs on cpu, cuda or mps. Fix: --device cpu")

    model, config = load_segmenter(checkpoint, expect_backbone=backbone)
    ds, names = _dataset(dataset, Path(data), split, config.get("input_size"))
    k = config["decoder"]["num_classes"]
    if k != len(names):
        raise ValueError(f"{checkpoint} predicts {k} classes ({config.get('dataset', '?')}), "
                         f"{dataset} has {len(names)}: pass the --dataset the decoder was trained on")
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate_masks_as_list)
    scores = evaluate_segmentation(model, loader, k, device=device, progress=False)

    def num(x: float):
        return None if math.isnan(x) else x

    return {"mIoU": num(scores.miou), "per_class_IoU": {n: num(v) for n, v in zip(names, scores.iou)},
            "pixel_accuracy": num(scores.pixel_accuracy), "num_images": len(ds), "dataset": dataset,
            "split": split, "data": str(data), "checkpoint": str(checkpoint), "config": config}


def main(argv: list[str] | None = None) -> int:
    """Print the JSON on stdout (exit 0), or one line ``rtsseg evaluate: error: ...`` on stderr (exit 2)."""
    from rtsseg.errors import DataError

    args = build_parser().parse_args(argv)
    try:
        with torch.inference_mode():
            result = evaluate(args.checkpoint, args.data, args.split, args.dataset, args.backbone,
                              args.batch_size, args.device)
    except (DataError, FileNotFoundError, ValueError, KeyError) as err:
        msg = " ".join(str(err).split())
        print(f"rtsseg evaluate: error: {msg}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
