"""Grid statistics: t intervals and paired differences."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from rtsseg.seg.experiment import format_ci, paired_differences, t_interval


def test_t_interval_against_hand_values():
    m, lo, hi = t_interval([0.0, 2.0])  # s = sqrt(2), t_{0.975, 1} = 12.7062
    assert m == 1.0 and hi - m == pytest.approx(12.7062 * math.sqrt(2) / math.sqrt(2), rel=1e-4)
    m, lo, hi = t_interval([1.0, 2.0, 3.0])  # s = 1, t_{0.975, 2} = 4.3027
    assert (lo, hi) == pytest.approx((2 - 4.3027 / math.sqrt(3), 2 + 4.3027 / math.sqrt(3)), rel=1e-4)
    assert math.isnan(t_interval([0.5])[1])
    assert format_ci([0.1, 0.2, 0.3]) == "20.0 [-4.8, 44.8] (n=3)"
    assert format_ci([0.1, 0.2, 0.3], show_n=False) == "20.0 [-4.8, 44.8]"
    assert format_ci([0.25], show_n=False) == "25.0 (n=1)"


def test_paired_differences_pair_by_keys():
    rows = [
        {"backbone": "a", "init": "r", "seed": 0, "decoder": "attn_all", "mIoU": 0.30},
        {"backbone": "a", "init": "r", "seed": 1, "decoder": "attn_all", "mIoU": 0.25},
        {"backbone": "a", "init": "r", "seed": 1, "decoder": "control", "mIoU": 0.20},
        {"backbone": "a", "init": "r", "seed": 0, "decoder": "control", "mIoU": 0.10},
        {"backbone": "a", "init": "r", "seed": 2, "decoder": "control", "mIoU": 0.50},  # no partner: dropped
    ]
    d = paired_differences(pd.DataFrame(rows), "attn_all", "control")
    assert sorted(zip(d.seed, d.difference.round(6))) == [(0, 0.2), (1, 0.05)]
