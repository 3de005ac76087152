"""Result tables."""

from __future__ import annotations

import math

import pytest

from rtsseg.analysis.plots import results_table

ROWS = [
    {"backbone": "resnet", "pretraining": "barlow", "value": 0.4567},
    {"backbone": "resnet", "pretraining": "random", "value": 0.1},
    {"backbone": "swin", "pretraining": "barlow", "value": 0.5},
]


def test_results_table_pivots_and_scales():
    t = results_table(ROWS)
    assert t.loc["resnet", "barlow"] == 45.7
    assert t.loc["swin", "barlow"] == 50.0
    assert math.isnan(t.loc["swin", "random"])


def test_results_table_rejects_duplicates_and_missing_columns():
    with pytest.raises(ValueError, match="several runs"):
        results_table(ROWS + [ROWS[0]])
    with pytest.raises(KeyError, match="miou"):
        results_table(ROWS, values="miou")
