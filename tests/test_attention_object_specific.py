"""Object-specific attention scores: own ground truth minus other images' ground truths (a permutation null).

Exactness of the zero for image-independent maps is *by construction*, not in expectation: with the same map on
every image, the sum over images of its scores against permuted ground truths is the sum of its scores against
all ground truths, for any single permutation. The tests use random derangements (and, for the per-image hand
formula, all cyclic shifts)."""

from __future__ import annotations

import pytest
import torch

from rtsseg.attention.evaluate import (broadcast_map, centre_prior_map, cyclic_shifts, dataset_mean_map,
                                       derangements, mean_object_map, object_specific, object_specific_interval,
                                       planted_maps, score_maps)
from rtsseg.attention.masks import box_mask
from rtsseg.stats import verdict


def _boxes(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    lo = torch.randint(0, size // 2, (n, 2), generator=g)
    hi = lo + torch.randint(4, size // 2, (n, 2), generator=g)
    boxes = torch.cat([lo, hi.clamp(max=size - 1)], 1).float()
    return torch.stack([box_mask(b, (size, size)) for b in boxes])


@pytest.mark.parametrize("n", [2, 3, 7, 50])
def test_derangements_never_fix_a_point(n):
    p = derangements(n, 64, seed=n)
    assert p.shape == (64, n)
    assert not (p == torch.arange(n)).any()
    assert (p.sort(1).values == torch.arange(n)).all()  # permutations
    c = cyclic_shifts(n)
    assert c.shape == (n - 1, n) and not (c == torch.arange(n)).any()
    # every image meets every other image's ground truth exactly once over the cyclic shifts
    for i in range(n):
        assert sorted(c[:, i].tolist()) == [j for j in range(n) if j != i]
    with pytest.raises(ValueError, match="at least 2 images"):
        derangements(1, 4)


def test_derangements_within_groups_stay_in_their_group():
    groups = [torch.tensor([0, 3, 4]), torch.tensor([1, 2, 5, 6])]
    p = derangements(7, 32, seed=0, groups=groups)
    assert not (p == torch.arange(7)).any()
    for grp in groups:
        assert torch.isin(p[:, grp], grp).all()
    with pytest.raises(ValueError, match="partition"):
        derangements(7, 4, groups=[torch.tensor([0, 1]), torch.tensor([1, 2])])
    with pytest.raises(ValueError, match="at least 2 images"):
        derangements(3, 4, groups=[torch.tensor([0]), torch.tensor([1, 2])])


def test_default_null_is_drawn_within_the_crossfit_halves():
    gts = _boxes(21)
    s = object_specific(planted_maps(gts, snr=2.0, generator=torch.Generator().manual_seed(0)), gts, n_perm=5)
    a, b = s.halves
    assert torch.isin(s.permutations[:, a], a).all() and torch.isin(s.permutations[:, b], b).all()
    assert not (s.permutations == torch.arange(21)).any()


def test_derangements_are_seeded_and_varied():
    assert torch.equal(derangements(20, 8, seed=3), derangements(20, 8, seed=3))
    assert not torch.equal(derangements(20, 8, seed=3), derangements(20, 8, seed=4))
    assert len({tuple(p.tolist()) for p in derangements(20, 8)}) == 8


@pytest.mark.parametrize("kind", ["centre", "constant", "mean_object", "dataset_mean"])
def test_image_independent_maps_have_zero_excess(kind):
    gts = _boxes(31)  # odd: unequal halves
    grid = (8, 8)
    if kind == "centre":
        maps = broadcast_map(centre_prior_map(grid), 31, heads=2)
    elif kind == "constant":
        maps = torch.ones(31, 2, *grid)
    elif kind == "mean_object":
        maps = broadcast_map(mean_object_map(_boxes(100, seed=5), grid), 31)
    else:
        own = planted_maps(gts, snr=3.0, generator=torch.Generator().manual_seed(0), heads=3)
        maps = dataset_mean_map(own)
    s = object_specific(maps, gts, n_perm=8, seed=1)
    for metric in ("auroc", "mass_ratio"):
        for e in s.excess[metric][0].mean(0):  # per head, mean over images
            assert float(e) == pytest.approx(0.0, abs=1e-12)
        summary = s.summary()
        assert summary[f"{metric} excess best"] == pytest.approx(0.0, abs=1e-12)
        assert summary[f"{metric} own mean"] == pytest.approx(summary[f"{metric} null mean"], abs=1e-12)
    # the interval of an image-independent map's excess contains 0 (its per-image values are the null spread)
    assert verdict(object_specific_interval(s, n_boot=300)) == "no measurable difference"


def test_per_image_null_over_all_cyclic_shifts_by_hand():
    """With every other ground truth once, image i's null is the mean of the map's scores on the other images:
    for an image-independent map, excess_i = f_i - (S - f_i) / (n - 1), S = sum_j f_j."""
    gts = _boxes(9)
    maps = broadcast_map(centre_prior_map((8, 8)), 9)
    s = object_specific(maps, gts, permutations=cyclic_shifts(9))
    f = score_maps(maps, gts)["auroc"][:, 0]  # [9] own scores, independent reference
    want = f - (f.sum() - f) / 8
    torch.testing.assert_close(s.excess["auroc"][0][:, 0], want)
    with pytest.raises(ValueError, match="at least 4"):
        object_specific(maps[:3], gts[:3])
    # a non-constant map on a given derangement, by hand: map i against gt perm[i]
    other = planted_maps(gts, snr=2.0, generator=torch.Generator().manual_seed(2))
    perm = derangements(9, 1, seed=7)
    t = object_specific(other, gts, permutations=perm)
    by_hand = score_maps(other, gts[perm[0]])["auroc"]
    torch.testing.assert_close(t.null["auroc"][0], by_hand)
    torch.testing.assert_close(t.excess["auroc"][0], score_maps(other, gts)["auroc"] - by_hand)


def test_planted_maps_keep_a_large_excess():
    gts = _boxes(60)
    gen = torch.Generator().manual_seed(0)
    seeds = [planted_maps(gts, snr=5.0, generator=gen, heads=3) for _ in range(2)]
    s = object_specific(seeds, gts, n_perm=8)
    summary = s.summary()
    assert summary["auroc excess best"] > 0.2 and summary["auroc excess mean"] > 0.2
    assert summary["mass_ratio excess best"] > 0.2
    assert summary["auroc own best"] > summary["auroc null best"]
    iv = object_specific_interval(s, n_boot=300)
    assert verdict(iv) == "above" and iv.n == 2
    # noise maps (snr 0) carry no object: their excess is within noise of 0
    noise = object_specific(planted_maps(gts, snr=0.0, generator=gen, heads=3), gts)
    assert abs(noise.summary()["auroc excess best"]) < 0.05


def test_crossfit_best_head_and_bookkeeping():
    gts = _boxes(40)
    gen = torch.Generator().manual_seed(0)
    good = planted_maps(gts, snr=5.0, generator=gen)
    maps = torch.cat([broadcast_map(centre_prior_map((8, 8)), 40), good], 1)  # head 0 image-independent
    s = object_specific(maps, gts)
    assert s.heads["auroc"][0] == (1, 1)  # the head that follows the object, chosen on either half
    assert s.per_head("auroc")[0] == pytest.approx(0.0, abs=1e-12) and s.per_head("auroc")[1] > 0.2
    a, b = s.halves
    best = s.per_image("auroc")[0]
    assert best.shape == (40,)
    # with even halves, the per-image mean is the cross-fitted mean (choose on one half, report on the other)
    assert best.mean() == pytest.approx(0.5 * (float(s.excess["auroc"][0][b, 1].mean())
                                               + float(s.excess["auroc"][0][a, 1].mean())))
    # images without an AUROC (empty or full ground truth) are left out and counted
    gts2 = gts.clone()
    gts2[3] = False
    gts2[7] = True
    t = object_specific(maps, gts2)
    assert t.left_out == 2 and t.images == 38 and 3 not in t.index.tolist() and 7 not in t.index.tolist()
    with pytest.raises(ValueError, match="keeps an image"):
        object_specific(maps, gts, permutations=torch.arange(40)[None])
    with pytest.raises(ValueError, match="same heads and grid"):
        object_specific([maps, maps[:, :1]], gts)


def test_interval_over_frames_uses_blocks_within_sequences():
    gts = _boxes(40)
    gts[5] = False  # left out: the sequence ids of all 40 images are narrowed to the 39 kept
    gen = torch.Generator().manual_seed(0)
    s = object_specific([planted_maps(gts, snr=3.0, generator=gen, heads=2) for _ in range(2)], gts)
    seq = ["a"] * 20 + ["b"] * 20
    blocked = object_specific_interval(s, sequences=seq, block_len=4, n_boot=300)
    assert "blocks" in blocked.method and blocked.n == 2
    assert blocked.mean == pytest.approx(object_specific_interval(s, n_boot=300).mean)
    with pytest.raises(ValueError, match="sequence ids"):
        object_specific_interval(s, sequences=seq[:30])
