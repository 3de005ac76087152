"""Barlow Twins training step as a fraction of the machine's limit (model FLOPs utilisation), CPU or CUDA.

    python benchmarks/bench_mfu.py --suite cpu [--threads 2] [--json auto]
    python benchmarks/bench_mfu.py --suite gpu --device cuda [--json auto]      # < 3 min on an H100
    python benchmarks/bench_mfu.py --suite cpu --quick                          # smoke check

In one process, for the device:
  peaks      best-of-reps TFLOP/s of a square matrix product (``--peak-size``, 4096 on CPU, 8192 on CUDA)
             in bf16 and in fp32 (on CUDA fp32 means full fp32: TF32 is switched off while measuring it).
  ours       per backbone: ``rtsseg.ssl.model.BarlowTwins`` (a BatchNorm-free backbone runs once on both
             views concatenated, a BatchNorm one once per view; projector; ``rtsseg.ssl.loss.BarlowTwinsLoss``
             in fp32) -> backward -> LARS step, under ``torch.autocast(dtype=bf16)`` (``--amp none`` for fp32),
             on views made by ``BarlowTwinsAugment`` from a uint8 batch on the device. Model FLOPs of one
             step (forward + backward) are counted with ``torch.utils.flop_counter.FlopCounterMode`` (attention
             through the math backend so that it is counted as matrix products); achieved TFLOP/s = FLOPs /
             model-step time (augmentation excluded; its time is reported as ``aug_s``), and its fraction of
             the bf16 and fp32 peaks. images/s = images per step (each seen as two views) / full-step time.
  reference  today's plain fp32 step: same backbone weights + projector as an ``nn.Sequential``, one view at a
             time, ``lightly.loss.BarlowTwinsLoss`` (an inline copy of its formula if lightly is absent),
             per-image PIL/torchvision transforms (JPEG decode, RandomResizedCrop bicubic, flip, ColorJitter,
             grayscale, blur, solarize) in a DataLoader -> LARS; ratio ours / reference in images/s.

Timing: ``--warmup`` untimed steps, then ``--steps`` timed steps, each timed on its own (CUDA: synchronised);
the reported step time is the median (``best`` is kept too). The machine may be shared: compare ratios
measured in the same run. Results: printed table and, with ``--json``, a JSON file
(``--json auto`` -> ``benchmarks/results/<suite>_<device-name>.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

RESULTS = Path(__file__).resolve().parent / "results"

# Official Barlow Twins (Zbontar et al. 2021, facebookresearch/barlowtwins): ResNet-50, batch 2048 on 32 V100s,
# about 132 images/s per V100 (1000 epochs of ImageNet in ~124 h); the anchor our GPU figures are compared with.
OFFICIAL_ANCHOR = {"backbone": "resnet50", "image_size": 224, "images_per_s_per_gpu": 132, "gpu": "V100",
                   "source": "facebookresearch/barlowtwins README / paper (batch 2048, 32 V100)"}


@dataclass(frozen=True)
class Case:
    """One benchmarked backbone: registry name, input size and builder kwargs."""

    label: str
    backbone: str
    image_size: int
    kwargs: dict = field(default_factory=dict)


SUITES: dict[str, list[Case]] = {
    "cpu": [
        Case("vit_small64", "vit_small64", 64),
        Case("swin_small64", "swin_small64", 64),
        Case("botnet_small", "botnet_small", 64),
        Case("vit_s8@64", "vit_s8", 64, {"img_size": 64}),
    ],
    "gpu": [
        Case("resnet50@224", "resnet50", 224),
        Case("botnet50@224", "botnet50", 224, {"img_size": 224}),
        Case("swin_t@224", "swin_t", 224, {"img_size": 224}),
        Case("vit_s16@224", "vit_s16", 224, {"img_size": 224}),
        Case("vit_s8@64", "vit_s8", 64, {"img_size": 64}),
        Case("swin_small64", "swin_small64", 64),
        Case("botnet_small", "botnet_small", 64),
    ],
}
# per-suite defaults: batch (images per step, each seen as two views) and projector widths as the profiles use
SUITE_DEFAULTS = {
    "cpu": dict(batch_size=64, projector_dims=(1024, 1024, 1024), steps=6, warmup=2, ref_steps=3),
    "gpu": dict(batch_size=128, projector_dims=(8192, 8192, 8192), steps=10, warmup=3, ref_steps=4),
}
QUICK = dict(batch_size=8, projector_dims=(256, 256, 256), steps=1, warmup=1, ref_steps=1, peak_size=512, peak_reps=2)


# ----------------------------------------------------------------------------------------------- helpers
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    """A file-name-safe name of the device: the GPU's name, or the CPU's model name."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or "cpu"
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or device.type


