"""Barlow Twins trainer: bf16 autocast on CPU matches fp32, keeps fp32 state; optimiser groups for transformers."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from model_fakes import TinyViT, register_fakes
from rtsseg.checkpoint import load_checkpoint
from rtsseg.ssl.lars import LARS, lars_param_groups
from rtsseg.ssl.model import BarlowTwins
from rtsseg.ssl.train import PretrainConfig, build_optimizer, pretrain

register_fakes()

#: bf16 keeps 8 mantissa bits (relative rounding 2^-9 = 0.2 %); over 6 steps on this tiny net the per-step losses
#: measured within 0.4 % of fp32 (tiny_test, LARS) — 2 % leaves room for other CPUs' bf16 kernels.
REL_TOL = 0.02


def _run(tmp_path: Path, amp: str, **kw) -> Path:
    cfg = PretrainConfig(backbone="tiny_test", data="synthetic", synthetic_images=32, batch_size=16, epochs=3,
                         image_size=32, projector_dims=(32, 32), warmup_epochs=1, knn_train_per_class=2,
                         knn_val_per_class=1, device="cpu", progress=False, num_threads=1,
                         run_parent=str(tmp_path / amp), amp=amp, **kw)
    return pretrain(cfg)


def test_bf16_and_fp32_runs_of_one_seed_reach_the_same_losses_and_state_stays_fp32(tmp_path: Path):
    torch.set_num_threads(1)
    runs = {amp: _run(tmp_path, amp) for amp in ("none", "bf16")}
    losses = {amp: [float(r["loss"]) for r in csv.DictReader(open(run / "steps.csv"))] for amp, run in runs.items()}
    assert len(losses["none"]) == len(losses["bf16"]) == 6
    for a, b in zip(losses["none"], losses["bf16"]):
        assert b == pytest.approx(a, rel=REL_TOL)
    assert losses["none"] != losses["bf16"]  # autocast did run in bf16
    state = load_checkpoint(runs["bf16"] / "checkpoint.pt")
    floats = [t for t in state["model"].values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float32 for t in floats)  # weights and BN running statistics
    mus = [s["mu"] for s in state["optimizer"]["state"].values()]
    assert mus and all(m.dtype == torch.float32 for m in mus)


def test_cls_token_and_position_embeddings_get_no_decay_and_no_lars_adaptation():
    model = BarlowTwins(TinyViT(), (8, 8))
    groups = {g["name"]: {id(p) for p in g["params"]} for g in lars_param_groups(model, 1e-6)}
    vit = model.backbone
    for p in (vit.cls_token, vit.pos_embed, vit.norm.weight, vit.mix.bias):
        assert id(p) in groups["biases"]
    assert id(vit.patch_embed.weight) in groups["weights"] and id(vit.mix.weight) in groups["weights"]
    # adapted by LARS, a parameter moves by lr * eta * ||p|| per step (relative 1e-4 here): the 1e-6 CLS token
    # would stay frozen. Excluded from adaptation it takes plain momentum-SGD steps.
    opt = LARS(lars_param_groups(model, 1e-6), lr=0.1)
    before = vit.cls_token.detach().clone()
    x = torch.randn(8, 3, 32, 32)
    out = model(x, x.flip(-1))
    out["loss"].backward()
    opt.step()
    moved = (vit.cls_token - before).norm() / before.norm()
    assert moved > 100 * 0.1 * 1e-3  # relative change far beyond one LARS-adapted step


def test_adamw_option_for_transformers():
    model = BarlowTwins(TinyViT(), (8, 8))
    cfg = PretrainConfig(optimizer="adamw", adamw_lr=1e-3, adamw_weight_decay=0.05)
    opt, peak_w, peak_b = build_optimizer(model, cfg)
    assert isinstance(opt, torch.optim.AdamW) and peak_w == peak_b == 1e-3
    decay = {g["name"]: g["weight_decay"] for g in opt.param_groups}
    assert decay == {"weights": 0.05, "biases": 0.0}
    opt, peak_w, _ = build_optimizer(model, PretrainConfig())
    assert isinstance(opt, LARS) and peak_w == 0.2
