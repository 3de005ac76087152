"""Training-step throughput of our Barlow Twins pipeline against a plain reference, in one process.

    python benchmarks/bench_bt_step.py [--backbone swin_small64] [--batch-size 64] [--steps 6] [--rounds 2]

ours       uint8 Tiny-ImageNet tensors in memory -> BarlowTwinsAugment on the whole batch (training
           device) -> rtsseg.ssl.BarlowTwins (backbone once on both views when it has no BatchNorm,
           projector per view, rtsseg BarlowTwinsLoss) -> LARS
reference  Dataset over the Tiny-ImageNet JPEGs, per-image torchvision PIL transforms with the same
           parameters (RandomResizedCrop bicubic, flip, ColorJitter p .8, grayscale p .2, GaussianBlur,
           RandomSolarize), DataLoader(num_workers=2) -> same backbone + projector, one view at a
           time -> lightly BarlowTwinsLoss -> LARS

Both use the same backbone architecture and initial weights, projector, optimiser, batch and thread
count; each round times ``--steps`` steps after one untimed warm-up step (which also starts the
reference's workers), and the rounds alternate reference / ours. Reported: steps/s and images/s of
the best round of each (the machine may be shared; the median-round ratio is printed too), their
ratio, and the data share of step time: for ours the batched augmentation, for the reference the time
the training loop waits for the DataLoader. For a BatchNorm-free backbone an ablation row runs ours
with the backbone once per view (as the reference), separating the gain of batching the two views
from the gain of the data pipeline.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T


class JpegPairs(Dataset):
    """Per-image reference: PIL decode + two torchvision pipelines -> (view1, view2) float tensors."""

    def __init__(self, files: list[Path], size: int, mean, std) -> None:
        self.files = files

        def pipeline(blur_p: float, solarize_p: float) -> T.Compose:
            kernel = max(3, int(0.1 * size) // 2 * 2 + 1)
            return T.Compose([
                T.RandomResizedCrop(size, scale=(0.08, 1.0), interpolation=T.InterpolationMode.BICUBIC),
                T.RandomHorizontalFlip(),
                T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
                T.RandomGrayscale(p=0.2),
                T.RandomApply([T.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=blur_p),
                T.RandomSolarize(128, p=solarize_p),
                T.ToTensor(),
                T.Normalize(mean, std),
            ])

        self.t1, self.t2 = pipeline(1.0, 0.0), pipeline(0.1, 0.2)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        image = Image.open(self.files[i]).convert("RGB")
        return self.t1(image), self.t2(image)


def build_reference(backbone_name: str, dims: tuple[int, ...]) -> nn.Module:
    """Backbone + projector as a plain Sequential; each view goes through it on its own."""
    from rtsseg.ssl.projector import Projector
    from rtsseg.ssl.train import build_backbone

    torch.manual_seed(0)
    backbone = build_backbone(backbone_name)
    return nn.Sequential(backbone, Projector(backbone.embed_dim, dims))


def build_ours(backbone_name: str, dims: tuple[int, ...]) -> nn.Module:
    """rtsseg.ssl.BarlowTwins: same weights; runs a BatchNorm-free backbone once on both views."""
    from rtsseg.ssl.model import BarlowTwins
    from rtsseg.ssl.train import build_backbone

    torch.manual_seed(0)
    return BarlowTwins(build_backbone(backbone_name), dims)


def optimiser(model: nn.Module) -> torch.optim.Optimizer:
    from rtsseg.ssl.lars import LARS, lars_param_groups, set_lr

    opt = LARS(lars_param_groups(model, 1e-6), lr=0.0)
    set_lr(opt, 0.05, 0.0012)
    return opt


def train_step(model, opt, loss_fn, v1, v2) -> float:
    loss = model(v1, v2)["loss"] if loss_fn is None else loss_fn(model(v1), model(v2))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def round_ours(model, opt, images: torch.Tensor, args, gen: torch.Generator) -> tuple[float, float]:
    """Time ``args.steps`` steps; returns (seconds, seconds spent in augmentation)."""
    from rtsseg.ssl.augment import BarlowTwinsAugment

    aug = BarlowTwinsAugment(args.image_size, model.backbone.mean, model.backbone.std)
    total = aug_time = 0.0
    for step in range(args.steps + 1):
        t0 = time.perf_counter()
        idx = torch.randint(0, len(images), (args.batch_size,), generator=gen)
        v1, v2 = aug(images[idx], generator=gen)
        t1 = time.perf_counter()
        train_step(model, opt, None, v1, v2)  # loss: rtsseg BarlowTwinsLoss inside the model
        if step > 0:  # step 0 is the warm-up
            total += time.perf_counter() - t0
            aug_time += t1 - t0
    return total, aug_time


def round_reference(model, opt, dataset: JpegPairs, args) -> tuple[float, float]:
    """Time ``args.steps`` steps; returns (seconds, seconds waiting for the DataLoader)."""
    from lightly.loss import BarlowTwinsLoss as LightlyBarlowTwinsLoss

    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers, drop_last=True)
    loss_fn = LightlyBarlowTwinsLoss(lambda_param=0.0051)
    it = iter(loader)
    total = wait = 0.0
    for step in range(args.steps + 1):
        t0 = time.perf_counter()
        v1, v2 = next(it)
        t1 = time.perf_counter()
        train_step(model, opt, loss_fn, v1, v2)
        if step > 0:
            total += time.perf_counter() - t0
            wait += t1 - t0
    del it  # stop the workers before the next round
    return total, wait


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="swin_small64")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--projector-dims", type=int, nargs="+", default=[1024, 1024, 1024])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the reference")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the training process")
    parser.add_argument("--per-class", type=int, default=100, help="train images per class held in memory")
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()

    from rtsseg.config import data_root, runs_root
    from rtsseg.data.tinyimagenet import load_tensors, tinyimagenet_root

    torch.set_num_threads(args.threads)
    root = tinyimagenet_root(data_root(args.data_root))
    images = load_tensors(root, "train", max_per_class=args.per_class, cache_dir=runs_root() / "cache").images
    files = sorted((root / "train").glob("*/images/*.JPEG"))
    dims = tuple(args.projector_dims)
    model_o, model_r = build_ours(args.backbone, dims), build_reference(args.backbone, dims)
    dataset = JpegPairs(files, args.image_size, model_r[0].mean, model_r[0].std)
    opt_o, opt_r = optimiser(model_o), optimiser(model_r)
    gen = torch.Generator().manual_seed(0)

    model_s = build_ours(args.backbone, dims)  # ablation: ours, but the backbone runs once per view
    model_s.concat_views = False
    opt_s = optimiser(model_s)
    ours, ref, sep = [], [], []
    for r in range(args.rounds):
        ref.append(round_reference(model_r, opt_r, dataset, args))
        ours.append(round_ours(model_o, opt_o, images, args, gen))
        if model_o.concat_views:
            sep.append(round_ours(model_s, opt_s, images, args, gen))
        print(f"round {r}: reference {args.steps / ref[-1][0]:.3f} steps/s, ours {args.steps / ours[-1][0]:.3f} steps/s"
              + (f", ours per view {args.steps / sep[-1][0]:.3f} steps/s" if sep else ""), flush=True)

    # the machine is shared: the best round is the least disturbed one; the median is shown too
    sps_o, sps_r = max(args.steps / t for t, _ in ours), max(args.steps / t for t, _ in ref)
    med_o = statistics.median(args.steps / t for t, _ in ours)
    med_r = statistics.median(args.steps / t for t, _ in ref)
    share_o = statistics.median(a / t for t, a in ours)  # median over rounds
    share_r = statistics.median(w / t for t, w in ref)
    print()
    print(f"backbone {args.backbone} @ {args.image_size} px, batch {args.batch_size}, projector {args.projector_dims}, "
          f"{args.threads} torch threads, {torch.get_num_threads()} in use, {args.rounds} rounds x {args.steps} steps")
    print(f"{'pipeline (best round)':<48}{'steps/s':>9}{'images/s':>10}{'data share':>12}")
    print(f"{'reference (PIL per image, 2 workers, lightly)':<48}{sps_r:>9.3f}{sps_r * args.batch_size:>10.1f}"
          f"{100 * share_r:>11.1f}%  (waiting for DataLoader, median round)")
    print(f"{'ours (batched tensor augment, rtsseg loss)':<48}{sps_o:>9.3f}{sps_o * args.batch_size:>10.1f}"
          f"{100 * share_o:>11.1f}%  (augmentation, median round)")
    if sep:
        sps_s = max(args.steps / t for t, _ in sep)
        share_s = statistics.median(a / t for t, a in sep)
        print(f"{'ours, backbone once per view (ablation)':<48}{sps_s:>9.3f}{sps_s * args.batch_size:>10.1f}"
              f"{100 * share_s:>11.1f}%  (augmentation, median round)")
    print(f"ratio ours / reference: {sps_o / sps_r:.2f}x (best rounds), {med_o / med_r:.2f}x (median rounds)")
    if sep:
        print(f"ratio ours per view / reference: {sps_s / sps_r:.2f}x (best rounds)")


if __name__ == "__main__":
    main()
