"""What the engine's host-synchronisation and optimiser changes (issue 23, item 1) cost or save on this CPU, one
process, variants interleaved round by round, the best round of each reported:

    python benchmarks/study_engine_step.py --rounds 7

1. ``fit`` of the toy method (tests/toy_method.py, 512 steps of least squares: the engine's own per-step overhead)
   with ``sync_every_steps`` 1 and 16;
2. ``fit`` of Barlow Twins (tiny_test backbone of tests/model_fakes.py, synthetic data, 32 steps, validation
   included) with ``sync_every_steps`` 1 and 16;
3. one LARS step over resnet_small + a 512-512 projector, the per-parameter loop (``foreach=False``) and the
   multi-tensor step (the default).

On a CPU nothing runs ahead of the host, so (1) and (2) measure the bookkeeping of a read-back, not the waiting for
the device that ``sync_every_steps`` removes on a GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the toy method and the fake backbones

from model_fakes import register_fakes  # noqa: E402
from toy_method import ToyConfig  # noqa: E402

from rtsseg.models import build_backbone  # noqa: E402
from rtsseg.ssl.engine import fit  # noqa: E402
from rtsseg.ssl.lars import LARS, lars_param_groups, set_lr  # noqa: E402
from rtsseg.ssl.model import BarlowTwins  # noqa: E402
from rtsseg.ssl.train import PretrainConfig  # noqa: E402


def seconds(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--lars-steps", type=int, default=20, help="LARS steps per round and variant")
    args = p.parse_args()
    register_fakes()
    torch.set_num_threads(1)
    tmp = tempfile.mkdtemp()
    bt = PretrainConfig(backbone="tiny_test", data="synthetic", synthetic_images=256, batch_size=8, epochs=1,
                        projector_dims=(64, 64), image_size=32, warmup_epochs=0, knn_train_per_class=2,
                        knn_val_per_class=1, device="cpu", progress=False, num_threads=1, amp="none")
    model = BarlowTwins(build_backbone("resnet_small"), (512, 512))
    for q in model.parameters():
        q.grad = torch.randn_like(q) * 1e-2
    opts = {foreach: LARS(lars_param_groups(model, 1e-6), foreach=foreach) for foreach in (False, True)}
    for o in opts.values():
        set_lr(o, 1e-4, 1e-5)
        o.step()  # momentum buffers allocated

    variants = {
        "toy sync 1": lambda: fit(ToyConfig(run_parent=tempfile.mkdtemp(dir=tmp), n=4096, epochs=1), "toy"),
        "toy sync 16": lambda: fit(ToyConfig(run_parent=tempfile.mkdtemp(dir=tmp), n=4096, epochs=1,
                                             sync_every_steps=16), "toy"),
        "bt sync 1": lambda: fit(dataclasses.replace(bt, run_parent=tempfile.mkdtemp(dir=tmp)), "barlow-twins"),
        "bt sync 16": lambda: fit(dataclasses.replace(bt, run_parent=tempfile.mkdtemp(dir=tmp), sync_every_steps=16),
                                  "barlow-twins"),
        "lars loop": lambda: [opts[False].step() for _ in range(args.lars_steps)],
        "lars foreach": lambda: [opts[True].step() for _ in range(args.lars_steps)],
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    names = list(variants)
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else [n for pair in zip(names[1::2], names[::2]) for n in pair]:
            times[name].append(seconds(variants[name]))
    best = {k: min(v) for k, v in times.items()}
    n_params = sum(q.numel() for q in model.parameters())
    print(f"toy fit, 512 steps: sync 1 {best['toy sync 1']:.3f} s, sync 16 {best['toy sync 16']:.3f} s, "
          f"ratio {best['toy sync 1'] / best['toy sync 16']:.2f}")
    print(f"Barlow Twins tiny_test fit, 32 steps: sync 1 {best['bt sync 1']:.3f} s, sync 16 {best['bt sync 16']:.3f} s, "
          f"ratio {best['bt sync 1'] / best['bt sync 16']:.2f}")
    print(f"LARS step, resnet_small + projector ({len(list(model.parameters()))} tensors, {n_params / 1e6:.2f} M): "
          f"loop {best['lars loop'] / args.lars_steps * 1e3:.2f} ms, foreach "
          f"{best['lars foreach'] / args.lars_steps * 1e3:.2f} ms, loop / foreach "
          f"{best['lars loop'] / best['lars foreach']:.2f}")


if __name__ == "__main__":
    main()
