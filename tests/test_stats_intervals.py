"""The one interval module: t intervals against scipy, verdicts on made-up intervals, and the coverage of the
bootstraps on synthetic designs where the truth is known (AR(1) frames, seeds with a random effect)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps
from scipy.signal import lfilter

from rtsseg.stats import (
    Interval,
    across,
    block_bootstrap,
    block_length,
    bootstrap_interval,
    detectable_effect,
    hierarchical_bootstrap,
    lag_autocorrelation,
    paired_block_bootstrap,
    paired_hierarchical_bootstrap,
    seed_table,
    stratified_bootstrap,
    t_interval,
    verdict,
    verdict_sentence,
)


def iv(lo, hi, mean=None):
    return Interval((lo + hi) / 2 if mean is None else mean, lo, hi, 5, 0.95, "t")


# ---------------------------------------------------------------------------------------------- t interval
def test_t_interval_against_scipy():
    x = np.array([0.31, 0.27, 0.35, 0.29, 0.40])
    ref = sps.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
    got = t_interval(x)
    assert got.mean == pytest.approx(x.mean())
    assert (got.lo, got.hi) == pytest.approx(ref, rel=1e-12)
    ref90 = sps.t.interval(0.90, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
    assert (t_interval(x, level=0.9).lo, t_interval(x, level=0.9).hi) == pytest.approx(ref90, rel=1e-12)
    assert got.n == 5 and got.method == "t" and got.level == 0.95


def test_t_interval_one_value_and_bad_input():
    one = t_interval([0.5])
    assert one.mean == 0.5 and math.isnan(one.lo) and not one.has_interval
    assert one.text(2) == "0.50 (n=1)"
    with pytest.raises(ValueError, match="no values"):
        t_interval([])
    with pytest.raises(ValueError, match="non-finite"):
        t_interval([1.0, float("nan")])
    with pytest.raises(ValueError, match="level"):
        t_interval([1.0, 2.0], level=95)


def test_interval_text_matches_the_old_format_ci_and_signed_form():
    # rtsseg.seg.experiment.format_ci([0.1, 0.2, 0.3]) == "20.0 [-4.8, 44.8] (n=3)"
    assert t_interval([0.1, 0.2, 0.3]).text(1, scale=100, show_n=True) == "20.0 [-4.8, 44.8] (n=3)"
    assert t_interval([0.1, 0.2, 0.3]).text(1, scale=100) == "20.0 [-4.8, 44.8]"
    assert iv(-0.006, 0.018, 0.013).text(3, signed=True) == "+0.013 [\u22120.006, +0.018]"
    assert iv(-0.0001, 0.018, 0.0001).text(3, signed=True).startswith("0.000 [0.000")


def test_interval_roundtrip_through_json():
    a = t_interval([1.0, 2.0, 4.0])
    assert Interval.from_dict(json.loads(json.dumps(a.as_dict()))) == a
    one = t_interval([3.0])
    back = Interval.from_dict(json.loads(json.dumps(one.as_dict())))  # NaN bounds saved as null
    assert back.mean == 3.0 and math.isnan(back.lo) and math.isnan(back.hi)
    with pytest.raises(ValueError, match="missing keys"):
        Interval.from_dict({"mean": 1.0})
    assert a.half_width == pytest.approx((a.hi - a.lo) / 2)


# ------------------------------------------------------------------------------------------------ verdicts
def test_verdict_above_below_contains_and_boundary():
    assert verdict(iv(0.01, 0.05)) == "above"
    assert verdict(iv(-0.05, -0.01)) == "below"
    assert verdict(iv(-0.01, 0.05)) == "no measurable difference"
    assert verdict(iv(0.0, 0.05)) == "no measurable difference"  # a bound on the null does not exclude it
    assert verdict(iv(-0.05, 0.0)) == "no measurable difference"
    assert verdict(iv(0.6, 0.7), null=0.5) == "above"
    assert verdict(iv(0.6, 0.7), null=0.65) == "no measurable difference"
    assert verdict(iv(0.6, 0.7), null=0.75) == "below"
    assert verdict(t_interval([0.3])) == "no measurable difference"  # no interval from one seed
    assert iv(-0.01, 0.05).contains(0) and not iv(0.01, 0.05).contains(0)


def test_across():
    assert across(["above", "above", "above"]) == "consistent"
    assert across(["no measurable difference"]) == "consistent"
    assert across(["above", "no measurable difference"]) == "inconclusive"
    assert across(["above", "below"]) == "inconclusive"
    with pytest.raises(ValueError):
        across([])
    with pytest.raises(ValueError, match="not verdicts"):
        across(["yes"])


def test_detectable_effect_and_sentence():
    a = iv(-0.006, 0.018, 0.013)  # half-width 0.012
    assert detectable_effect(a) == pytest.approx(0.012)
    z = sps.norm.ppf(0.975)
    assert detectable_effect(a, power=0.8) == pytest.approx(0.012 * (z + sps.norm.ppf(0.8)) / z)
    assert math.isnan(detectable_effect(t_interval([1.0])))
    s = verdict_sentence("DINO \u2212 random init", a, unit="AUROC")
    assert s == ("DINO \u2212 random init: +0.013 [\u22120.006, +0.018] AUROC, no measurable difference from 0 "
                 "(smallest detectable effect \u00b10.012)")
    s2 = verdict_sentence("DINO", iv(0.61, 0.70), null_name="the centre prior", null=0.5, decimals=2)
    assert s2.startswith("DINO: +0.66 [+0.61, +0.70], above the centre prior (")
    s3 = verdict_sentence("x", iv(-0.3, -0.1), unit="points", scale=100, decimals=1)
    assert s3 == "x: \u221220.0 [\u221230.0, \u221210.0] points, below 0 (smallest detectable effect \u00b110.0)"


def test_seed_table_interval_cells_from_numbers():
    rows = [{"b": "vit", "init": "bt", "seed": s, "acc": a} for s, a in enumerate([0.1, 0.2, 0.3])]
    rows.append({"b": "vit", "init": "random", "seed": 0, "acc": 0.05})
    ci = seed_table(rows, "b", "init", "acc", cell="ci")
    assert ci.loc["vit", "bt"] == "20.0 [-4.8, 44.8]"
    assert ci.loc["vit", "random"] == "5.0 (n=1)"
    cells = seed_table(rows, "b", "init", "acc", cell="interval")
    assert isinstance(cells.loc["vit", "bt"], Interval) and cells.loc["vit", "bt"].n == 3
    assert seed_table(rows, "b", "init", "acc").loc["vit", "bt"] == "20.0 ± 10.0 (n=3)"
    with pytest.raises(ValueError, match="cell="):
        seed_table(rows, "b", "init", "acc", cell="sd")


# ------------------------------------------------------------------------------------- autocorrelation
def ar1(rng, n, rho, burn=200):
    return lfilter([1.0], [1.0, -rho], rng.normal(size=n + burn))[burn:]


def test_lag_autocorrelation_against_hand_formula():
    x = np.array([1.0, 3.0, 2.0, 5.0, 4.0])
    d = x - x.mean()
    assert lag_autocorrelation(x) == pytest.approx((d[:-1] * d[1:]).sum() / (d * d).sum())
    assert lag_autocorrelation(x, lag=2) == pytest.approx((d[:-2] * d[2:]).sum() / (d * d).sum())
    # pairs never straddle two sequences
    seq = [0, 0, 0, 1, 1]
    within = d[0] * d[1] + d[1] * d[2] + d[3] * d[4]
    assert lag_autocorrelation(x, sequences=seq) == pytest.approx(within / (d * d).sum())
    assert math.isnan(lag_autocorrelation([2.0, 2.0, 2.0]))
    rng = np.random.default_rng(0)
    assert lag_autocorrelation(ar1(rng, 5000, 0.9)) == pytest.approx(0.9, abs=0.03)


def test_block_length_grows_with_dependence():
    rng = np.random.default_rng(0)
    white = block_length(rng.normal(size=1000))
    strong = block_length(ar1(rng, 1000, 0.9))
    assert white <= 3
    assert 15 <= strong <= math.ceil(3 * math.sqrt(1000))
    with pytest.raises(ValueError, match="reappears"):
        block_length(np.arange(6.0), sequences=[0, 0, 1, 1, 0, 0])


def test_block_bootstrap_blocks_stay_in_sequences():
    # two sequences with very different levels: every replicate keeps 10 frames of each, so the replicate
    # mean of a constant-per-sequence series never moves
    x = np.r_[np.zeros(10), np.ones(10)]
    a = block_bootstrap(x, block_len=4, sequences=[0] * 10 + [1] * 10, n_boot=200)
    assert a.lo == pytest.approx(0.5) and a.hi == pytest.approx(0.5)
    b = block_bootstrap(x, block_len=4, n_boot=200)  # one series: blocks mix the two levels
    assert b.hi - b.lo > 0.1
    with pytest.raises(ValueError, match="one sequence id per frame"):
        block_bootstrap(x, sequences=[0, 1])


def test_block_bootstrap_covers_ar1_mean_iid_does_not():
    """200 AR(1) series (rho 0.9, T = 1000, true mean 0): the block interval covers 0 in most of them, the iid
    one (blind to the dependence, about 4.4x too narrow) in far fewer."""
    rng = np.random.default_rng(1)
    block = iid = 0
    for i in range(200):
        x = ar1(rng, 1000, 0.9)
        block += block_bootstrap(x, n_boot=400, seed=i).contains(0.0)
        iid += bootstrap_interval(x, n_boot=400, seed=i).contains(0.0)
    assert 0.85 <= block / 200 <= 0.99
    assert iid / 200 < 0.6
    assert block - iid > 50


# ------------------------------------------------------------------------------------------ hierarchical
def test_hierarchical_covers_mean_over_seeds_image_only_does_not():
    """200 designs of 10 seeds × 50 images, a seed random effect (sd 0.5) on unit image noise, true mean 0."""
    rng = np.random.default_rng(2)
    hier = img = 0
    for i in range(200):
        v = rng.normal(size=(10, 50)) + 0.5 * rng.normal(size=(10, 1))
        hier += hierarchical_bootstrap(v, n_boot=400, seed=i).contains(0.0)
        img += bootstrap_interval(v.ravel(), n_boot=400, seed=i).contains(0.0)
    assert hier / 200 >= 0.88
    assert img / 200 < 0.6


def test_hierarchical_bootstrap_shapes_and_one_seed():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(3, 40))
    a = hierarchical_bootstrap(v, n_boot=300)
    b = hierarchical_bootstrap(list(v), n_boot=300)
    assert a == b and a.n == 3 and a.mean == pytest.approx(v.mean())
    # ragged seeds: the estimate is the pooled mean, the interval exists
    r = hierarchical_bootstrap([v[0], v[1, :20]], n_boot=300)
    assert r.mean == pytest.approx(np.r_[v[0], v[1, :20]].mean()) and r.lo < r.mean < r.hi
    # a custom statistic
    med = hierarchical_bootstrap(v, stat=np.median, n_boot=300)
    assert med.mean == pytest.approx(np.median(v))
    # one seed: the image bootstrap (same replicates, said in the method)
    one = hierarchical_bootstrap(v[:1], n_boot=300)
    assert "1 seed" in one.method and one.lo < one.mean < one.hi
    # the seed spread widens the interval: shifting seeds apart widens it, shifting all together does not
    spread = hierarchical_bootstrap(v + np.array([[-1.0], [0.0], [1.0]]), n_boot=300)
    assert spread.half_width > 2 * a.half_width
    shifted = hierarchical_bootstrap(v + 5.0, n_boot=300)
    assert shifted.half_width == pytest.approx(a.half_width)


def test_paired_variants_take_per_image_differences():
    rng = np.random.default_rng(3)
    hard = rng.normal(size=(3, 60)) * 5  # shared between the two: cancels in the pairs
    a, b = hard + 0.1 + 0.01 * rng.normal(size=(3, 60)), hard
    p = paired_hierarchical_bootstrap(a, b, n_boot=300)
    assert p == hierarchical_bootstrap(a - b, n_boot=300)
    assert verdict(p) == "above"
    assert verdict(hierarchical_bootstrap(a, n_boot=300), null=float(b.mean())) == "no measurable difference"
    q = paired_block_bootstrap(a[:1], b[:1], block_len=5, n_boot=300)
    assert q == block_bootstrap(a[0] - b[0], block_len=5, n_boot=300)
    with pytest.raises(ValueError, match="same seeds and images"):
        paired_hierarchical_bootstrap(a, b[:, :10])


def test_stratified_bootstrap_keeps_groups():
    rng = np.random.default_rng(4)
    x = rng.normal(size=6)
    alone = stratified_bootstrap([x], n_boot=500)
    with_const = stratified_bootstrap([x, [2.0] * 4], n_boot=500)  # a group without spread adds no width
    assert with_const.mean == pytest.approx((x.mean() + 2.0) / 2)
    assert with_const.half_width == pytest.approx(alone.half_width / 2)
    assert with_const.n == 2 and with_const.lo < with_const.mean < with_const.hi
    # groups are not resampled: shifting one group moves the estimate by shift / groups, width unchanged
    shifted = stratified_bootstrap([x, [12.0] * 4], n_boot=500)
    assert shifted.half_width == pytest.approx(with_const.half_width)
    one_each = stratified_bootstrap([[1.0], [3.0]])
    assert one_each.mean == 2.0 and not one_each.has_interval
    # unequal group sizes: the mean of group means, not of all values
    assert stratified_bootstrap([[0.0, 0.0, 0.0, 1.0], [1.0, 0.0]], n_boot=50).mean == pytest.approx(0.375)
