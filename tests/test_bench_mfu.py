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


@pytest.fixture
def _probe(tmp_path, monkeypatch):
    """amp=auto decided by a mocked probe (speedup set by the test), cached under tmp_path, not the runs folder."""
    from rtsseg import precision

    monkeypatch.setenv("RTSSEG_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv(precision.PROBE_ENV, raising=False)
    monkeypatch.setattr(precision, "_DECIDED", {})

    def set_speedup(speedup: float):
        monkeypatch.setattr(precision, "_DECIDED", {})
        monkeypatch.setattr(precision, "probe", lambda *a, **k: {"speedup": speedup, "stage": "block", "rounds": 2,
                                                                  "probe_s": 0.1})
    return set_speedup


def _quick(tmp_path: Path, out: Path, *extra: str) -> dict:
    return B.main(["--suite", "cpu", "--quick", "--threads", "1", "--workers", "0", "--peak-size", "64",
                   "--data-root", str(tmp_path / "none"), "--json", str(out), *extra])


def test_main_quick_writes_json(tmp_path: Path, monkeypatch, _probe):
    _probe(0.5)  # bf16 slower: auto is fp32, and the fp32 column is the same measurement
    monkeypatch.setitem(B.SUITES, "cpu", [TINY])
    out = tmp_path / "r.json"
    result = _quick(tmp_path, out)
    saved = json.loads(out.read_text())
    assert saved["rows"][0]["label"] == "tiny" and saved == json.loads(json.dumps(result))
    row = saved["rows"][0]
    for key in ("flops_per_step", "achieved_tflops", "frac_bf16_peak", "frac_fp32_peak", "ours_images_per_s",
                "ref_images_per_s", "ratio_ours_over_ref", "fp32_images_per_s", "fp32_achieved_tflops",
                "fp32_frac_bf16_peak", "fp32_frac_fp32_peak", "ratio_ours_over_fp32", "ratio_fp32_over_ref"):
        assert row[key] > 0, key
    assert row["precision"] == "fp32" and row["amp"] == "none" and row["fp32_same_as_ours"]
    assert row["ratio_ours_over_fp32"] == 1.0
    meta = saved["meta"]
    assert meta["peaks"]["bf16_tflops"] > 0 and meta["official_anchor"]["images_per_s_per_gpu"] == 132
    assert meta["cpu_model"] and meta["amp_auto"]["precision"] == "fp32" and meta["amp_auto"]["speedup"] == 0.5
    assert "cpu_flags" not in meta["amp_auto"]


def test_auto_bf16_gets_its_own_fp32_column(tmp_path: Path, monkeypatch, _probe):
    _probe(2.0)  # bf16 faster here (mocked): ours in bf16, fp32 measured beside it
    monkeypatch.setitem(B.SUITES, "cpu", [TINY])
    out = tmp_path / "r.json"
    row = _quick(tmp_path, out, "--no-reference")["rows"][0]
    assert row["precision"] == "bf16" and row["amp"] == "bf16" and not row["fp32_same_as_ours"]
    assert row["ours_loss"] != row["fp32_loss"]  # two measurements, two precisions
    assert "ref_images_per_s" not in row and "ratio_fp32_over_ref" not in row
    assert _quick(tmp_path, out, "--no-fp32", "--no-reference", "--amp", "none")["rows"][0].get("fp32_images_per_s") is None


def test_fp16_step_goes_through_the_grad_scaler():
    s = B.setup_ours(TINY, 4, (8, 8, 8), torch.device("cpu"), amp="fp16", images=B.synthetic_images(8, 20))
    assert s.scaler.is_enabled()
    v1, v2 = B.make_views(s, torch.Generator().manual_seed(0))
    before = s.scaler.get_scale()
    loss = B.model_step(s, v1, v2)
    assert torch.isfinite(loss) and s.scaler.get_scale() in (before, before / 2)  # updated by the step
    assert not B.setup_ours(TINY, 4, (8, 8, 8), torch.device("cpu"), amp="bf16",
                            images=B.synthetic_images(8, 20)).scaler.is_enabled()


def test_a_slow_dtype_is_measured_at_a_smaller_peak_size():
    tflops, size = B.capped_peak(torch.device("cpu"), torch.float32, 1024, 1, budget_s=0.0)
    assert size == 512 and tflops > 0
    assert B.capped_peak(torch.device("cpu"), torch.float32, 128, 1, budget_s=0.0)[1] == 128  # not halved below 512


def test_performance_appendix_renders_the_three_columns(tmp_path: Path):
    """auto / fp32 / reference from one results file, with what auto chose; an older file keeps its table."""
    from rtsseg.bookpages import write_performance

    results, book = tmp_path / "results", tmp_path / "book"
    results.mkdir(), book.mkdir()
    row = {"label": "net@64", "batch_size": 8, "gflops_per_image": 2.5, "precision": "bf16", "ours_images_per_s": 200.0,
           "achieved_tflops": 0.5, "frac_bf16_peak": 0.25, "frac_fp32_peak": 1.0, "fp32_images_per_s": 100.0,
           "fp32_achieved_tflops": 0.25, "fp32_frac_bf16_peak": 0.125, "fp32_frac_fp32_peak": 0.5,
           "ref_images_per_s": 80.0, "ratio_ours_over_ref": 2.5, "ratio_ours_over_fp32": 2.0, "fp32_same_as_ours": False}
    meta = {"device_name": "some-cpu", "suite": "cpu", "cpu_model": "Some CPU 9000", "peaks": {
        "bf16_tflops": 2.0, "fp32_tflops": 0.5, "bf16_size": 4096, "fp32_size": 4096},
        "amp_auto": {"precision": "bf16", "why": "probe: bf16 at 1.80x fp32, bf16 needs >= 1.15x; probe"}}
    (results / "cpu_some-cpu.json").write_text(json.dumps({"meta": meta, "rows": [row]}))
    old = {"label": "old@64", "batch_size": 8, "gflops_per_image": 2.5, "achieved_tflops": 0.25, "frac_bf16_peak": 0.125,
           "frac_fp32_peak": 0.5, "ours_images_per_s": 100.0, "ratio_ours_over_ref": 1.5}
    (results / "cpu_old.json").write_text(json.dumps({"meta": {"device_name": "old", "peaks": {}}, "rows": [old]}))
    text = write_performance(book, results).read_text()
    assert "| net@64 | 8 | 2.5 | bf16 | 200.0 | 0.5 | 25.0 / 100.0 |" in text  # ours with auto
    assert "| net@64 | 100.0 | 0.25 | 12.5 / 50.0 | 80.0 | 2.50 | 2.00 |" in text  # ours in fp32, the reference
    assert "Some CPU 9000" in text and "chose **bf16**" in text and "1.80x" in text
    assert "| old@64 | 8 | 2.5 | 0.25 | 12.5 | 50.0 | 100 | 1.50 |" in text


def test_profile_names_the_operators_of_one_step():
    s = B.setup_ours(TINY, 4, (8, 8, 8), torch.device("cpu"), amp="none", images=B.synthetic_images(8, 20))
    ops = B.profile_step(s, top=5)
    assert 0 < len(ops) <= 5 and 0 < sum(o["share"] for o in ops) <= 1 + 1e-9
    assert ops == sorted(ops, key=lambda o: -o["self_ms"]) and all(o["calls"] >= 1 for o in ops)
    assert any("conv" in o["op"] or "mm" in o["op"] for o in ops)  # the tiny net's products are in the top 5


def test_results_file_names_the_cpu_bf16_unit(monkeypatch):
    """Two VMs with the same CPU model name, one with avx512_bf16 and one without, get different result files."""
    cpu = torch.device("cpu")
    monkeypatch.setattr(B, "device_name", lambda device: "amd-epyc")
    for flags, stem in [({"amx_bf16": False, "avx512_bf16": False}, "cpu_amd-epyc"),
                        ({"amx_bf16": False, "avx512_bf16": True}, "cpu_amd-epyc-avx512-bf16"),
                        ({"amx_bf16": True, "avx512_bf16": True}, "cpu_amd-epyc-amx")]:
        monkeypatch.setattr(B, "cpu_bf16_flags", lambda flags=flags: flags)
        assert B.results_stem("cpu", cpu) == stem
    assert B.results_stem("cpu", cpu, quick=True) == "cpu_amd-epyc-amx_quick"
