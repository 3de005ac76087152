"""Readable attention scores: token-level scores equal pixel-level references, chance level equals a
Monte-Carlo estimate, planted maps rise monotonically from chance, cross-fitted head choice is unbiased."""

from __future__ import annotations

import math

import pytest
import torch
from sklearn.metrics import roc_auc_score

from rtsseg.attention.evaluate import (centre_prior_map, crossfit_best, jaccard_chance, map_scores,
                                       paired_difference, pixel_scores, planted_maps, score_maps, split_halves,
                                       token_index)
from rtsseg.attention.masks import box_mask, upsample_maps


def _boxes(n: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    lo = torch.randint(0, size // 2, (n, 2), generator=g)
    hi = lo + torch.randint(2, size // 2, (n, 2), generator=g)
    boxes = torch.cat([lo, hi.clamp(max=size - 1)], 1).float()  # x0, y0, x1, y1
    return torch.stack([box_mask(b, (size, size)) for b in boxes])


@pytest.mark.parametrize("size", [64, 20])  # 20 px: unequal token areas under nearest upsampling
def test_token_scores_equal_pixel_scores(size):
    gts = _boxes(6, size)
    maps = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    maps[0, 0] = 1.0  # a tied map
    maps = maps / maps.sum((-2, -1), keepdim=True)
    tok, pix = score_maps(maps, gts), pixel_scores(maps, gts)
    torch.testing.assert_close(tok["jaccard"], pix["jaccard"], equal_nan=True)
    torch.testing.assert_close(tok["mass_in_gt"], pix["mass_in_gt"].double(), atol=1e-6, rtol=1e-5)
    up = upsample_maps(maps.double(), (size, size))
    for i in range(6):
        for h in range(3):
            want = roc_auc_score(gts[i].flatten().numpy(), up[i, h].flatten().numpy())
            assert tok["auroc"][i, h].item() == pytest.approx(want, abs=1e-9)
            inside = (up[i, h] * gts[i]).sum() / up[i, h].sum()
            assert tok["mass_ratio"][i, h].item() == pytest.approx((inside / gts[i].double().mean()).item())
    assert tok["auroc"][0, 0].item() == pytest.approx(0.5)  # a uniform map: chance


def _mc_chance(gts: torch.Tensor, grid, draws: int, seed: int) -> torch.Tensor:
    """Monte-Carlo: a uniform map with random tie-breaking = a random k-subset of tokens, k = ceil(0.6 T)."""
    n_tok = grid[0] * grid[1]
    k = math.ceil(0.6 * n_tok - 1e-6)
    idx = token_index(grid, gts.shape[-2:])
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros(gts.shape[0], dtype=torch.float64)
    for _ in range(draws):
        chosen = torch.zeros(n_tok, dtype=torch.bool)
        chosen[torch.randperm(n_tok, generator=g)[:k]] = True
        mask = chosen[idx]  # [H, W]
        out += ((mask & gts).flatten(1).sum(1) / (mask | gts).flatten(1).sum(1)).double()
    return out / draws


@pytest.mark.parametrize("size,grid", [(64, (8, 8)), (40, (4, 4)), (20, (8, 8))])
def test_jaccard_chance_equals_monte_carlo(size, grid):
    # (64, 8x8): exact DP; (40, 4x4): 100 px tokens, exact; (20, 8x8): unequal areas -> internal MC
    gts = _boxes(5, size, seed=3)
    exact = jaccard_chance(gts, grid)
    mc = _mc_chance(gts, grid, draws=3000, seed=1)
    assert torch.allclose(exact, mc, atol=0.01), (exact, mc)
    # the uniform map through mass_mask ties and keeps k tokens: same size as the chance mask
    uniform = torch.full((1, 1, *grid), 1.0 / (grid[0] * grid[1]))
    from rtsseg.attention.masks import mass_mask
    assert int(mass_mask(uniform).sum()) == math.ceil(0.6 * grid[0] * grid[1] - 1e-6)


def test_jaccard_chance_quantised_for_large_tokens():
    gts = _boxes(3, 160, seed=5)  # 20x20 px tokens > 256 levels: quantised DP
    assert torch.allclose(jaccard_chance(gts, (8, 8)), _mc_chance(gts, (8, 8), 2000, 2), atol=0.01)


def test_planted_maps_rise_monotonically_from_chance():
    gts = _boxes(300, 64, seed=7)
    chance = jaccard_chance(gts, (8, 8))
    rows = []
    for snr in [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]:
        s = map_scores(planted_maps(gts, snr, torch.Generator().manual_seed(0), heads=2), gts, n_boot=0,
                       chance=chance)
        rows.append((s.mean_head_jaccard, s.mean_head_auroc, s.mean_head_mass_ratio))
    jac, auc, ratio = zip(*rows)
    assert abs(jac[0] - float(chance.mean())) < 0.02
    assert abs(auc[0] - 0.5) < 0.02 and abs(ratio[0] - 1.0) < 0.02
    for series in (jac, auc, ratio):
        assert all(b > a for a, b in zip(series, series[1:])), series
    assert auc[-1] > 0.9


def test_crossfit_is_unbiased_on_exchangeable_heads():
    g = torch.Generator().manual_seed(0)
    insample, crossfit = [], []
    for _ in range(200):
        v = torch.randn(40, 6, generator=g, dtype=torch.float64)  # 6 exchangeable heads, true mean 0
        insample.append(float(v.mean(0).max()))
        a, b = split_halves(40, 0)
        crossfit.append(crossfit_best(v, a, b))
    se = torch.tensor(crossfit).std().item() / math.sqrt(200)
    assert abs(sum(crossfit) / 200) < 3 * se  # unbiased
    assert sum(insample) / 200 > 0.15  # the in-sample choice is biased upwards (E max of 6 means ~ 0.2)


def test_paired_difference_and_ci():
    gts = _boxes(60, 64, seed=2)
    chance = jaccard_chance(gts, (8, 8))
    weak = map_scores(planted_maps(gts, 1.0, torch.Generator().manual_seed(0), heads=2), gts, 200, chance=chance)
    strong = map_scores(planted_maps(gts, 16.0, torch.Generator().manual_seed(1), heads=2), gts, 200, chance=chance)
    d, lo, hi = paired_difference(strong, weak, "auroc", "mean", n_boot=200)
    assert lo < d < hi and lo > 0
    d0, lo0, hi0 = paired_difference(weak, weak, "jaccard", "best", n_boot=200)
    assert d0 == 0 and lo0 == 0 and hi0 == 0
    lo, hi = strong.ci["jaccard best"]
    assert lo <= strong.best_head_jaccard <= hi
    row = strong.row()
    assert row["jaccard chance"] == pytest.approx(100 * float(chance.mean()))
    assert row["auroc chance"] == 0.5 and row["mass_ratio chance"] == 1.0


def test_centre_prior_map():
    m = centre_prior_map((8, 8))
    assert m.sum().item() == pytest.approx(1.0)
    assert m[3:5, 3:5].min() == m.max() and m[0, 0] == m.min()


def test_vectorised_statistic_equals_the_scalar_cross_fit():
    from rtsseg.attention.evaluate import _stat

    v = torch.randn(31, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    a, b = split_halves(31, 0)
    assert _stat([v], torch.arange(31)[None], "best", 0).item() == pytest.approx(crossfit_best(v, a, b))
    idx = torch.randint(0, 31, (4, 31), generator=torch.Generator().manual_seed(1))
    for r in range(4):
        w = v[idx[r]]
        assert _stat([v], idx, "best", 0)[r].item() == pytest.approx(crossfit_best(w, a, b))
        assert _stat([v, 2 * v], idx, "mean", 0)[r].item() == pytest.approx(1.5 * w.mean().item())
