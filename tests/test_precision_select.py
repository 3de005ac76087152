"""rtsseg.precision: which autocast dtype each amp setting gives; ``auto`` decided by a (mocked) probe, its
cache, the environment override, the torch.distributed agreement and the CUDA capability rule."""

from __future__ import annotations

import json
import math

import pytest
import torch

from rtsseg import precision
from rtsseg.precision import autocast, autocast_dtype, grad_scaler, precision_name


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """The cache goes to tmp_path (never the real runs folder); no decision carried over from another test."""
    monkeypatch.setenv("RTSSEG_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv(precision.PROBE_ENV, raising=False)
    monkeypatch.setattr(precision, "_DECIDED", {})
    precision._log_once.cache_clear()


def _fake_probe(speedup: float, calls: list | None = None):
    def fake(*args, **kw):
        if calls is not None:
            calls.append(1)
        return {"speedup": speedup, "stage": "block", "fp32_s": 0.1, "candidate_s": 0.1 / speedup, "rounds": 3,
                "probe_s": 0.5}

    return fake


def _forget(monkeypatch):
    """A new process: the in-process decision is gone, the cache file stays."""
    monkeypatch.setattr(precision, "_DECIDED", {})


def test_explicit_choices_and_errors():
    assert autocast_dtype("none", "cpu") is None
    assert autocast_dtype("bf16", "cpu") is torch.bfloat16
    with pytest.raises(ValueError, match="fp16"):
        autocast_dtype("fp16", "cpu")
    with pytest.raises(ValueError, match="auto"):
        autocast_dtype("fast", "cpu")
    assert [precision_name(d) for d in (None, torch.float32, torch.bfloat16, torch.float16)] == \
        ["fp32", "fp32", "bf16", "fp16"]
    with pytest.raises(ValueError, match="precision name"):
        precision_name(torch.float64)


@pytest.mark.parametrize("speedup, want", [
    (2.0, torch.bfloat16),  # faster: bf16
    (0.5, None),  # slower: fp32
    (1.0, None),  # equal: fp32 (a bf16 run is another result; it must pay)
    (precision.MARGIN, torch.bfloat16),  # at the margin: bf16
    (precision.MARGIN - 0.01, None),  # a little faster, within the probe's noise: fp32
])
def test_auto_on_cpu_follows_the_measured_speedup(monkeypatch, speedup, want):
    monkeypatch.setattr(precision, "probe", _fake_probe(speedup))
    assert autocast_dtype("auto", "cpu") is want


def test_decision_is_logged_once_with_the_measured_ratio(monkeypatch, caplog):
    calls = []
    monkeypatch.setattr(precision, "probe", _fake_probe(0.5, calls))
    with caplog.at_level("WARNING", logger="rtsseg.precision"):
        assert autocast_dtype("auto", "cpu") is None
        assert autocast_dtype("auto", torch.device("cpu")) is None
    lines = [r.getMessage() for r in caplog.records if "amp=auto" in r.getMessage()]
    assert len(lines) == 1 and "fp32" in lines[0] and "0.50x" in lines[0] and "measured" in lines[0], lines
    assert len(calls) == 1  # one probe per process


def test_the_cache_is_written_under_the_runs_folder_and_read_by_the_next_process(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(precision, "probe", _fake_probe(2.0, calls))
    assert autocast_dtype("auto", "cpu") is torch.bfloat16
    path = precision.cache_path()
    assert path.parent == tmp_path / "runs" / "precision" and path.is_file()
    rec = json.loads(path.read_text())
    assert rec["speedup"] == 2.0 and rec["precision"] == "bf16" and rec["key"] == path.stem
    assert rec["torch"] == torch.__version__ and rec["cpu_model"] and rec["margin"] == precision.MARGIN
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # atomic: no leftovers
    _forget(monkeypatch)
    monkeypatch.setattr(precision, "probe", _fake_probe(0.5, calls))  # would decide fp32 if it ran
    assert autocast_dtype("auto", "cpu") is torch.bfloat16 and len(calls) == 1  # read from the cache
    assert precision.cpu_decision()["source"] == "cache"


def test_cache_key_follows_cpu_and_torch_but_not_the_thread_count(monkeypatch):
    ident = precision.cpu_identity()
    assert precision.cache_key(ident) == precision.cache_key(dict(ident))
    assert precision.cache_key({**ident, "torch": "0.0"}) != precision.cache_key(ident)
    assert precision.cache_key({**ident, "cpu_flags": ident["cpu_flags"] + " amx_bf16"}) != precision.cache_key(ident)
    assert precision.cache_key({**ident, "cpu_model": "other"}) != precision.cache_key(ident)
    old = torch.get_num_threads()
    calls = []
    monkeypatch.setattr(precision, "probe", _fake_probe(0.5, calls))
    try:
        torch.set_num_threads(1)
        first = precision.cpu_decision()
        _forget(monkeypatch)
        torch.set_num_threads(2)
        second = precision.cpu_decision()
    finally:
        torch.set_num_threads(old)
    # the probe measures one core: a run and its resume with another --num-threads decide alike
    assert len(calls) == 1 and first["cache"] == second["cache"] and second["source"] == "cache"


@pytest.mark.parametrize("content", ["{not json", json.dumps({"speedup": "nan", "key": "?"}), json.dumps([1, 2]),
                                     json.dumps({"speedup": 2.0, "key": "another-key"})])
def test_a_corrupt_cache_is_measured_again_not_a_crash(monkeypatch, content):
    path = precision.cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    calls = []
    monkeypatch.setattr(precision, "probe", _fake_probe(0.5, calls))
    assert autocast_dtype("auto", "cpu") is None and len(calls) == 1
    assert json.loads(path.read_text())["speedup"] == 0.5  # overwritten with the new measurement


def test_env_off_gives_fp32_without_probing_or_writing(tmp_path, monkeypatch):
    monkeypatch.setenv(precision.PROBE_ENV, "off")
    monkeypatch.setattr(precision, "probe", _fake_probe(9.0))  # would pick bf16
    assert autocast_dtype("auto", "cpu") is None
    assert precision.cpu_decision()["source"] == "env"
    assert not (tmp_path / "runs" / "precision").exists()
    assert autocast_dtype("bf16", "cpu") is torch.bfloat16  # an explicit choice is still honoured
    monkeypatch.setenv(precision.PROBE_ENV, "maybe")
    with pytest.raises(ValueError, match="RTSSEG_AMP_PROBE"):
        autocast_dtype("auto", "cpu")


class _FakeDist:
    """torch.distributed as one rank of a 2-rank group; broadcast hands out rank 0's object."""

    def __init__(self, rank: int, rank0_object=None):
        self.rank, self.rank0_object, self.broadcasts = rank, rank0_object, 0

    def get_rank(self):
        return self.rank

    def broadcast_object_list(self, objs, src=0):
        assert src == 0
        self.broadcasts += 1
        if self.rank != 0:
            objs[0] = self.rank0_object


def test_under_distributed_rank0_decides_for_every_rank(monkeypatch):
    calls = []
    monkeypatch.setattr(precision, "probe", _fake_probe(2.0, calls))
    rank0 = _FakeDist(0)
    monkeypatch.setattr(precision, "_distributed", lambda: rank0)
    assert autocast_dtype("auto", "cpu") is torch.bfloat16 and len(calls) == 1 and rank0.broadcasts == 1
    record = precision.cpu_decision()
    # rank 1: its own probe would say fp32 (and its cache is empty), rank 0's record wins, nothing measured
    _forget(monkeypatch)
    precision.cache_path().unlink()
    monkeypatch.setattr(precision, "probe", _fake_probe(0.5, calls))
    rank1 = _FakeDist(1, {k: v for k, v in record.items() if k not in ("precision", "cache")})
    monkeypatch.setattr(precision, "_distributed", lambda: rank1)
    assert autocast_dtype("auto", "cpu") is torch.bfloat16 and len(calls) == 1 and rank1.broadcasts == 1
    assert precision.cpu_decision()["source"] == "rank0" and not precision.cache_path().exists()
    autocast_dtype("auto", "cpu")
    assert rank1.broadcasts == 1  # a collective only on the first call of a process


def test_cuda_auto_is_bf16_on_bf16_tensor_cores_else_fp16(monkeypatch, caplog):
    asked = []

    def supported(value):
        def is_bf16_supported(including_emulation=True):
            asked.append(including_emulation)
            return True if including_emulation else value  # emulated bf16 always "works"
        return is_bf16_supported

    monkeypatch.setattr(precision, "probe", _fake_probe(9.0))  # CUDA never probes
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", supported(True))
    assert autocast_dtype("auto", "cuda") is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", supported(False))  # a T4: emulated bf16 only
    with caplog.at_level("WARNING", logger="rtsseg.precision"):
        assert autocast_dtype("auto", "cuda") is torch.float16
        assert autocast_dtype("auto", "cuda") is torch.float16
    assert asked and not any(asked)  # always asked without emulation
    assert sum("fp16" in r.getMessage() for r in caplog.records) == 1
    assert not precision.cache_path().exists()
    assert autocast_dtype("fp16", "cuda") is torch.float16 and autocast_dtype("bf16", "cuda") is torch.bfloat16


def test_grad_scaler_is_on_for_fp16_only():
    assert grad_scaler("cpu", torch.float16).is_enabled()
    for dtype in (torch.bfloat16, None):
        scaler = grad_scaler("cpu", dtype)
        loss = torch.tensor(3.0)
        assert not scaler.is_enabled() and scaler.scale(loss) is loss


def test_real_probe_reports_a_finite_speedup_and_leaves_the_random_stream_alone():
    """The probe's mechanics, not its timing (no timed assertion): a tiny block, a tiny budget."""
    state, threads = torch.get_rng_state(), torch.get_num_threads()
    for candidate in (torch.bfloat16, None):
        r = precision.probe(budget_s=0.01, candidate=candidate, rows=32, dim=16)
        assert math.isfinite(r["speedup"]) and r["speedup"] > 0 and r["stage"] in ("screen", "block")
        assert r["rounds"] >= (2 if r["stage"] == "block" else 1) and r["probe_s"] > 0 and r["probe_threads"] == 1
    assert r["stage"] == "block"  # fp32 against fp32 is never screened out
    assert torch.equal(torch.get_rng_state(), state) and torch.get_num_threads() == threads


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
