"""The one warmup + cosine schedule against a direct formula (facebookresearch/dino utils.cosine_scheduler)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rtsseg.schedule import cosine_scheduler


def _dino_reference(base, final, epochs, niter_per_ep, warmup_epochs=0, start_warmup_value=0.0):
    """dino/utils.py cosine_scheduler, copied verbatim (per epoch x iteration)."""
    warmup_schedule = np.array([])
    warmup_iters = warmup_epochs * niter_per_ep
    if warmup_epochs > 0:
        warmup_schedule = np.linspace(start_warmup_value, base, warmup_iters)
    iters = np.arange(epochs * niter_per_ep - warmup_iters)
    schedule = final + 0.5 * (base - final) * (1 + np.cos(np.pi * iters / len(iters)))
    return np.concatenate((warmup_schedule, schedule))


def test_matches_dino_and_the_direct_formula():
    got = cosine_scheduler(0.5, 1e-3, total_steps=7 * 13, warmup_steps=2 * 13, start_warmup_value=0.01)
    np.testing.assert_allclose(got, _dino_reference(0.5, 1e-3, 7, 13, 2, 0.01), rtol=0, atol=1e-15)
    total, warm = 100, 10
    s = cosine_scheduler(2.0, 0.1, total, warm)
    assert s[0] == 0.0 and s[warm - 1] == pytest.approx(2.0)  # linspace: both ends included
    for step in range(warm, total):
        i = step - warm
        assert s[step] == pytest.approx(0.1 + 0.5 * 1.9 * (1 + math.cos(math.pi * i / (total - warm))))
    assert all(a >= b for a, b in zip(s[warm:], s[warm + 1 :]))  # monotone decay after the warmup


def test_no_warmup_and_clamped_warmup_and_bad_lengths():
    s = cosine_scheduler(1.0, 0.0, 4)
    np.testing.assert_allclose(s, [1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4))])
    np.testing.assert_allclose(cosine_scheduler(1.0, 0.0, 5, warmup_steps=50), np.linspace(0, 1, 5))
    with pytest.raises(ValueError, match="total_steps"):
        cosine_scheduler(1.0, 0.0, 0)
    with pytest.raises(ValueError, match="warmup"):
        cosine_scheduler(1.0, 0.0, 10, warmup_steps=-1)