def cpu_bf16_flags() -> dict[str, bool]:
    """Which bf16 matrix units /proc/cpuinfo lists. Only AMX makes bf16 products faster than fp32 here:
    measured on a VM with avx512_bf16 but no amx_bf16, a bf16 2048^2 product ran at 0.52x the fp32 one."""
    flags = ""
    with contextlib.suppress(OSError):
        flags = Path("/proc/cpuinfo").read_text()
    return {"amx_bf16": "amx_bf16" in flags, "avx512_bf16": "avx512_bf16" in flags,
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int, reps: int, timer=time.perf_counter) -> float:
    """Best-of-``reps`` TFLOP/s of a [size, size] @ [size, size] product in ``dtype`` (fp32: no TF32).
    ``timer``: wall clock by default; ``time.process_time`` gives CPU seconds (one thread, loaded machine)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    old_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        a @ b  # warm-up
        sync(device)
        best = float("inf")
        for _ in range(reps):
            t0 = timer()
            a @ b
            sync(device)
            best = min(best, timer() - t0)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old_tf32
    return 2 * size**3 / best / 1e12


def synthetic_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """uint8 [n, 3, size, size]: smooth random colour fields (low-frequency noise, upsampled), JPEG-friendly."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=g)
    x = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    x = x + 0.05 * torch.randn(n, 3, size, size, generator=g)
    return (x.clamp(0, 1) * 255).to(torch.uint8)


