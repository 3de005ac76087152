"""DDP on CPU (gloo, 2 processes) gives the single-process loss and gradients on the same global batch."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from rtsseg.ssl.model import BarlowTwins
from model_fakes import TinyBackbone, subprocess_env
from rtsseg.rundir import latest_run

pytestmark = pytest.mark.slow  # two processes (gloo) or torchrun: seconds each

GLOBAL_BATCH, WORLD = 16, 2


def _model() -> BarlowTwins:
    torch.manual_seed(0)
    return BarlowTwins(TinyBackbone(embed_dim=12), projector_dims=(24, 24, 20))


def _views() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(GLOBAL_BATCH, 3, 16, 16, generator=g), torch.randn(GLOBAL_BATCH, 3, 16, 16, generator=g)


def _grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.grad.detach().clone() for k, p in model.named_parameters()}


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    model = nn.parallel.DistributedDataParallel(_model())
    v1, v2 = _views()
    # DistributedSampler semantics: rank r takes samples r, r + W, ...
    out = model(v1[rank::WORLD], v2[rank::WORLD])
    out["loss"].backward()
    torch.save(
        {"loss": out["loss"].detach(), "c": out["c"].detach(), "grads": _grads(model.module),
         "buffers": {k: v.clone() for k, v in model.module.named_buffers()}},
        os.path.join(out_dir, f"rank{rank}.pt"),
    )
    dist.destroy_process_group()


def test_two_process_gloo_equals_one_process(tmp_path: Path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    model = _model()
    v1, v2 = _views()
    out = model(v1, v2)
    out["loss"].backward()
    ref = _grads(model)
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        torch.testing.assert_close(got["loss"], out["loss"].detach(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got["c"], out["c"].detach(), atol=1e-5, rtol=1e-5)
        assert got["grads"].keys() == ref.keys()
        for name, g in ref.items():
            # fp32 sums in another order (gloo's all-reduce): an element near 0 carries the rounding of the
            # tensor's large ones, so the absolute tolerance scales with the tensor (seen: 1.2e-5 on an element
            # of 8e-4 in a tensor of max |g| ~ 0.1 on an AMD EPYC; a wrong global-batch statistic is off by O(|g|))
            atol = max(1e-5, 2e-4 * float(g.abs().max()))
            torch.testing.assert_close(got["grads"][name], g, atol=atol, rtol=1e-4, msg=lambda m: f"{name}: {m}")
        # the projector's BatchNorm running statistics follow the global batch as well
        for name, b in model.named_buffers():
            torch.testing.assert_close(got["buffers"][name].float(), b.float(), atol=1e-5, rtol=1e-5)


def test_torchrun_runs_the_training_entry_point(tmp_path: Path):
    parent = tmp_path / "runs"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "rtsseg.ssl.engine", "barlow-twins", "--backbone", "model_fakes:TinyBackbone", "--data", "synthetic", "--synthetic-images", "64",
        "--epochs", "1", "--batch-size", "16", "--projector-dims", "16", "16", "--warmup-epochs", "0",
        "--knn-train-per-class", "4", "--knn-val-per-class", "2", "--device", "cpu", "--num-threads", "1",
        "--no-progress", "--run-parent", str(parent),
    ]
    env = subprocess_env({**os.environ, "OMP_NUM_THREADS": "1"})
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    run_dir = latest_run(parent)
    lines = (run_dir / "history.csv").read_text().strip().splitlines()
    assert len(lines) == 3  # header, epoch 0, epoch 1
    assert len((run_dir / "steps.csv").read_text().strip().splitlines()) == 1 + 4  # 64 / 16 steps, rank 0 only
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert state["step"] == 4 and len(state["rng"]) == 2 and "backbone" in state


def test_torchrun_runs_the_supervised_entry_point(tmp_path: Path):
    """The supervised method under the same engine entry point: 12 images (3 classes) / batch 4 = 3 steps."""
    from data_fakes import make_tiny_imagenet

    tree = make_tiny_imagenet(tmp_path / "tiny-imagenet-200", per_class=4, val_per_class=2)
    parent = tmp_path / "runs"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "rtsseg.ssl.engine",
        "supervised", "--backbone", "model_fakes:TinyBackbone", "--data-dir", str(tree), "--cache-dir",
        str(tmp_path / "cache"), "--image-size", "32", "--epochs", "1", "--batch-size", "4", "--val-per-class", "2",
        "--warmup-epochs", "0", "--device", "cpu", "--num-threads", "1", "--no-progress", "--amp", "none",
        "--run-parent", str(parent),
    ]
    env = subprocess_env({**os.environ, "OMP_NUM_THREADS": "1"})
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    run_dir = latest_run(parent)
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3 and len(state["rng"]) == 2 and state["method"] == "supervised"
    (row,) = list(csv.DictReader(open(run_dir / "history.csv")))
    assert row["epoch"] == "1" and 0 <= float(row["val_top1"]) <= 1
