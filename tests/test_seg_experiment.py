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


def test_pooled_difference_is_mean_of_cell_means_with_within_cell_bootstrap():
    import numpy as np

    from rtsseg.seg.experiment import cell_differences, mean_of_cell_means, pooled_difference

    # cell A: 3 seeds with differences 0.20, 0.21, 0.22; cell B: 1 seed with difference -0.4
    a = [0.20, 0.21, 0.22]
    rows = []
    for cell, diffs in (("A", a), ("B", [-0.4])):
        for seed, d in enumerate(diffs):
            rows += [{"backbone": cell, "init": "r", "seed": seed, "decoder": "attn_all", "mIoU": 0.5 + d},
                     {"backbone": cell, "init": "r", "seed": seed, "decoder": "control", "mIoU": 0.5}]
    scores = pd.DataFrame(rows)
    pooled = pooled_difference(scores, "attn_all", "control", n_boot=4000, seed=1)
    assert pooled.mean == pytest.approx((0.21 - 0.4) / 2)  # mean of cell means, not the 4 pairs' mean
    assert pooled.n == 2
    # the bound of a stratified bootstrap, by its own enumeration: cell A's resampled mean over the 27 equally likely
    # draws, cell B fixed; the 2.5 % / 97.5 % quantiles of (mean_A - 0.4) / 2
    draws = np.array([np.mean(c) for c in np.array(np.meshgrid(a, a, a)).reshape(3, -1).T])
    lo, hi = np.quantile((draws - 0.4) / 2, [0.025, 0.975])
    assert (pooled.lo, pooled.hi) == pytest.approx((lo, hi), abs=0.002)
    cells = cell_differences(scores, "attn_all", "control").set_index("backbone")
    assert cells.loc["A", "n"] == 3 and cells.loc["A", "mean"] == pytest.approx(0.21)
    assert cells.loc["A", "hi"] - 0.21 == pytest.approx(4.3027 * 0.01 / math.sqrt(3), rel=1e-4)  # t_{0.975,2}, s = 0.01
    assert cells.loc["A", "verdict"] == "above" and cells.loc["B", "verdict"] == "no measurable difference"
    assert math.isnan(cells.loc["B", "lo"])
    iv = mean_of_cell_means([[0.3], [0.1]])
    assert iv.mean == pytest.approx(0.2) and math.isnan(iv.lo)


def test_carve_apart_from_val_drops_and_counts_frames_near_val():
    from rtsseg.seg.train import carve_apart_from_val, frame_number

    assert frame_number("0016E5_08190") == 8190 and frame_number("0006R0_f03870") == 3870
    with pytest.raises(ValueError, match="frame number"):
        frame_number("0016E5")
    # one train drive 0016E5 at 30-frame steps 0..1500, val frames 700-760 of the same drive, and another drive
    train = [f"0016E5_{f:05d}" for f in range(0, 1501, 30)] + [f"0001TP_{f:06d}" for f in range(600, 901, 30)]
    val = [f"0016E5_{f:05d}" for f in range(700, 761, 2)]
    carve = carve_apart_from_val(train, val, fraction=0.2, min_gap=150)
    near = [i for i, s in enumerate(train) if s.startswith("0016E5") and 700 - 150 < frame_number(s) < 760 + 150]
    assert sorted(carve.dropped) == near
    # by hand: distance < 150 to the clip 700..760 means 550 < f < 910, i.e. frames 570, 600, ..., 900
    assert [frame_number(train[i]) for i in sorted(carve.dropped)] == list(range(570, 901, 30))
    kept = set(carve.fit) | set(carve.held)
    assert kept.isdisjoint(carve.dropped) and len(kept) + len(carve.dropped) == len(train)
    for i in kept:  # the gap holds for fit and held-out frames alike
        if train[i].startswith("0016E5"):
            assert min(abs(frame_number(train[i]) - frame_number(v)) for v in val) >= 150
    assert any(train[i].startswith("0001TP") for i in carve.held)  # the other drive is not touched
    assert carve_apart_from_val(train, val, 0.2, min_gap=0).dropped == []


def _tiny_stores(n: int = 4, heads: int = 2, grid=(4, 6)):
    import torch

    from rtsseg.seg.train import OutputStore

    g = torch.Generator().manual_seed(0)
    h, w = grid
    masks = torch.zeros(n, 4 * h, 4 * w, dtype=torch.uint8)
    masks[:, :, 2 * w:] = 1
    masks[1, :4] = 255

    def store():
        return OutputStore(stages=[[torch.randn(8, h, w, generator=g).half()] for _ in range(n)],
                           affinity=[torch.rand(heads, h * w, h * w, generator=g).softmax(-1).half() for _ in range(n)],
                           maps=[torch.rand(heads, h, w, generator=g).softmax(-1) for _ in range(n)],
                           masks=list(masks), identity={"fake": 1})
    return {"fit": store(), "holdout": store(), "val": store()}


def test_chapter_steps_on_a_tiny_grid():
    from rtsseg.seg import experiment as ex

    kw = dict(lrs=[1e-2], epochs=1, batch_size=4, label_stride=1, patience=None, embed_dim=16, fuse_dim=16, k=1,
              amp="none", device="cpu")
    rows = []
    for seed in (0, 1):
        new, decs = ex.fit_variants(_tiny_stores(), [("control", 0.0), ("attn_all", 0.0)], 2, seed, kw,
                                    oracle_snrs=[math.inf], things=[1])
        assert [r["decoder"] for r in new] == ["control", "attn_all", "attn_all | oracle snr=inf"]
        assert set(decs) == {r["decoder"] for r in new}
        rows += [dict(r, backbone="b", init="random", seed=seed) for r in new]
    scores = pd.DataFrame(rows)
    assert (scores["things mIoU"] == scores["iou"].map(lambda v: v[1])).all()  # one thing class: its IoU
    assert ex.comparisons(scores) == ["attn_all", "attn_all | oracle snr=inf"]
    assert ex.comparisons(scores[scores.decoder != "control"]) == []
    table = ex.ci_table(scores, order=["random", "dino"])
    assert list(table.columns) == ["random"] and table.shape == (3, 1)
    diff = ex.difference_table(scores, ex.comparisons(scores))
    assert diff.index.names == ["comparison", "backbone", "init", "value"] and len(diff) == 4
    answer = ex.headline(scores)
    d = ex.paired_differences(scores, "attn_all", "control").difference
    assert answer["pairs"] == 2 and answer["cells"] == 1 and answer["interval"].mean == pytest.approx(d.mean())
    assert ex.headline(scores, "attn_prop")["interval"] is None
    assert "oracle" not in ex.best_cell(scores)[2]
    per = ex.per_class_table(scores, ["a", "b"], "b", "random", ["control", "missing"])
    assert list(per.columns) == ["control"] and per.shape == (2, 1)
    assert len(ex.all_pairs(scores, ["attn_all"])) == 2
