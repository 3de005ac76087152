"""A/B study of training-step knobs for one backbone, interleaved in one process (for a shared machine).

    python benchmarks/study_knobs.py --backbone vit_s8@64 --variants fp32 bf16 bf16_b128 bf16_compile
    python benchmarks/study_knobs.py --list

Each variant is a full Barlow Twins step (``bench_mfu.setup_ours`` + ``model_step``, augmentation excluded)
with its own model and optimiser; rounds alternate the variants, the best round of each is reported (the
least disturbed one; the median too), with model FLOPs counted once per variant, TFLOP/s and the fraction of
the bf16 matmul peak, which is re-measured in every round. Compiled variants report their compile time
(first step minus a later step) and the number of steps after which the compile has paid for itself.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_mfu as B  # noqa: E402


def variant_options(name: str, base_batch: int) -> dict:
    """Parse a variant name: ``fp32|bf16`` then optional ``_b<batch>``, ``_compile``, ``_cl`` (channels-last),
    ``_math`` (SDPA math backend), ``_nofused`` / ``_fused`` (every ``fused_attn`` flag off / on),
    ``_p<width>`` (projector width, 3 layers)."""
    parts = name.split("_")
    opts = {"amp": {"fp32": "none", "bf16": "bf16"}[parts[0]], "batch": base_batch, "compile": False, "cl": False,
            "math": False, "nofused": False, "fused": False,
            "proj": None}
    for p in parts[1:]:
        if p.startswith("b") and p[1:].isdigit():
            opts["batch"] = int(p[1:])
        elif p == "compile":
            opts["compile"] = True
        elif p == "cl":
            opts["cl"] = True
        elif p == "math":
            opts["math"] = True
        elif p == "nofused":
            opts["nofused"] = True
        elif p == "fused":
            opts["fused"] = True
        elif p.startswith("p") and p[1:].isdigit():
            opts["proj"] = int(p[1:])
        else:
            raise SystemExit(f"unknown variant part {p!r} in {name!r}")
    return opts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="vit_s8@64", help="a label of bench_mfu's suites")
    p.add_argument("--variants", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--projector-dims", type=int, nargs="+", default=[1024, 1024, 1024])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=2, help="timed steps per round and variant")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--depth", type=int, default=None, help="ViT depth override (same block shapes, cheaper study)")
    p.add_argument("--peak-size", type=int, default=4096)
    p.add_argument("--cpu-time", action="store_true",
                   help="time with process CPU seconds instead of wall clock: with --threads 1 on a loaded machine "
                        "this excludes the time the process waits for a core (the step's compute cost)")
    p.add_argument("--json", default=None)
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    timer = time.process_time if args.cpu_time else time.perf_counter
    cases = {c.label: c for suite in B.SUITES.values() for c in suite}
    cases.setdefault("resnet_small", B.Case("resnet_small", "resnet_small", 64))
    case = cases[args.backbone]
    if args.depth:
        case = B.Case(f"{case.label}(depth {args.depth})", case.backbone, case.image_size, {**case.kwargs, "depth": args.depth})
    images, _ = B.source_images(512, case.image_size, None)
    setups, flops, results = {}, {}, {}
    for name in args.variants:
        o = variant_options(name, args.batch_size)
        dims = [o["proj"]] * 3 if o["proj"] else args.projector_dims
        s = B.setup_ours(case, o["batch"], dims, torch.device("cpu"), amp=o["amp"], compile=o["compile"],
                         channels_last=o["cl"], images=images)
        if o["nofused"] or o["fused"]:
            for m in s.module.modules():
                if hasattr(m, "fused_attn"):
                    m.fused_attn = bool(o["fused"])
        v1, v2 = B.make_views(s, torch.Generator().manual_seed(1))
        key = (o["batch"], tuple(dims))  # FLOPs depend on the shapes only
        if key not in flops:
            flops[key] = B.count_step_flops(s, v1, v2)
        flops[name] = flops[key]
        t0 = time.perf_counter()
        B.model_step(s, v1, v2)  # first step (compiles when compiled)
        first = time.perf_counter() - t0
        setups[name] = (s, o, v1, v2)
        results[name] = {"first_step_s": first, "times": [], "flops": flops[name], "batch": o["batch"], **o}
        print(f"{name}: {flops[name] / 1e9 / o['batch']:.2f} GFLOP/img, first step {first:.1f} s", flush=True)
    peaks = []
    for r in range(args.rounds):
        peaks.append(B.matmul_peak(torch.device("cpu"), torch.bfloat16, args.peak_size, 2, timer=timer))
        for name, (s, o, v1, v2) in setups.items():
            ctx = torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH) if o["math"] else _null()
            with ctx:
                for _ in range(args.steps):
                    t0 = timer()
                    B.model_step(s, v1, v2)
                    results[name]["times"].append(timer() - t0)
        print(f"round {r}: peak {peaks[-1]:.3f} TF/s " + ", ".join(
            f"{n} {results[n]['batch'] / min(results[n]['times'][-args.steps:]):.1f} img/s" for n in setups), flush=True)
    peak = max(peaks)
    load = os.getloadavg()
    print(f"\n{case.label}, {'CPU seconds' if args.cpu_time else 'wall clock'}, {args.threads} threads, load {load[0]:.2f}/{load[1]:.2f}, bf16 peak (best) {peak:.3f} TF/s")
    print(f"{'variant':<22}{'img/s best':>11}{'img/s med':>11}{'TF/s':>8}{'% bf16 pk':>10}{'1st step s':>11}{'payback':>9}")
    base = None
    for name, res in results.items():
        best, med = min(res["times"]), statistics.median(res["times"])
        res.update(step_best_s=best, step_median_s=med, images_per_s=res["batch"] / best,
                   tflops=res["flops"] / best / 1e12, frac_bf16_peak=res["flops"] / best / 1e12 / peak)
        payback = ""
        if res["compile"] and base is not None:
            # steps after which (first - best) compile overhead is repaid by the per-step saving over the
            # same variant without compile (the first variant of the list, at the same batch)
            saving = base["step_best_s"] * res["batch"] / base["batch"] - best
            res["payback_steps"] = (res["first_step_s"] - best) / saving if saving > 0 else None
            payback = f"{res['payback_steps']:.0f}" if res["payback_steps"] else "never"
        base = base or res
        print(f"{name:<22}{res['images_per_s']:>11.1f}{res['batch'] / med:>11.1f}{res['tflops']:>8.3f}"
              f"{100 * res['frac_bf16_peak']:>9.1f}%{res['first_step_s']:>11.1f}{payback:>9}")
    if args.json:
        Path(args.json).write_text(json.dumps({"backbone": case.label, "threads": args.threads, "load": load,
                                               "timer": "process_time" if args.cpu_time else "perf_counter",
                                               "bf16_peak_tflops": peak, "results": results}, indent=2))


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


if __name__ == "__main__":
    main()
