"""benchmarks/bench_mfu.py keeps working: its functions on a tiny model, 1-2 steps on CPU (no timing assertion)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_mfu as B  # noqa: E402
from model_fakes import register_fakes  # noqa: E402

register_fakes()  # tiny_test in the models registry

TINY = B.Case("tiny", "tiny_test", 16)


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_counted_flops_of_a_step_are_forward_plus_backward():
    s = B.setup_ours(TINY, 4, (8, 8, 8), torch.device("cpu"), amp="bf16", images=B.synthetic_images(8, 20))
    v1, v2 = B.make_views(s, torch.Generator().manual_seed(0))
    assert v1.shape == v2.shape == (4, 3, 16, 16) and v1.dtype == torch.float32
    from torch.utils.flop_counter import FlopCounterMode

    fwd = FlopCounterMode(display=False)
    with fwd, torch.no_grad():
        s.module(v1, v2)
    step = B.count_step_flops(s, v1, v2)
    # backward costs 1-2x the forward (no input gradient for the first convolution)
    assert 2 * fwd.get_total_flops() <= step <= 3 * fwd.get_total_flops()
    t = B.time_ours(s, steps=1, warmup=1)
    assert t["step_s"] > 0 and t["aug_s"] > 0 and torch.isfinite(torch.tensor(t["loss"]))


def test_reference_step_runs_with_per_image_pil_transforms():
    images = B.synthetic_images(8, 20)
    r = B.time_reference(TINY, 4, (8, 8, 8), torch.device("cpu"), images, steps=1, warmup=0, workers=0)
    assert r["step_s"] > 0 and torch.isfinite(torch.tensor(r["loss"]))


def test_plain_loss_equals_lightly_when_installed():
    lightly_loss = pytest.importorskip("lightly.loss")
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g)
    want = lightly_loss.BarlowTwinsLoss(lambda_param=0.0051)(z1, z2)
    torch.testing.assert_close(B.PlainBarlowTwinsLoss(0.0051)(z1, z2), want)


def test_main_quick_writes_json(tmp_path: Path, monkeypatch):
    monkeypatch.setitem(B.SUITES, "cpu", [TINY])
    out = tmp_path / "r.json"
    result = B.main(["--suite", "cpu", "--quick", "--threads", "1", "--workers", "0", "--peak-size", "64",
                     "--data-root", str(tmp_path / "none"), "--json", str(out)])
    saved = json.loads(out.read_text())
    assert saved["rows"][0]["label"] == "tiny" and saved == json.loads(json.dumps(result))
    row = saved["rows"][0]
    for key in ("flops_per_step", "achieved_tflops", "frac_bf16_peak", "frac_fp32_peak", "ours_images_per_s",
                "ref_images_per_s", "ratio_ours_over_ref"):
        assert row[key] > 0, key
    assert saved["meta"]["peaks"]["bf16_tflops"] > 0 and saved["meta"]["official_anchor"]["images_per_s_per_gpu"] == 132
