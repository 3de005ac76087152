"""rtsseg.precision: which autocast dtype each amp setting gives, and that the BT loss stays fp32 on CPU."""

from __future__ import annotations

import pytest
import torch

from rtsseg import precision
from rtsseg.precision import autocast, autocast_dtype


def test_explicit_choices_and_errors():
    assert autocast_dtype("none", "cpu") is None
    assert autocast_dtype("bf16", "cpu") is torch.bfloat16
    with pytest.raises(ValueError, match="fp16"):
        autocast_dtype("fp16", "cpu")
    with pytest.raises(ValueError, match="auto"):
        autocast_dtype("fast", "cpu")


def test_auto_follows_the_cpu_flags(monkeypatch, caplog):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    assert autocast_dtype("auto", "cpu") is torch.bfloat16
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    precision._log_fallback.cache_clear()
    with caplog.at_level("WARNING"):
        assert autocast_dtype("auto", "cpu") is None
        assert autocast_dtype("auto", "cpu") is None
    assert sum("fp32" in r.message for r in caplog.records) == 1  # one log line, not one per call


def test_autocast_helper_runs_matmuls_in_bf16_only_when_asked():
    a = torch.randn(8, 8)
    with autocast("cpu", torch.bfloat16):
        assert (a @ a).dtype == torch.bfloat16
    with autocast("cpu", None):
        assert (a @ a).dtype == torch.float32


def test_barlow_twins_loss_is_fp32_under_cpu_autocast():
    from rtsseg.ssl.loss import BarlowTwinsLoss

    z1, z2 = torch.randn(16, 8), torch.randn(16, 8)
    lin = torch.nn.Linear(8, 8)
    with autocast("cpu", torch.bfloat16):
        h1, h2 = lin(z1), lin(z2)
        assert h1.dtype == torch.bfloat16
        loss = BarlowTwinsLoss(0.01)(h1, h2)
    assert loss.dtype == torch.float32
