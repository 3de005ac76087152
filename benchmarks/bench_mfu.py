"""Barlow Twins training step as a fraction of the machine's limit (model FLOPs utilisation), CPU or CUDA.

    python benchmarks/bench_mfu.py --suite cpu [--threads 2] [--json auto]
    python benchmarks/bench_mfu.py --suite gpu --device cuda [--json auto]      # < 3 min on an H100
    python benchmarks/bench_mfu.py --suite cpu --quick                          # smoke check

In one process, for the device:
  peaks      best-of-reps TFLOP/s of a square matrix product (``--peak-size``, 4096 on CPU, 8192 on CUDA)
             in bf16 and in fp32 (on CUDA fp32 means full fp32: TF32 is switched off while measuring it); a
             dtype so slow that its reps would take over 20 s is measured at a halved size (recorded:
             ``peaks.bf16_size``; bf16 is emulated on an AVX2 CPU at ~0.001 TFLOP/s).
  auto       what ``amp=auto`` trains in here (``rtsseg.precision``: the CPU probe's measured bf16 speedup and
             decision, or the CUDA capability rule), in ``meta.amp_auto``; the CPU model in ``meta.cpu_model``.
  ours       per backbone: ``rtsseg.ssl.model.BarlowTwins`` (a BatchNorm-free backbone runs once on both
             views concatenated, a BatchNorm one once per view; projector; ``rtsseg.ssl.loss.BarlowTwinsLoss``
             in fp32) -> backward -> LARS step (GradScaler in fp16), under autocast in ``--amp`` (default auto,
             what the trainers use), on views made by ``BarlowTwinsAugment`` from a uint8 batch on the device.
  fp32       the same step in fp32 (``--fp32``, default on for the cpu suite; when auto is fp32 it is the
             same measurement, ``fp32_same_as_ours``). Model FLOPs of one
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


def results_stem(suite: str, device: torch.device, quick: bool = False) -> str:
    """The ``--json auto`` file name: suite, device name and, on CPU, the bf16 unit /proc/cpuinfo lists (two VMs
    with one model name, one with avx512_bf16 and one without, measure different machines and must not
    overwrite each other's results)."""
    name = device_name(device)
    if device.type == "cpu":
        flags = cpu_bf16_flags()
        name += "-amx" if flags["amx_bf16"] else "-avx512-bf16" if flags["avx512_bf16"] else ""
    return f"{suite}_{name}{'_quick' if quick else ''}"


def cpu_model() -> str | None:
    """The CPU's model name as /proc/cpuinfo gives it (what the results file is named after on CPU)."""
    from rtsseg.precision import cpu_identity

    return cpu_identity()["cpu_model"]


def auto_precision(device: torch.device) -> dict:
    """What ``amp=auto`` resolves to on ``device`` (``rtsseg.precision``) and why: on CPU the probe's record
    (speedup, source probe | cache | env, the cache file), on CUDA the capability rule."""
    from rtsseg.precision import MARGIN, autocast_dtype, cpu_decision, precision_name

    name = precision_name(autocast_dtype("auto", device))
    if device.type == "cpu":
        rec = {k: v for k, v in cpu_decision().items() if k != "cpu_flags"}
        why = (f"probe: bf16 at {rec['speedup']:.2f}x fp32, bf16 needs >= {MARGIN:.2f}x; {rec['source']}"
               if rec.get("speedup") is not None else f"not measured ({rec['source']})")
        return {**rec, "precision": name, "why": why}
    if device.type == "cuda":
        return {"precision": name, "why": "bf16 tensor cores" if name == "bf16" else "no bf16 tensor cores: fp16 + GradScaler"}
    return {"precision": name, "why": f"not measured on {device.type}"}


def cpu_bf16_flags() -> dict[str, bool]:
    """Which bf16 units /proc/cpuinfo lists, for the record: they do not decide (``rtsseg.precision`` measures),
    since no flag predicts the speed: avx512_bf16 without AMX was 0.52x fp32 on an Intel VM, 1.5-2.5x on an AMD
    EPYC."""
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


def capped_peak(device: torch.device, dtype: torch.dtype, size: int, reps: int, budget_s: float = 20.0
                ) -> tuple[float, int]:
    """:func:`matmul_peak` at ``size``, or at the largest halving of it that fits ``budget_s`` where ``dtype`` is
    slow (bf16 is emulated on an AVX2 CPU at ~0.001 TFLOP/s: one 4096^2 product would take 2.5 min). A 512^2
    product, timed once after a warm-up, predicts the cost (an fp32 4096^2 peak on 2 loaded cores is ~10 s: kept
    whole). Returns (TFLOP/s, the size measured)."""
    n0 = min(size, 512)
    a = torch.randn(n0, n0, device=device, dtype=dtype)
    a @ a
    sync(device)
    t0 = time.perf_counter()
    a @ a
    sync(device)
    estimate = (time.perf_counter() - t0) * (size / n0) ** 3 * (reps + 1)
    while size > n0 and estimate > budget_s:
        size //= 2
        estimate /= 8
    return matmul_peak(device, dtype, size, reps), size


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
    scaler: object = None  # torch.amp.GradScaler: live for fp16 (a GPU without bf16), a pass-through otherwise


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
    from rtsseg.precision import grad_scaler

    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[amp]
    return StepSetup(model, bt, opt, aug, images.to(device), device, amp_dtype, cl, batch_size,
                     grad_scaler(device, amp_dtype))


def make_views(s: StepSetup, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.randint(0, len(s.images), (s.batch_size,), generator=gen)
    v1, v2 = s.aug(s.images[idx.to(s.images.device)], generator=gen)  # [n, 3, S, S] each, float
    if s.channels_last:
        v1, v2 = v1.contiguous(memory_format=torch.channels_last), v2.contiguous(memory_format=torch.channels_last)
    return v1, v2


def model_step(s: StepSetup, v1: torch.Tensor, v2: torch.Tensor, model: nn.Module | None = None) -> torch.Tensor:
    """Forward (autocast), backward, LARS step (through the GradScaler in fp16): the trainer's step without
    logging."""
    model = model or s.model
    from rtsseg.precision import autocast

    with autocast(s.device, s.amp_dtype):  # the trainers' own context (bf16 on CPU: SDPA on its math kernel)
        loss = model(v1, v2)["loss"]
    s.opt.zero_grad(set_to_none=True)
    if s.scaler is not None and s.scaler.is_enabled():
        s.scaler.scale(loss).backward()
        s.scaler.step(s.opt)
        s.scaler.update()
    else:
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


def profile_step(s: StepSetup, top: int = 15) -> list[dict]:
    """Where one full step's time goes (augmentation included): the ``top`` operators by self time under
    ``torch.profiler`` (CPU time on CPU, device time on CUDA), with their share of the profiled total."""
    from torch.profiler import ProfilerActivity, profile

    cuda = s.device.type == "cuda"
    gen = torch.Generator().manual_seed(7)
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        v1, v2 = make_views(s, gen)
        model_step(s, v1, v2)
        sync(s.device)
    attr = "self_device_time_total" if cuda else "self_cpu_time_total"
    events = [e for e in prof.key_averages() if getattr(e, attr, 0) > 0]
    total = sum(getattr(e, attr) for e in events) or 1.0
    events.sort(key=lambda e: -getattr(e, attr))
    return [{"op": e.key, "self_ms": getattr(e, attr) / 1e3, "share": getattr(e, attr) / total, "calls": e.count}
            for e in events[:top]]


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
def time_arm(case: Case, args, device: torch.device, peaks: dict, images: torch.Tensor, amp: str,
             flops: int | None = None) -> dict:
    """Our step in precision ``amp`` (bf16 | fp16 | none): counted FLOPs (unless given), timing, TFLOP/s and the
    fractions of both peaks. Keys without prefix; :func:`bench_case` names them."""
    s = setup_ours(case, args.batch_size, args.projector_dims, device, amp=amp, compile=args.compile,
                   channels_last=args.channels_last, images=images)
    arm = {"params_M": sum(p.numel() for p in s.module.backbone.parameters()) / 1e6,
           "concat_views": bool(s.module.concat_views), "channels_last_applied": s.channels_last}
    if flops is None:
        v1, v2 = make_views(s, torch.Generator().manual_seed(123))
        flops = count_step_flops(s, v1, v2)
    arm["flops_per_step"] = flops
    t = time_ours(s, args.steps, args.warmup)
    arm.update(t)
    if getattr(args, "profile", False):
        arm["profile"] = profile_step(s)
    arm["images_per_s"] = args.batch_size / (t["aug_s"] + t["step_s"])
    arm["achieved_tflops"] = flops / t["step_s"] / 1e12
    arm["achieved_tflops_best"] = flops / t["step_best_s"] / 1e12
    arm["frac_bf16_peak"] = arm["achieved_tflops"] / peaks["bf16_tflops"]
    arm["frac_fp32_peak"] = arm["achieved_tflops"] / peaks["fp32_tflops"]
    del s
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return arm


def bench_case(case: Case, args, device: torch.device, peaks: dict) -> dict:
    """One backbone: ours in ``args.amp`` (what ``auto`` resolved to), ours in fp32 (``args.fp32``; the same
    measurement when ``args.amp`` is fp32 already) and the plain fp32 reference, all in this process.

    Keys: ``ours_*``, ``achieved_tflops``, ``frac_*_peak`` for ours in ``amp`` (``precision`` names it), ``fp32_*``
    for ours in fp32, ``ref_*`` for the reference; ``ratio_ours_over_ref``, ``ratio_ours_over_fp32``,
    ``ratio_fp32_over_ref``."""
    from rtsseg.precision import precision_name

    batch = args.batch_size
    n_images = max(4 * batch, 64) if not args.quick else 2 * batch
    images, source = source_images(n_images, case.image_size, args.data_root)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[args.amp]
    row: dict = {"label": case.label, "backbone": case.backbone, "image_size": case.image_size,
                 "batch_size": batch, "projector_dims": list(args.projector_dims), "data": source, "amp": args.amp,
                 "precision": precision_name(dtype), "compile": args.compile, "channels_last": args.channels_last}
    ours = time_arm(case, args, device, peaks, images, args.amp)
    for key in ("params_M", "concat_views", "channels_last_applied", "flops_per_step", "achieved_tflops",
                "achieved_tflops_best", "frac_bf16_peak", "frac_fp32_peak"):
        row[key] = ours.pop(key)
    row["gflops_per_image"] = row["flops_per_step"] / batch / 1e9
    row.update({f"ours_{k}": v for k, v in ours.items()})
    if args.fp32:
        same = args.amp == "none"
        fp32 = dict(ours, achieved_tflops=row["achieved_tflops"], achieved_tflops_best=row["achieved_tflops_best"],
                    frac_bf16_peak=row["frac_bf16_peak"], frac_fp32_peak=row["frac_fp32_peak"]) if same else \
            time_arm(case, args, device, peaks, images, "none", flops=row["flops_per_step"])
        for key in ("params_M", "concat_views", "channels_last_applied", "flops_per_step"):
            fp32.pop(key, None)
        row.update({f"fp32_{k}": v for k, v in fp32.items()})
        row["fp32_same_as_ours"] = same  # amp resolved to fp32: one measurement in both columns
        row["ratio_ours_over_fp32"] = row["ours_images_per_s"] / row["fp32_images_per_s"]
    if args.reference:
        r = time_reference(case, batch, args.projector_dims, device, images, args.ref_steps, 1 if not args.quick else 0,
                           args.workers)
        row.update({f"ref_{k}": v for k, v in r.items()})
        row["ref_images_per_s"] = batch / r["step_s"]
        row["ratio_ours_over_ref"] = row["ours_images_per_s"] / row["ref_images_per_s"]
        if args.fp32:
            row["ratio_fp32_over_ref"] = row["fp32_images_per_s"] / row["ref_images_per_s"]
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


def print_row(row: dict) -> None:
    ref = (f" | ref {row['ref_images_per_s']:7.1f} img/s  x{row['ratio_ours_over_ref']:.2f}"
           if "ref_images_per_s" in row else "")
    print(f"{row['label']:<14} {row.get('precision', row.get('amp', '?')):>4} {row['gflops_per_image']:8.2f} GF/img "
          f"{row['achieved_tflops']:7.3f} TF/s {100 * row['frac_bf16_peak']:6.1f}% bf16pk "
          f"{100 * row['frac_fp32_peak']:6.1f}% fp32pk {row['ours_images_per_s']:8.1f} img/s "
          f"(aug {1e3 * row['ours_aug_s']:.0f} ms, step {1e3 * row['ours_step_s']:.0f} ms, "
          f"1st {row['ours_first_step_s']:.1f} s){ref}", flush=True)
    for prefix in ("ours_", "fp32_"):
        for op in row.get(f"{prefix}profile", []) if not (prefix == "fp32_" and row.get("fp32_same_as_ours")) else []:
            print(f"{'':<14}   {prefix[:-1]:>4} {100 * op['share']:5.1f}% {op['self_ms']:9.1f} ms {op['calls']:6d}x  {op['op']}")
    if "fp32_images_per_s" in row:
        same = " (the same measurement)" if row.get("fp32_same_as_ours") else ""
        print(f"{'':<14} fp32 {'':>15} {row['fp32_achieved_tflops']:7.3f} TF/s {100 * row['fp32_frac_bf16_peak']:6.1f}% "
              f"bf16pk {100 * row['fp32_frac_fp32_peak']:6.1f}% fp32pk {row['fp32_images_per_s']:8.1f} img/s "
              f"(aug {1e3 * row['fp32_aug_s']:.0f} ms, step {1e3 * row['fp32_step_s']:.0f} ms){same}; "
              f"ours/fp32 x{row['ratio_ours_over_fp32']:.2f}", flush=True)


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
                   help="our step's precision; auto: what the trainers use here (rtsseg.precision: CUDA bf16 or fp16 "
                        "by capability, CPU bf16 where its probe measured bf16 >= 1.15x faster, else fp32)")
    p.add_argument("--fp32", action=argparse.BooleanOptionalAction, default=None,
                   help="also time our step in fp32 (default: on for --suite cpu); reused when --amp is fp32")
    p.add_argument("--compile", action="store_true", help="torch.compile (inductor) our model")
    p.add_argument("--profile", action="store_true",
                   help="also profile one step of ours per backbone (top operators by self time, in the JSON and printed)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels-last memory for conv (BatchNorm) backbones (default: on, as the trainer does on "
                        "CUDA and CPU: +21 %% for botnet_small on CPU, benchmarks/NOTES.md)")
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
    amp_auto = auto_precision(device)  # what the trainers' amp=auto trains in here, and why
    if args.amp == "auto":
        args.amp = {"bf16": "bf16", "fp16": "fp16", "fp32": "none"}[amp_auto["precision"]]
    if args.fp32 is None:
        args.fp32 = args.suite == "cpu"
    if args.channels_last is None:
        args.channels_last = True  # the trainer's default (PretrainConfig.channels_last), conv backbones only
    if args.workers is None:
        args.workers = min(8, os.cpu_count() or 1) if device.type == "cuda" else 2
    peak_size = args.peak_size or (defaults.get("peak_size") or (8192 if device.type == "cuda" else 4096))
    reps = defaults.get("peak_reps", args.peak_reps) if args.quick else args.peak_reps
    bf16_peak, bf16_size = capped_peak(device, torch.bfloat16, peak_size, reps)
    fp32_peak, fp32_size = capped_peak(device, torch.float32, peak_size, reps)
    peaks = {"size": peak_size, "reps": reps, "bf16_tflops": bf16_peak, "fp32_tflops": fp32_peak,
             "bf16_size": bf16_size, "fp32_size": fp32_size}
    cases = SUITES[args.suite]
    if args.backbones:
        unknown = set(args.backbones) - {c.label for c in cases}
        if unknown:
            raise SystemExit(f"--backbones {sorted(unknown)} not in suite {args.suite!r}: {[c.label for c in cases]}")
        cases = [c for c in cases if c.label in args.backbones]
    meta = {"suite": args.suite, "device": str(device), "device_name": device_name(device),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(), "cpu_bf16": cpu_bf16_flags(),
            "cpu_model": cpu_model(), "amp_auto": amp_auto,
            "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "time": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": args.quick, "peaks": peaks,
            "official_anchor": OFFICIAL_ANCHOR}
    with contextlib.suppress(ImportError):
        import timm
        meta["timm"] = timm.__version__
    print(f"{meta['device_name']} ({device}), torch {torch.__version__}, {meta['threads']} threads, load {meta['load_avg']}")
    print(f"matmul peak: bf16 {peaks['bf16_tflops']:.4f} TFLOP/s ({bf16_size}^2), fp32 {peaks['fp32_tflops']:.4f} TFLOP/s "
          f"({fp32_size}^2) (x{peaks['bf16_tflops'] / peaks['fp32_tflops']:.2f})", flush=True)
    print(f"amp=auto -> {amp_auto['precision']} ({amp_auto['why']})", flush=True)
    out = None
    if args.json:
        out = (RESULTS / f"{results_stem(args.suite, device, args.quick)}.json"
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
