"""Mixed precision for every trainer and for feature extraction: one decision, measured, one log line.

``amp`` is ``auto | bf16 | fp16 | none``. What ``auto`` means:

* **CUDA**: bf16 where the GPU has bf16 tensor cores (``torch.cuda.is_bf16_supported(including_emulation=False)``,
  compute capability >= 8.0), else **fp16** with a ``torch.amp.GradScaler`` (:func:`grad_scaler`): on a T4 or a
  V100 bf16 is emulated and fp16 is the fast path. Decided by capability, no probe (the capability *is* the
  answer there, and every GPU of one kind answers the same).
* **CPU**: bf16 only where this machine runs it **measurably faster**. No CPU flag predicts it: an Intel VM with
  avx512_bf16 and no AMX ran bf16 products at 0.52x fp32, an AMD EPYC with avx512_bf16 and no AMX ran the
  Barlow Twins steps 1.46-2.5x faster in bf16, a Sapphire Rapids with AMX 5x, and an AVX2-only EPYC (this
  project's 2-core VM, 2026-11) emulates bf16 at ~1/100 of fp32. So on first use per machine :func:`probe`
  measures it (~0.9 s; 0.06 s where bf16 is emulated) and the result is cached in ``<runs>/precision/<key>.json``,
  the key a hash of the CPU model name, its flags, the torch version and :data:`PROBE_VERSION`. bf16 is chosen
  when it is at least :data:`MARGIN` (1.15x) faster, else fp32; the decision is logged once per process with the
  measured ratio and the cache file (delete it to measure again).

The probe (one intra-op thread, timed in this thread's CPU seconds, so that what it measures is the per-core
speed of each dtype and not the share of the cores other processes take): (1) a *screen*, a 256² product in
each dtype: when bf16 is more than 4x slower (:data:`SCREEN_FLOOR`) the CPU has no bf16 path (emulated: 0.02x
on the AVX2 EPYC) and fp32 is decided at once; (2) otherwise the *block*, LayerNorm -> Linear(384, 1536) ->
GELU -> Linear(1536, 384) on 512 token rows, forward + backward under autocast (the casts autocast adds, the
elementwise work on bf16 activations and the weight-gradient products are in it, as in a ViT/Swin step), fp32
and bf16 interleaved round by round (which goes first alternates), warm-up first, rounds until
:data:`PROBE_BUDGET_S`; speedup = the median over rounds of fp32 time / bf16 time.

Why 1.15x: a bf16 run is a different result (its own run identity, ~1 % different losses), so bf16 must pay for
itself clearly, and a 1-second probe is noisy. The A/A test (:func:`probe` with ``candidate=None``: fp32 in
both arms) on the project's shared 2-core VM gave speedups of 0.90-1.07 over 18 repeats, 8 of them next to a
busy process (``benchmarks/NOTES.md``): a machine where bf16 does not help does not reach 1.15 by noise, and
every CPU where bf16 was measured to help (1.46x and up on the steps) clears it. A CPU between 1.0x and 1.15x
trains in fp32: the more exact result, for at most 15 % of speed.

Only the autocast-listed ops (matmul, conv, linear, ...) run in bf16/fp16: the Barlow Twins loss (computed in fp32 on
purpose), BatchNorm statistics and the optimizer state stay fp32.

Under ``torch.distributed`` every rank must train in the same precision: the first ``auto`` call on CPU is then
a collective (rank 0 reads the cache or probes, :func:`torch.distributed.broadcast_object_list` gives its
record to all ranks), so call it on every rank at the same point (the trainers resolve ``amp`` on every rank
before training). ``$RTSSEG_AMP_PROBE=off`` makes ``auto`` fp32 on CPU without probing or writing: tests and CI
get the same precision on every machine (an AMX runner would otherwise train the test runs in bf16) and no file
in the runs folder.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import platform
import statistics
import time
from pathlib import Path

import torch

log = logging.getLogger(__name__)

AMP_CHOICES = ("auto", "bf16", "fp16", "none")
#: bf16 on CPU only when the probe measured it at least this much faster than fp32 (see the module docstring)
MARGIN = 1.15
#: the screen's bound: bf16 more than 4x slower than fp32 on a 256² product means no bf16 path (emulated)
SCREEN_FLOOR = 0.25
#: wall-clock seconds the block stage of the probe may spend (warm-up included; at least 2 rounds)
PROBE_BUDGET_S = 0.8
#: part of the cache key: a change of the probe's design re-measures every machine
PROBE_VERSION = 1
PROBE_ENV = "RTSSEG_AMP_PROBE"

_DECIDED: dict[str, dict] = {}  # cache key -> the record this process decided with (one decision per process)


# ------------------------------------------------------------------------------------------------- CPU
def cpu_identity() -> dict:
    """What decides whether bf16 pays on this CPU: model name, flags, torch version (its kernels), the probe's
    version. Not the thread count: the probe measures one core (:func:`probe`), and a key with it would let two
    processes of one machine (a run and its resume with another ``--num-threads``) decide differently."""
    model, flags = _cpuinfo()
    return {"cpu_model": model, "cpu_flags": flags, "torch": torch.__version__, "probe_version": PROBE_VERSION}


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, str]:
    """(model name, sorted flags) of the first CPU in /proc/cpuinfo; elsewhere the platform's processor name."""
    model, flags = None, ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model is None:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = " ".join(sorted(line.split(":", 1)[1].split()))
    return model or platform.processor() or platform.machine() or "cpu", flags


