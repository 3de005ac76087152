"""Mixed precision for every trainer and for feature extraction: one decision, one log line.

``amp`` is ``auto | bf16 | fp16 | none``. ``auto`` means bf16 autocast where the hardware has bf16 matrix
units: CUDA, and CPUs with AMX-BF16 (a Sapphire Rapids Xeon with AMX ran a 4096² matmul 5x faster in bf16 than
in fp32). AVX512-BF16 alone is not enough: on this project's 2-core VM (avx512_bf16, no amx_bf16) a 2048² bf16
matmul ran at 0.09 TFLOP/s against 0.14 in fp32, and the Barlow Twins step of vit_small64 at 0.51x its fp32
speed (``benchmarks/NOTES.md``). Elsewhere fp32, said once in the log. Only the autocast-listed ops (matmul, conv, linear) run in bf16: the Barlow Twins loss (computed in
fp32 on purpose), BatchNorm statistics and the optimizer state stay fp32.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)

AMP_CHOICES = ("auto", "bf16", "fp16", "none")
_BF16_FLAGS = ("amx_bf16",)


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """True when the CPU has bf16 matrix units (AMX-BF16) that make bf16 faster than fp32."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return any(f in flags for f in _BF16_FLAGS)


@functools.lru_cache(maxsize=8)
def _log_fallback(device_type: str) -> None:
    log.warning("rtsseg.precision: amp=auto uses fp32 on this %s (no native bf16 matrix units)", device_type)


def autocast_dtype(amp: str, device: str | torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device``, or None for fp32.

    ``fp16`` is CUDA only (it needs a GradScaler); ``bf16`` is honoured on any device."""
    device = torch.device(device)
    if amp not in AMP_CHOICES:
        raise ValueError(f"amp must be one of {'|'.join(AMP_CHOICES)}, got {amp!r}")
    if amp == "auto":
        if device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16()):
            return torch.bfloat16
        _log_fallback(device.type)
        return None
    if amp == "fp16" and device.type != "cuda":
        raise ValueError(f"amp='fp16' needs CUDA (device is {device}): use amp='bf16' or 'none'")
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[amp]


def autocast(device: str | torch.device, dtype: torch.dtype | None):
    """``torch.autocast(device.type, dtype)`` when ``dtype`` is set, else a no-op context."""
    device = torch.device(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
