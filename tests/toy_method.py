"""A fourth method in one small file: least squares ``y = X w`` by SGD, trained through the one engine.

Deterministic and without augmentation (the generator is unused), so that 2 DDP processes equal 1 process to
rounding: each rank's loss is the mean over its half of the batch and DDP averages the gradients."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from rtsseg.ssl.method import Method, register_method


@dataclass
class ToyConfig:  # the fields the engine reads, and the toy's own (n, dim, lr)
    backbone: str = "toy"; n: int = 48; dim: int = 5; epochs: int = 2; batch_size: int = 8; lr: float = 0.1  # noqa: E702
    seed: int = 0; amp: str = "none"; run_parent: str | None = None; device: str | None = "cpu"  # noqa: E702
    num_threads: int | None = 1; save_every_steps: int = 0; restart: bool = False; progress: bool = False  # noqa: E702
    fault_at_step: int | None = None; compile: str = "none"; sync_every_steps: int = 1  # noqa: E702


@register_method("toy")
class ToyMethod(Method):
    """Least squares by SGD (the engine's test method)"""

    config_class, step_fields = ToyConfig, ["lr", "abs_err"]  # a Python float and a tensor the engine reads back
    history_fields = ["epoch", "step", "train_loss", "mse", "wall_s"]
    code_modules = ()  # its source is not a package module: the engine's code only

    def run_parent(self) -> Path:
        return Path(self.cfg.run_parent)

    def data_fingerprint(self) -> dict:
        return {"dataset": "toy", "n": self.cfg.n}

    def load_data(self, info) -> int:
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(self.cfg.n, self.cfg.dim, generator=g)  # [N, D]
        self.y = self.x @ torch.arange(1.0, self.cfg.dim + 1) + 0.1 * torch.randn(self.cfg.n, generator=g)  # [N]
        return self.cfg.n

    def build(self, ctx) -> nn.Module:
        self.backbone = nn.Linear(self.cfg.dim, 1)
        self.backbone.embed_dim = self.cfg.dim
        return self.backbone

    def configure_optimizer(self):
        return torch.optim.SGD(self.backbone.parameters(), lr=self.cfg.lr, momentum=0.9)

    def training_step(self, model, idx, step, ctx):
        err = model(self.x[idx]).squeeze(1) - self.y[idx]  # [B]
        return (err**2).mean(), {"lr": self.cfg.lr, "abs_err": err.detach().abs().mean()}

    def validate(self, epoch, step, ctx) -> dict:
        with torch.no_grad():
            return {"mse": float(((self.backbone(self.x).squeeze(1) - self.y) ** 2).mean())}

    def state_dict(self) -> dict:
        return {"backbone": self.backbone.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.backbone.load_state_dict(state["backbone"])
