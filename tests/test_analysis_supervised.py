"""Supervised baseline: batched crop+flip, one epoch on tiny tensors, checkpoint reload, exact resume."""

from __future__ import annotations

import csv
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from rtsseg.analysis.supervised import SupervisedConfig, lr_at, random_resized_crop_flip, train_supervised


class TinyBackbone(nn.Module):
    """Stand-in for the Backbone contract (conv + BN + pooled embedding)."""

    def __init__(self, embed_dim: int = 8) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.conv = nn.Conv2d(3, embed_dim, 3, 2, 1)
        self.bn = nn.BatchNorm2d(embed_dim)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        return (x - 0.5) / 0.25

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).mean((2, 3))


def factory(name: str) -> nn.Module:
    assert name == "tiny"
    return TinyBackbone()


def tiny_data(n: int = 40, size: int = 16) -> SimpleNamespace:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 4
    images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    return SimpleNamespace(images=images, labels=labels, classes=["a", "b", "c", "d"])


def config(run_dir, epochs: int) -> SupervisedConfig:
    return SupervisedConfig(backbone="tiny", image_size=16, epochs=epochs, batch_size=16, lr=1e-2,
                            warmup_epochs=1, device="cpu", run_dir=str(run_dir), progress=False)


def test_crop_flip_identity_and_flip():
    x = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    same = random_resized_crop_flip(x, 8, g, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0)
    assert torch.allclose(same, x.float() / 255, atol=1e-5)
    flipped = random_resized_crop_flip(x, 8, g, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=1.0)
    assert torch.allclose(flipped, x.float().flip(-1) / 255, atol=1e-5)
    crops = random_resized_crop_flip(x, 12, g, scale=(0.1, 0.5))
    assert crops.shape == (3, 3, 12, 12) and 0 <= crops.min() and crops.max() <= 1
    a = random_resized_crop_flip(x, 8, torch.Generator().manual_seed(1))
    b = random_resized_crop_flip(x, 8, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_lr_schedule():
    assert lr_at(0, 100, 10, 1.0) == pytest.approx(0.1)
    assert lr_at(10, 100, 10, 1.0) == pytest.approx(1.0)
    assert lr_at(100, 100, 10, 1.0) == pytest.approx(0.0)


def test_one_epoch_writes_checkpoint_that_reloads(tmp_path):
    run = train_supervised(config(tmp_path / "run", epochs=1), backbone_factory=factory, data=tiny_data())
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and state["num_classes"] == 4
    fresh = TinyBackbone()
    fresh.load_state_dict(state["backbone"])  # strict: the keys are the backbone's own
    assert torch.equal(fresh.conv.weight, state["backbone"]["conv.weight"])
    assert not torch.equal(fresh.conv.weight, TinyBackbone().conv.weight)
    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and {"epoch", "loss", "train_acc", "wall_s"} <= set(rows[0])
    assert 0 <= float(rows[0]["train_acc"]) <= 1 and float(rows[0]["loss"]) > 0
    assert (run / "config.json").is_file() and not list(run.glob("*.tmp"))


def test_resume_equals_uninterrupted_run(tmp_path, monkeypatch):
    import rtsseg.analysis.supervised as sup

    data = tiny_data()
    straight = train_supervised(config(tmp_path / "a", epochs=3), backbone_factory=factory, data=data)
    # the same run, killed right after its first checkpoint, then started again
    save = sup._atomic_torch_save

    def save_then_crash(obj, path):
        save(obj, path)
        raise KeyboardInterrupt

    monkeypatch.setattr(sup, "_atomic_torch_save", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train_supervised(config(tmp_path / "b", epochs=3), backbone_factory=factory, data=data)
    monkeypatch.setattr(sup, "_atomic_torch_save", save)
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["epoch"] == 1
    resumed = train_supervised(config(tmp_path / "b", epochs=3), backbone_factory=factory, data=data)
    a = torch.load(straight / "checkpoint.pt", weights_only=True)
    b = torch.load(resumed / "checkpoint.pt", weights_only=True)
    assert b["epoch"] == 3 and [r["epoch"] for r in b["history"]] == [1, 2, 3]
    assert [r["loss"] for r in b["history"]] == pytest.approx([r["loss"] for r in a["history"]], abs=1e-6)
    for k in a["backbone"]:
        assert torch.allclose(a["backbone"][k].float(), b["backbone"][k].float(), atol=1e-6), k


def test_bad_data_raises(tmp_path):
    bad = SimpleNamespace(images=torch.zeros(4, 16, 16, dtype=torch.uint8), labels=torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError):
        train_supervised(config(tmp_path, epochs=1), backbone_factory=factory, data=bad)