def source_images(n: int, image_size: int, data_root: str | None) -> tuple[torch.Tensor, str]:
    """The uint8 training images: Tiny-ImageNet (64 px) when it is there and ``image_size <= 64``, else synthetic
    (``image_size + image_size // 7`` px, so that crops are taken from a larger picture as in ImageNet)."""
    if image_size <= 64:
        with contextlib.suppress(Exception):
            from rtsseg.config import data_root as default_root, runs_root
            from rtsseg.data.tinyimagenet import load_tensors, tinyimagenet_root

            root = tinyimagenet_root(default_root(data_root))
            images = load_tensors(root, "train", max_per_class=max(1, n // 200 + 1), cache_dir=runs_root() / "cache",
                                  progress=False).images
            if len(images) >= n:
                return images[:n], "tinyimagenet"
    return synthetic_images(n, image_size + image_size // 7), "synthetic"


def build_backbone(case: Case) -> nn.Module:
    from rtsseg.ssl.train import build_backbone as build

    if not case.kwargs:
        return build(case.backbone)
    from rtsseg.models import build_backbone as build_model

    return build_model(case.backbone, **case.kwargs)


def lars(model: nn.Module) -> torch.optim.Optimizer:
    """The trainer's optimiser (LARS, biases and norms excluded from adaptation), with a small fixed lr."""
    from rtsseg.ssl.lars import LARS, lars_param_groups, set_lr

    opt = LARS(lars_param_groups(model, 1e-6), lr=0.0)
    set_lr(opt, 0.05, 0.0012)
    return opt


def has_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


# ---------------------------------------------------------------------------------------------- ours
@dataclass
class StepSetup:
    """Everything one of our training steps needs, built by :func:`setup_ours`."""

    model: nn.Module  # BarlowTwins (maybe compiled)
    module: nn.Module  # the uncompiled BarlowTwins
    opt: torch.optim.Optimizer
    aug: object
    images: torch.Tensor  # uint8 [N, 3, H, W] on the device
    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool
    batch_size: int


def setup_ours(case: Case, batch_size: int, projector_dims, device: torch.device, amp: str = "bf16",
               compile: bool = False, channels_last: bool = False, images: torch.Tensor | None = None,
               seed: int = 0, backbone: nn.Module | None = None) -> StepSetup:
    """Build our step for ``case``; ``channels_last`` applies to BatchNorm (conv) backbones only."""
    from rtsseg.ssl.augment import BarlowTwinsAugment
    from rtsseg.ssl.model import BarlowTwins

    torch.manual_seed(seed)
    bt = BarlowTwins(backbone if backbone is not None else build_backbone(case), tuple(projector_dims)).to(device)
    cl = channels_last and has_batchnorm(bt.backbone)
    if cl:
        bt = bt.to(memory_format=torch.channels_last)
    opt = lars(bt)
    model = torch.compile(bt) if compile else bt
    if images is None:
        images, _ = source_images(max(4 * batch_size, 64), case.image_size, None)
    aug = BarlowTwinsAugment(case.image_size, bt.backbone.mean, bt.backbone.std)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[amp]
    return StepSetup(model, bt, opt, aug, images.to(device), device, amp_dtype, cl, batch_size)


def make_views(s: StepSetup, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.randint(0, len(s.images), (s.batch_size,), generator=gen)
    v1, v2 = s.aug(s.images[idx.to(s.images.device)], generator=gen)  # [n, 3, S, S] each, float
    if s.channels_last:
        v1, v2 = v1.contiguous(memory_format=torch.channels_last), v2.contiguous(memory_format=torch.channels_last)
    return v1, v2


def model_step(s: StepSetup, v1: torch.Tensor, v2: torch.Tensor, model: nn.Module | None = None) -> torch.Tensor:
    """Forward (autocast), backward, LARS step: the trainer's step without the scaler / logging."""
    model = model or s.model
    with torch.autocast(s.device.type, dtype=s.amp_dtype or torch.float32, enabled=s.amp_dtype is not None):
        loss = model(v1, v2)["loss"]
    s.opt.zero_grad(set_to_none=True)
    loss.backward()
    s.opt.step()
    return loss.detach()


def count_step_flops(s: StepSetup, v1: torch.Tensor, v2: torch.Tensor) -> int:
    """Model FLOPs of one step (forward + backward), counted on the uncompiled module; attention through the
    math backend so that its products are counted on every device. The optimiser step is not counted
    (elementwise); this step does update the weights once."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter:
        model_step(s, v1, v2, model=s.module)
    sync(s.device)
    return int(counter.get_total_flops())


def time_ours(s: StepSetup, steps: int, warmup: int, seed: int = 0) -> dict:
    """Per-step times (s) of augmentation and model step after ``warmup`` untimed steps; first-step time too
    (it holds the compilation when compiled)."""
    gen = torch.Generator().manual_seed(seed)
    aug_t, step_t, first = [], [], None
    for i in range(warmup + steps):
        sync(s.device)
        t0 = time.perf_counter()
        v1, v2 = make_views(s, gen)
        sync(s.device)
        t1 = time.perf_counter()
        loss = model_step(s, v1, v2)
        sync(s.device)
        t2 = time.perf_counter()
        if i == 0:
            first = t2 - t1
        if i >= warmup:
            aug_t.append(t1 - t0)
            step_t.append(t2 - t1)
    if not torch.isfinite(loss):
        raise RuntimeError(f"non-finite loss {loss.item()} in the benchmark step")
    return {"aug_s": statistics.median(aug_t), "step_s": statistics.median(step_t), "step_best_s": min(step_t),
            "first_step_s": first, "loss": float(loss)}


# ----------------------------------------------------------------------------------------- reference
class PilPairs(torch.utils.data.Dataset):
    """Per-image reference data: JPEG bytes (encoded once) -> PIL decode -> two torchvision pipelines with the
    official parameters -> (view1, view2) float tensors."""

    def __init__(self, images: torch.Tensor, size: int, mean, std) -> None:
        from PIL import Image
        from torchvision import transforms as T

        self.jpegs = []
        for img in images:
            buf = io.BytesIO()
            Image.fromarray(img.permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=95)
            self.jpegs.append(buf.getvalue())

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
        return len(self.jpegs)

    def __getitem__(self, i: int):
        from PIL import Image

        image = Image.open(io.BytesIO(self.jpegs[i])).convert("RGB")
        return self.t1(image), self.t2(image)


class PlainBarlowTwinsLoss(nn.Module):
    """lightly's ``BarlowTwinsLoss`` formula (used when lightly is not installed): ``F.batch_norm`` in training
    mode without affine or running statistics (biased variance, eps 1e-5), C = z1n^T z2n / N,
    sum (1 - diag)^2 + lambda * sum offdiag^2."""

    def __init__(self, lambda_param: float = 0.0051) -> None:
        super().__init__()
        self.lambda_param = lambda_param

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        n = z_a.shape[0]
        z_a = nn.functional.batch_norm(z_a, None, None, training=True)  # [n, D]
        z_b = nn.functional.batch_norm(z_b, None, None, training=True)
        c = z_a.T @ z_b / n
        on = (torch.diagonal(c) - 1).pow(2).sum()
        off = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
        return on + self.lambda_param * off


def reference_loss() -> tuple[nn.Module, str]:
    try:
        from lightly.loss import BarlowTwinsLoss

        return BarlowTwinsLoss(lambda_param=0.0051), "lightly"
    except ImportError:
        return PlainBarlowTwinsLoss(0.0051), "inline copy of lightly's formula (lightly not installed)"


def time_reference(case: Case, batch_size: int, projector_dims, device: torch.device, images: torch.Tensor,
                   steps: int, warmup: int, workers: int, backbone: nn.Module | None = None) -> dict:
    """Today's plain fp32 step; per-step time includes waiting for the DataLoader (its share: ``wait_s``)."""
    from rtsseg.ssl.projector import Projector

    torch.manual_seed(0)
    bb = backbone if backbone is not None else build_backbone(case)
    model = nn.Sequential(bb, Projector(bb.embed_dim, tuple(projector_dims))).to(device)
    opt = lars(model)
    loss_fn, loss_name = reference_loss()
    dataset = PilPairs(images, case.image_size, bb.mean, bb.std)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         drop_last=True, persistent_workers=False,
                                         pin_memory=device.type == "cuda")
    it = iter(loader)
    wait_t, step_t = [], []
    try:
        for i in range(warmup + steps):
            sync(device)
            t0 = time.perf_counter()
            try:
                v1, v2 = next(it)
            except StopIteration:
                it = iter(loader)
                v1, v2 = next(it)
            v1, v2 = v1.to(device, non_blocking=True), v2.to(device, non_blocking=True)
            t1 = time.perf_counter()
            loss = loss_fn(model(v1), model(v2))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sync(device)
            t2 = time.perf_counter()
            if i >= warmup:
                wait_t.append(t1 - t0)
                step_t.append(t2 - t0)
    finally:
        del it
    return {"step_s": statistics.median(step_t), "step_best_s": min(step_t), "wait_s": statistics.median(wait_t),
            "loss": float(loss.detach()), "loss_impl": loss_name, "workers": workers}


# ----------------------------------------------------------------------------------------------- run
def bench_case(case: Case, args, device: torch.device, peaks: dict) -> dict:
    batch = args.batch_size
    n_images = max(4 * batch, 64) if not args.quick else 2 * batch
    images, source = source_images(n_images, case.image_size, args.data_root)
    row: dict = {"label": case.label, "backbone": case.backbone, "image_size": case.image_size,
                 "batch_size": batch, "projector_dims": list(args.projector_dims), "data": source, "amp": args.amp,
                 "compile": args.compile, "channels_last": args.channels_last}
    s = setup_ours(case, batch, args.projector_dims, device, amp=args.amp, compile=args.compile,
                   channels_last=args.channels_last, images=images)
    row["params_M"] = sum(p.numel() for p in s.module.backbone.parameters()) / 1e6
    row["concat_views"] = bool(s.module.concat_views)
    row["channels_last_applied"] = s.channels_last
    v1, v2 = make_views(s, torch.Generator().manual_seed(123))
    row["flops_per_step"] = count_step_flops(s, v1, v2)
    row["gflops_per_image"] = row["flops_per_step"] / batch / 1e9
    t = time_ours(s, args.steps, args.warmup)
    row.update({f"ours_{k}": v for k, v in t.items()})
    full = t["aug_s"] + t["step_s"]
    row["ours_images_per_s"] = batch / full
    row["achieved_tflops"] = row["flops_per_step"] / t["step_s"] / 1e12
    row["achieved_tflops_best"] = row["flops_per_step"] / t["step_best_s"] / 1e12
    row["frac_bf16_peak"] = row["achieved_tflops"] / peaks["bf16_tflops"]
    row["frac_fp32_peak"] = row["achieved_tflops"] / peaks["fp32_tflops"]
    del s
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if args.reference:
        r = time_reference(case, batch, args.projector_dims, device, images, args.ref_steps, 1 if not args.quick else 0,
                           args.workers)
        row.update({f"ref_{k}": v for k, v in r.items()})
        row["ref_images_per_s"] = batch / r["step_s"]
        row["ratio_ours_over_ref"] = row["ours_images_per_s"] / row["ref_images_per_s"]
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


def print_row(row: dict) -> None:
    ref = (f" | ref {row['ref_images_per_s']:7.1f} img/s  x{row['ratio_ours_over_ref']:.2f}"
           if "ref_images_per_s" in row else "")
    print(f"{row['label']:<14} {row['gflops_per_image']:8.2f} GF/img {row['achieved_tflops']:7.3f} TF/s "
          f"{100 * row['frac_bf16_peak']:5.1f}% bf16pk {100 * row['frac_fp32_peak']:6.1f}% fp32pk "
          f"{row['ours_images_per_s']:8.1f} img/s (aug {1e3 * row['ours_aug_s']:.0f} ms, step "
          f"{1e3 * row['ours_step_s']:.0f} ms, 1st {row['ours_first_step_s']:.1f} s){ref}", flush=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", choices=sorted(SUITES), default="cpu")
    p.add_argument("--backbones", nargs="+", default=None, help="labels of the suite to run (default: all)")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda for --suite gpu when available)")
    p.add_argument("--batch-size", type=int, default=None, help="images per step (each as two views)")
    p.add_argument("--projector-dims", type=int, nargs="+", default=None)
    p.add_argument("--steps", type=int, default=None, help="timed steps")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first")
    p.add_argument("--ref-steps", type=int, default=None, help="timed steps of the reference")
    p.add_argument("--amp", choices=["auto", "bf16", "fp16", "none"], default="auto",
                   help="auto: what the trainers use here (rtsseg.precision: bf16 on CUDA and AMX CPUs, else fp32)")
    p.add_argument("--compile", action="store_true", help="torch.compile (inductor) our model")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels-last memory for conv (BatchNorm) backbones (default: on for CUDA, as the trainer)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (intra-op)")
    p.add_argument("--interop-threads", type=int, default=None, help="torch.set_num_interop_threads")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers of the reference (default: cores)")
    p.add_argument("--no-reference", dest="reference", action="store_false")
    p.add_argument("--peak-size", type=int, default=None)
    p.add_argument("--peak-reps", type=int, default=5)
    p.add_argument("--data-root", default=None)
    p.add_argument("--quick", action="store_true", help="smoke check: tiny batch, 1 step, small peaks")
    p.add_argument("--json", default=None, help="output file, or 'auto' for benchmarks/results/<suite>_<device>.json")
    return p


def run(args) -> dict:
    """Run the benchmark described by parsed ``args``; returns the result dict (also written with --json)."""
    import os

    defaults = dict(SUITE_DEFAULTS[args.suite])
    if args.quick:
        defaults.update(QUICK)
    for key in ("batch_size", "projector_dims", "steps", "warmup", "ref_steps"):
        if getattr(args, key) is None:
            setattr(args, key, defaults[key])
    if args.interop_threads:
        with contextlib.suppress(RuntimeError):  # only before any parallel work
            torch.set_num_interop_threads(args.interop_threads)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if args.suite == "gpu" and torch.cuda.is_available() else "cpu"))
    if args.amp == "auto":
        from rtsseg.precision import autocast_dtype

        args.amp = "bf16" if autocast_dtype("auto", device) is not None else "none"
    if args.channels_last is None:
        args.channels_last = device.type == "cuda"
    if args.workers is None:
        args.workers = min(8, os.cpu_count() or 1) if device.type == "cuda" else 2
    peak_size = args.peak_size or (defaults.get("peak_size") or (8192 if device.type == "cuda" else 4096))
    reps = defaults.get("peak_reps", args.peak_reps) if args.quick else args.peak_reps
    peaks = {"size": peak_size, "reps": reps,
             "bf16_tflops": matmul_peak(device, torch.bfloat16, peak_size, reps),
             "fp32_tflops": matmul_peak(device, torch.float32, peak_size, reps)}
    cases = SUITES[args.suite]
    if args.backbones:
        unknown = set(args.backbones) - {c.label for c in cases}
        if unknown:
            raise SystemExit(f"--backbones {sorted(unknown)} not in suite {args.suite!r}: {[c.label for c in cases]}")
        cases = [c for c in cases if c.label in args.backbones]
    meta = {"suite": args.suite, "device": str(device), "device_name": device_name(device),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(), "cpu_bf16": cpu_bf16_flags(),
            "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "time": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": args.quick, "peaks": peaks,
            "official_anchor": OFFICIAL_ANCHOR}
    with contextlib.suppress(ImportError):
        import timm
        meta["timm"] = timm.__version__
    print(f"{meta['device_name']} ({device}), torch {torch.__version__}, {meta['threads']} threads, load {meta['load_avg']}")
    print(f"matmul peak {peak_size}^2: bf16 {peaks['bf16_tflops']:.3f} TFLOP/s, fp32 {peaks['fp32_tflops']:.3f} TFLOP/s "
          f"(x{peaks['bf16_tflops'] / peaks['fp32_tflops']:.1f})", flush=True)
    if device.type == "cpu" and peaks["bf16_tflops"] < peaks["fp32_tflops"]:
        print(f"WARNING: bf16 products are slower than fp32 on this CPU ({meta['cpu_bf16']}): bf16 autocast "
              f"would slow training down here", flush=True)
    out = None
    if args.json:
        out = (RESULTS / f"{args.suite}_{meta['device_name']}{'_quick' if args.quick else ''}.json"
               if args.json == "auto" else Path(args.json))
        out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    result = {"meta": meta, "args": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()},
              "rows": rows}
    for case in cases:
        rows.append(bench_case(case, args, device, peaks))
        print_row(rows[-1])
        if out is not None:  # after every backbone: a run stopped at its time cap keeps what it measured
            out.write_text(json.dumps(result, indent=2))
    for row in rows:
        if row["backbone"] == OFFICIAL_ANCHOR["backbone"] and row["image_size"] == OFFICIAL_ANCHOR["image_size"]:
            row["ratio_over_official_v100"] = row["ours_images_per_s"] / OFFICIAL_ANCHOR["images_per_s_per_gpu"]
            print(f"{row['label']}: {row['ours_images_per_s']:.0f} img/s = x{row['ratio_over_official_v100']:.2f} the "
                  f"official {OFFICIAL_ANCHOR['images_per_s_per_gpu']} img/s per V100")
    if out is not None:
        out.write_text(json.dumps(result, indent=2))
        print(f"wrote {out}")
    return result


def main(argv: list[str] | None = None) -> dict:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