def cache_key(identity: dict | None = None) -> str:
    """16 hex digits of the SHA-256 of :func:`cpu_identity` (the cache file's name)."""
    text = json.dumps(identity or cpu_identity(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_path(key: str | None = None) -> Path:
    """``<runs>/precision/<key>.json`` (``$RTSSEG_RUNS`` honoured)."""
    from rtsseg.config import runs_root

    return runs_root() / "precision" / f"{key or cache_key()}.json"


def _best_time(fn, reps: int) -> float:
    """Best of ``reps`` calls in CPU seconds of this thread (the probe runs on one thread: see :func:`probe`)."""
    best = float("inf")
    for _ in range(reps):
        t0 = time.thread_time()
        fn()
        best = min(best, time.thread_time() - t0)
    return best


def probe(budget_s: float = PROBE_BUDGET_S, candidate: torch.dtype | None = torch.bfloat16, rows: int = 512,
          dim: int = 384) -> dict:
    """Measure how much faster ``candidate`` (bf16) autocast computes than fp32 on one core of this CPU.
    ``candidate=None`` times fp32 in both arms (the A/A test of the probe's noise).

    One intra-op thread, timed in this thread's CPU seconds: the ratio of the two dtypes' per-core speeds,
    which is what bf16 changes, without the share of the cores that other processes take. (At 2 threads in
    wall-clock seconds the A/A test spread 0.69-1.31 on this shared 2-core VM; at 1 thread in CPU seconds
    0.93-1.05, quiet or loaded.) The caller's thread count and random stream are restored.

    Returns ``{"speedup": median over rounds of fp32 time / candidate time, "stage": "screen" | "block",
    "fp32_s", "candidate_s" (best rounds), "best_ratio", "rounds", "probe_s" (wall clock), "probe_threads"}``."""
    t_start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            return {**_probe(budget_s, candidate, rows, dim), "probe_s": time.perf_counter() - t_start,
                    "probe_threads": 1}
    finally:
        torch.set_num_threads(threads)


def _probe(budget_s: float, candidate: torch.dtype | None, rows: int, dim: int) -> dict:
    torch.manual_seed(0)
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    ac, bc = (a, b) if candidate is None else (a.to(candidate), b.to(candidate))
    a @ b  # warm-up (kernel selection)
    fp32_mm = _best_time(lambda: a @ b, 3)
    ac @ bc
    cand_mm = _best_time(lambda: ac @ bc, 1)
    if fp32_mm / cand_mm < SCREEN_FLOOR:
        return {"speedup": fp32_mm / cand_mm, "stage": "screen", "fp32_s": fp32_mm, "candidate_s": cand_mm,
                "best_ratio": fp32_mm / cand_mm, "rounds": 1}

    block = torch.nn.Sequential(torch.nn.LayerNorm(dim), torch.nn.Linear(dim, 4 * dim), torch.nn.GELU(),
                                torch.nn.Linear(4 * dim, dim))
    x = torch.randn(rows, dim, requires_grad=True)

    def step(dtype: torch.dtype | None) -> float:
        t0 = time.thread_time()
        with autocast("cpu", dtype):
            y = block(x)  # [rows, dim]
        block.zero_grad(set_to_none=True)
        x.grad = None
        y.float().square().mean().backward()
        return time.thread_time() - t0

    t_block = time.perf_counter()
    step(None)  # warm-up: oneDNN primitives, autocast weight casts
    step(candidate)
    times: dict[str, list[float]] = {"fp32": [], "candidate": []}
    arms = [("fp32", None), ("candidate", candidate)]
    while True:
        for arm, dtype in arms:
            times[arm].append(step(dtype))
        arms.reverse()  # alternate which arm goes first: the second of a pair runs on warmer caches
        rounds = len(times["fp32"])
        if rounds >= 20 or (rounds >= 2 and time.perf_counter() - t_block > budget_s):
            break
    fp32_s, cand_s = min(times["fp32"]), min(times["candidate"])
    # the median of the per-round ratios: a disturbed round drops out of it
    speedup = statistics.median(f / c for f, c in zip(times["fp32"], times["candidate"]))
    return {"speedup": speedup, "stage": "block", "fp32_s": fp32_s, "candidate_s": cand_s,
            "best_ratio": fp32_s / cand_s, "rounds": rounds}


def _read_cache(path: Path, key: str) -> dict | None:
    """The cached record, or None when the file is missing or unusable (then the probe runs again)."""
    try:
        rec = json.loads(path.read_text())
        speedup = float(rec["speedup"])
        if rec.get("key") != key or not math.isfinite(speedup) or speedup <= 0:
            raise ValueError(f"key {rec.get('key')!r} / speedup {speedup!r}")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("rtsseg.precision: unusable cache %s (%s): measuring again", path, e)
        return None
    return rec


def _write_cache(path: Path, rec: dict) -> None:
    """Atomic (temporary file + rename): a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(rec, indent=2))
        os.replace(tmp, path)
    except OSError as e:  # a read-only runs folder costs a probe per process, not the run
        log.warning("rtsseg.precision: could not cache the probe in %s (%s)", path, e)
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _measure_or_read(key: str, identity: dict) -> dict:
    path = cache_path(key)
    rec = _read_cache(path, key)
    if rec is not None:
        return {**rec, "source": "cache"}
    rec = {"key": key, **identity, **probe(), "margin": MARGIN, "measured": time.strftime("%Y-%m-%d %H:%M:%S")}
    rec["precision"] = "bf16" if rec["speedup"] >= MARGIN else "fp32"  # for a reader of the file
    _write_cache(path, rec)
    return {**rec, "source": "probe"}


def _distributed():
    """``torch.distributed`` when a process group of more than one rank is initialised, else None."""
    dist = torch.distributed
    return dist if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1 else None


def cpu_decision() -> dict:
    """The record ``amp=auto`` decides with on this CPU: the probe's measurement (from the cache, or measured
    now), ``precision`` (``"bf16"`` when ``speedup >= MARGIN``, else ``"fp32"``), ``source`` (probe | cache |
    env | rank0) and ``cache`` (the file). Once per process and key; under torch.distributed rank 0's record is
    every rank's (a collective: call it on every rank)."""
    setting = os.environ.get(PROBE_ENV, "on").strip().lower()
    if setting not in ("on", "off", ""):
        raise ValueError(f"${PROBE_ENV} must be 'on' or 'off', got {setting!r}: unset it, or 'off' for fp32 on CPU")
    if setting == "off":
        rec = _DECIDED.get("off") or {"precision": "fp32", "speedup": None, "source": "env", "cache": None}
        if "off" not in _DECIDED:
            _DECIDED["off"] = rec
            log.warning("rtsseg.precision: amp=auto uses fp32 on this CPU ($%s=off, not measured)", PROBE_ENV)
        return rec
    identity = cpu_identity()
    key = cache_key(identity)
    if key in _DECIDED:
        return _DECIDED[key]
    dist = _distributed()
    if dist is not None:
        box = [_measure_or_read(key, identity) if dist.get_rank() == 0 else None]
        dist.broadcast_object_list(box, src=0)
        rec = box[0] if dist.get_rank() == 0 else {**box[0], "source": "rank0"}
    else:
        rec = _measure_or_read(key, identity)
    rec = {**rec, "precision": "bf16" if rec["speedup"] >= MARGIN else "fp32", "cache": str(cache_path(key))}
    _DECIDED[key] = rec
    how = {"probe": f"measured in {rec.get('probe_s', float('nan')):.2f} s", "cache": "cached",
           "rank0": "rank 0's measurement"}[rec["source"]]
    log.warning("rtsseg.precision: amp=auto uses %s on this CPU (%s): bf16 ran the probe at %.2fx fp32 speed "
                "(%s; bf16 needs >= %.2fx); delete %s to measure again", rec["precision"], rec.get("cpu_model"),
                rec["speedup"], how, MARGIN, rec["cache"])
    return rec


# ------------------------------------------------------------------------------------------------ CUDA
def cuda_has_bf16(device: torch.device) -> bool:
    """bf16 tensor cores (compute capability >= 8.0); emulated bf16 (a T4, a V100) does not count."""
    ctx = torch.cuda.device(device) if device.index is not None else contextlib.nullcontext()
    with ctx:
        try:
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:  # torch < 2.4 has no including_emulation (and counted no emulation)
            return bool(torch.cuda.is_bf16_supported())


@functools.lru_cache(maxsize=8)
def _log_once(message: str) -> None:
    log.warning(message)


def autocast_dtype(amp: str, device: str | torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device``, or None for fp32.

    ``auto``: CUDA bf16 (bf16 tensor cores) or fp16 (then train with :func:`grad_scaler`); CPU bf16 where
    :func:`cpu_decision` measured it >= MARGIN faster, else fp32; other devices fp32. ``fp16`` is CUDA only (it
    needs a GradScaler); ``bf16`` is honoured on any device."""
    device = torch.device(device)
    if amp not in AMP_CHOICES:
        raise ValueError(f"amp must be one of {'|'.join(AMP_CHOICES)}, got {amp!r}")
    if amp == "auto":
        if device.type == "cuda":
            if cuda_has_bf16(device):
                return torch.bfloat16
            _log_once(f"rtsseg.precision: amp=auto uses fp16 with a GradScaler on {device} (no bf16 tensor cores)")
            return torch.float16
        if device.type == "cpu":
            return torch.bfloat16 if cpu_decision()["precision"] == "bf16" else None
        _log_once(f"rtsseg.precision: amp=auto uses fp32 on this {device.type} (not measured there)")
        return None
    if amp == "fp16" and device.type != "cuda":
        raise ValueError(f"amp='fp16' needs CUDA (device is {device}): use amp='bf16' or 'none'")
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[amp]


def precision_name(dtype: torch.dtype | None) -> str:
    """``"bf16" | "fp16" | "fp32"``: the precision an autocast dtype (None: none) trains in; part of every run's
    identity (a bf16 run and an fp32 run are different results) and of its run record."""
    names = {None: "fp32", torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
    if dtype not in names:
        raise ValueError(f"no precision name for dtype {dtype}")
    return names[dtype]


def grad_scaler(device: str | torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """The loss scaler fp16 needs (its 5 exponent bits underflow small gradients); a pass-through for bf16 and
    fp32 (``scale(loss)`` is ``loss``, ``step(opt)`` is ``opt.step()``). Use ``scaler.scale(loss).backward();
    scaler.step(opt); scaler.update()`` and save ``scaler.state_dict()`` with the checkpoint."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=dtype == torch.float16)


def autocast(device: str | torch.device, dtype: torch.dtype | None):
    """``torch.autocast(device.type, dtype)`` when ``dtype`` is set, else a no-op context.

    On a CPU in bf16, scaled-dot-product attention also runs on its math kernel (bf16 matrix products and a
    softmax) instead of the CPU flash kernel, whose bf16 backward is slow: measured on a 2-core Intel Xeon with
    AMX (torch 2.14, ViT-S/8 @ 64 px shapes [128, 6, 65, 32], forward + backward) flash 74 ms in bf16 against
    22 ms in fp32, math 25 ms in bf16; in the Barlow Twins step of ``vit_small64`` the flash backward took 52 %
    of the bf16 step (``benchmarks/bench_mfu.py --profile``). The math kernel computes the same function (to
    bf16 rounding); the kernel choice is made at the forward, and the backward follows it."""
    device = torch.device(device)
    if dtype is None:
        return contextlib.nullcontext()
    if device.type == "cpu" and dtype == torch.bfloat16:
        return _cpu_bf16_autocast()
    return torch.autocast(device.type, dtype=dtype)


@contextlib.contextmanager
def _cpu_bf16_autocast():
    """bf16 autocast on the CPU with scaled-dot-product attention on its math kernel (entered at ``with``)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with torch.autocast("cpu", dtype=torch.bfloat16), sdpa_kernel(SDPBackend.MATH):
        yield
