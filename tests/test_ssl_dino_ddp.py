"""DINO under DDP (gloo, 2 processes) = one process on the same global batch: loss, gradients, centre."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from rtsseg.ssl.dino import DINOHead, DINOLoss, MultiCropWrapper
from model_fakes import TinyBackbone, subprocess_env

pytestmark = pytest.mark.slow  # two processes (gloo) or torchrun: seconds each

GLOBAL_BATCH, WORLD, K, NCROPS = 8, 2, 24, 4


def _student() -> MultiCropWrapper:
    torch.manual_seed(0)
    return MultiCropWrapper(TinyBackbone(embed_dim=12), DINOHead(12, K, 16, 8))


def _crops() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(GLOBAL_BATCH, 3, 16, 16, generator=g) for _ in range(2)] + [
        torch.randn(GLOBAL_BATCH, 3, 8, 8, generator=g) for _ in range(NCROPS - 2)
    ]


def _teacher_out(crops: list[torch.Tensor]) -> torch.Tensor:
    torch.manual_seed(5)  # a different network: the teacher
    with torch.no_grad():
        return MultiCropWrapper(TinyBackbone(embed_dim=12), DINOHead(12, K, 16, 8))(crops[:2])


def _loss() -> DINOLoss:
    loss = DINOLoss(K, NCROPS, 0.04, 0.07, 2, 4)
    loss.center.copy_(torch.linspace(-1, 1, K).view(1, K))
    return loss


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    model = nn.parallel.DistributedDataParallel(_student())
    crops = [c[rank::WORLD] for c in _crops()]  # DistributedSampler semantics
    loss_fn = _loss()
    loss = loss_fn(model(crops), _teacher_out(crops), epoch=1)
    loss.backward()
    grads = {k: p.grad.detach().clone() for k, p in model.module.named_parameters() if p.grad is not None}
    torch.save({"loss": loss.detach(), "grads": grads, "center": loss_fn.center.clone()},
               os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_two_process_gloo_equals_one_process(tmp_path: Path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    model, crops, loss_fn = _student(), _crops(), _loss()
    loss = loss_fn(model(crops), _teacher_out(crops), epoch=1)
    loss.backward()
    ref = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
    got = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    # per-rank losses are local-batch means; their average is the global-batch loss
    torch.testing.assert_close(torch.stack([g["loss"] for g in got]).mean(), loss.detach(), atol=1e-6, rtol=1e-5)
    for g in got:
        torch.testing.assert_close(g["center"], loss_fn.center, atol=1e-6, rtol=1e-5)  # all-reduced centre
        assert g["grads"].keys() == ref.keys()
        for name, r in ref.items():
            torch.testing.assert_close(g["grads"][name], r, atol=1e-6, rtol=1e-4, msg=lambda m: f"{name}: {m}")


def test_torchrun_runs_the_dino_entry_point(tmp_path: Path):
    import subprocess
    import sys

    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
        "rtsseg.ssl.engine", "dino", "--backbone", "model_fakes:TinyBackbone", "--data", "synthetic", "--synthetic-images", "32",
        "--epochs", "1", "--batch-size", "8", "--out-dim", "32", "--hidden-dim", "16", "--bottleneck-dim", "8",
        "--n-local-crops", "2", "--image-size", "32", "--knn-train-per-class", "2", "--knn-val-per-class", "1",
        "--device", "cpu", "--num-threads", "1", "--no-progress", "--amp", "none", "--run-parent", str(tmp_path),
    ]
    env = subprocess_env({**os.environ, "OMP_NUM_THREADS": "1"})
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env, cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("run folder:") == 1
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    state = torch.load(folder / "checkpoint.pt", weights_only=True)
    assert state["step"] == 4 and "backbone" in state
    assert len((folder / "history.csv").read_text().strip().splitlines()) == 1 + 2
