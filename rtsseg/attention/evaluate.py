"""Does attention find the object? Scores of per-head attention maps against ground truth, with their chance
levels, confidence intervals and paired differences.

Protocol (after DINO's Fig. 4 / Table 10): for every image and head, the smallest set of tokens holding 60 %
of the head's attention mass is nearest-upsampled to the label's own resolution and compared with the
ground-truth region by **Jaccard**. Jaccard of a 60 %-mass mask is dominated by the mask's size: a map with no
spatial information (uniform) keeps 60 % of the tokens and scores high on large objects (about 35 on
Tiny-ImageNet boxes, which cover half the image). So every Jaccard comes with

- ``jaccard_chance``: the expected Jaccard of a *uniform* map on the same images. A uniform map ties every
  token; its 60 %-mass mask is the smallest number of tokens k = ceil(0.6 n) holding 60 % (``mass_mask``), and
  *which* k tokens is decided by random tie-breaking: ``jaccard_chance`` is the exact expectation over all
  k-subsets drawn uniformly (computed by dynamic programming over the ground-truth pixel counts of the chosen
  tokens, :func:`jaccard_chance`), averaged over the images;
- ``centre``: the scores of a centre-prior map (an isotropic Gaussian at the image centre, σ = a quarter of the
  grid side) -- what "objects tend to be central" alone achieves.

Two threshold-free, size-independent scores stand beside it:

- ``auroc``: the area under the ROC curve of the map's values (upsampled to the label) as a detector of the
  ground-truth pixels (ties count 1/2): 0.5 = chance, 1 = every object pixel above every background pixel;
- ``mass_ratio``: the share of the map's mass inside the ground truth over the ground truth's area share:
  1.0 = chance (a uniform map), > 1 = attention concentrated on the object.

**Heads.** The *best head* is one head for the whole set, chosen by **split-half cross-fitting**: the images
are split into halves A and B (a fixed random split), the head with the best mean on A is scored on B and
vice versa, and the two are averaged; the head is never chosen on the images it is reported on (choosing
and reporting on the same images adds about +1 Jaccard point when heads are exchangeable). The *mean over
heads* needs no choice. ``mass_in_gt`` (the share of the head-mean map inside the ground truth) is kept.

**Object-specific scores.** Objects are not placed at random: an image-independent centre map reaches AUROC
0.77 on the Tiny-ImageNet val boxes, so 0.5 is not the null for "finds the object". :func:`object_specific`
scores every map against its own image's ground truth minus against other images' ground truths (derangements
within the cross-fitting halves): image-independent maps (:func:`centre_prior_map`, :func:`mean_object_map`,
:func:`dataset_mean_map`) score exactly 0; its per-image excesses feed the seed × image (or frame-block)
intervals of :mod:`rtsseg.stats` (:func:`object_specific_interval`).

**Uncertainty.** Percentile bootstrap over images (fixed seed), re-doing the head choice in every replicate;
:func:`paired_difference` resamples the *same* images for two initialisations, so the CI of their
difference is not inflated by the between-image spread they share.

**ViT vs Swin/BoTNet.** A ViT map is the CLS token's attention (one query that summarises the image), the
Swin/BoTNet map is the attention *received* by each token, averaged over all queries (they have no CLS
token). Pooling over all queries smooths the map towards uniform, which moves the 60 %-mass mask towards the
uniform map's mask and its Jaccard towards ``jaccard_chance`` by construction, whatever the network learned;
a Jaccard difference between the families would measure the map definition, not the training. Compare
families only through the chance-relative, size-free scores (AUROC, mass ratio), and initialisations only
within a family.

All scores are computed at token level with the exact pixel counts of the nearest-upsampling (each token
covers a block of label pixels), which equals the pixel-level computation (tested) at a fraction of its cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from tqdm import tqdm

from rtsseg import stats
from rtsseg.attention.capture import capture_attention
from rtsseg.attention.masks import mass_in_mask, mass_mask, upsample_maps

METRICS = ("jaccard", "auroc", "mass_ratio")
#: value of an information-free map, where it does not depend on the images (Jaccard's does: jaccard_chance)
CHANCE = {"auroc": 0.5, "mass_ratio": 1.0}


# ----------------------------------------------------------------------------- token-level ground truth
def token_index(grid: Sequence[int], size: Sequence[int]) -> torch.Tensor:
    """Flat token index of every label pixel under nearest upsampling (as ``upsample_maps``): long [H, W]."""
    h, w = int(grid[0]), int(grid[1])
    probe = torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w)
    return F.interpolate(probe, size=tuple(size), mode="nearest")[0, 0].long()


def token_counts(gts: torch.Tensor, grid: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """gts bool [N, H, W] -> (ground-truth pixels per token float64 [N, T], pixels per token float64 [T])."""
    idx = token_index(grid, gts.shape[-2:]).flatten()  # [H*W]
    n_tok = int(grid[0]) * int(grid[1])
    area = torch.bincount(idx, minlength=n_tok).double()  # [T]
    g = torch.zeros(gts.shape[0], n_tok, dtype=torch.float64)
    g.index_add_(1, idx, gts.flatten(1).double())  # [N, T]
    return g, area


# ----------------------------------------------------------------------------- per-image, per-head scores
def score_maps(maps: torch.Tensor, gts: torch.Tensor, mass: float = 0.6) -> dict[str, torch.Tensor]:
    """Per-image, per-head scores of maps [N, heads, h, w] against gts bool [N, H, W] (label resolution).

    Returns float64 [N, heads] tensors ``jaccard`` (of the ``mass`` mask), ``auroc`` (NaN when the ground truth
    is empty or covers the whole image), ``mass_ratio``; and ``mass_in_gt`` [N] of the head-mean map.
    """
    if maps.dim() != 4 or gts.dim() != 3 or maps.shape[0] != gts.shape[0]:
        raise ValueError(f"maps must be [N, heads, h, w] and gts [N, H, W] with the same N; got "
                         f"{tuple(maps.shape)} and {tuple(gts.shape)}")
    n, n_heads, h, w = maps.shape
    g, area = token_counts(gts.bool(), (h, w))  # [N, T], [T]
    neg = area - g  # [N, T] background pixels per token
    p = _token_probs(maps)  # [N, heads, T]
    keep = mass_mask(maps.detach(), mass).flatten(2).double()  # [N, heads, T]
    total_g = g.sum(-1, keepdim=True)  # [N, 1]
    inter = (keep * g[:, None]).sum(-1)  # [N, heads]
    union = total_g + (keep * neg[:, None]).sum(-1)
    jac = torch.where(union > 0, inter / union.clamp_min(1), torch.nan)
    head_mean = p.mean(1)  # [N, T]
    return {"jaccard": jac, **size_free_scores(p, g, area),
            "mass_in_gt": (head_mean * g).sum(-1) / (head_mean * area).sum(-1).clamp_min(1e-300)}


def _token_probs(maps: torch.Tensor) -> torch.Tensor:
    """maps [N, heads, h, w] -> float64 [N, heads, T], each map summing to 1."""
    p = maps.detach().double().flatten(2)  # [N, heads, T]
    return p / p.sum(-1, keepdim=True).clamp_min(1e-300)


def size_free_scores(p: torch.Tensor, g: torch.Tensor, area: torch.Tensor) -> dict[str, torch.Tensor]:
    """``auroc`` and ``mass_ratio`` [N, heads] of token maps p [N, heads, T] (summing to 1) against token
    ground-truth counts g [N, T] (pixels per token ``area`` [T]), as :func:`score_maps` defines them."""
    # the pixel-level share of the nearest-upsampled map inside the gt: sum_t p_t g_t / sum_t p_t a_t
    inside = (p * g[:, None]).sum(-1) / (p * area).sum(-1).clamp_min(1e-300)  # [N, heads]
    share = g.sum(-1, keepdim=True) / area.sum()  # [N, 1] area share of the gt
    ratio = torch.where(share > 0, inside / share.clamp_min(1e-300), torch.nan)
    return {"auroc": auroc_tokens(p, g, area - g), "mass_ratio": ratio}


def auroc_tokens(scores: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Mann-Whitney AUROC with token weights: scores [N, heads, T], pos/neg pixel counts [N, T] -> [N, heads].

    AUROC = sum_{i,j} pos_i neg_j (1[s_i > s_j] + 1/2 1[s_i = s_j]) / (P N), the pixel-level AUROC of the
    nearest-upsampled map (ties count 1/2). By sorting: for every token, the background pixels strictly
    below its score plus half of those tied with it. NaN where P or N is 0.
    """
    sv, order = scores.sort(-1)  # [N, heads, T] ascending
    sv = sv.contiguous()
    negs = neg[:, None, :].expand_as(scores).gather(-1, order)
    poss = pos[:, None, :].expand_as(scores).gather(-1, order)
    cum = torch.cat([torch.zeros_like(negs[..., :1]), negs.cumsum(-1)], -1)  # [N, heads, T+1] exclusive
    below = cum.gather(-1, torch.searchsorted(sv, sv, right=False))  # background strictly below
    upto = cum.gather(-1, torch.searchsorted(sv, sv, right=True))  # ... and tied
    num = (poss * (below + 0.5 * (upto - below))).sum(-1)  # [N, heads]
    den = (pos.sum(-1) * neg.sum(-1))[:, None]  # [N, 1]
    return torch.where(den > 0, num / den.clamp_min(1), torch.nan)


# ----------------------------------------------------------------------------- reference maps
def jaccard_chance(gts: torch.Tensor, grid: Sequence[int], mass: float = 0.6, max_levels: int = 256,
                   mc_draws: int = 4096, seed: int = 0, chunk: int = 32) -> torch.Tensor:
    """Expected Jaccard of a uniform map's ``mass`` mask, per image: float64 [N].

    The uniform map's mask is k = ceil(mass * T - 1e-6) of the T tokens (``mass_mask``'s rule), drawn uniformly
    at random among all k-subsets (random tie-breaking). With equal token areas a, the mask's union with the
    ground truth G is |G| + k a - I, I = the ground-truth pixels of the chosen tokens, so E[J] = E[I / (|G| +
    k a - I)] needs only the distribution of I: a dynamic programme over (tokens chosen, pixels covered),
    exact when a <= ``max_levels`` (token pixel counts quantised to 1/max_levels of a token otherwise, an error
    below 1/(2 max_levels) of a token per token). Unequal token areas (label size not a multiple of the grid):
    Monte-Carlo with ``mc_draws`` subsets (seeded).
    """
    g, area = token_counts(gts.bool(), grid)  # [N, T], [T]
    n_img, n_tok = g.shape
    k = math.ceil(mass * n_tok - 1e-6)
    total = g.sum(-1)  # [N]
    if not bool((area == area[0]).all()):
        gen = torch.Generator().manual_seed(seed)
        pick = torch.rand(mc_draws, n_tok, generator=gen).argsort(-1)[:, :k]  # [D, k]
        inter = g[:, pick].sum(-1)  # [N, D]
        union = total[:, None] + area[pick].sum(-1)[None] - inter
        return (inter / union).mean(-1)
    a = float(area[0])
    levels = int(a) if a <= max_levels else max_levels
    q = torch.round(g / a * levels).long()  # [N, T] ground-truth share per token in 1/levels units
    # choosing k tokens = leaving T - k out: run the DP on the smaller count, I = total - (left-out sum)
    complement = n_tok - k < k
    k_dp = n_tok - k if complement else k
    out = torch.empty(n_img, dtype=torch.float64)
    for start in range(0, n_img, chunk):
        qc = q[start : start + chunk]  # [n, T]
        prob = _subset_sum_distribution(qc, k_dp)  # [n, S+1]
        sums = torch.arange(prob.shape[1], dtype=torch.float64) * (a / levels)  # [S+1] pixels
        tot = (qc.sum(1, keepdim=True).double() * (a / levels))  # [n, 1] (quantised |G|)
        inter = tot - sums[None] if complement else sums[None].expand(len(qc), -1)  # [n, S+1]
        union = total[start : start + chunk, None] + k * a - inter
        jac = torch.where(union > 0, inter / union.clamp_min(1e-300), torch.zeros_like(union))
        out[start : start + chunk] = (prob * jac).sum(1)
    return out


def _subset_sum_distribution(q: torch.Tensor, k: int) -> torch.Tensor:
    """q long [n, T] >= 0 -> float64 [n, S+1]: the distribution of sum_{t in K} q_t over the k-subsets K of the
    T tokens drawn uniformly (S = the largest row sum). DP over tokens: dp[c, s] = #subsets of c of the tokens
    so far with sum s; adding token t: dp[c+1, s+q_t] += dp[c, s]. numpy per row: the work is tiny, the
    per-operation overhead of torch would dominate."""
    import numpy as np

    qn = q.numpy()
    n, n_tok = qn.shape
    s_max = int(qn.sum(1).max())
    out = np.zeros((n, s_max + 1))
    for i in range(n):
        top = int(qn[i].sum())
        dp = np.zeros((k + 1, top + 1))
        dp[0, 0] = 1.0
        for v in qn[i]:
            v = int(v)
            # numpy buffers overlapping operands, so the right-hand side is the old dp
            dp[1:, v:] += dp[:-1, : top + 1 - v]
        out[i, : top + 1] = dp[k] / dp[k].sum()
    return torch.from_numpy(out)


def centre_prior_map(grid: Sequence[int], sigma: float = 0.25) -> torch.Tensor:
    """Isotropic Gaussian at the grid centre, σ = ``sigma`` × the grid side, summing to 1: [h, w]."""
    h, w = int(grid[0]), int(grid[1])
    ys = torch.arange(h, dtype=torch.float64) - (h - 1) / 2
    xs = torch.arange(w, dtype=torch.float64) - (w - 1) / 2
    d2 = (ys[:, None] / h) ** 2 + (xs[None, :] / w) ** 2
    m = torch.exp(-0.5 * d2 / sigma**2)
    return (m / m.sum()).float()


def planted_maps(gts: torch.Tensor, snr: float, generator: torch.Generator | None = None,
                 grid: Sequence[int] = (8, 8), heads: int = 1, blur_sigma: float = 1.0,
                 temperature: float = 0.05) -> torch.Tensor:
    """Positive control: maps that contain the ground truth at a known signal-to-noise ratio.

    The ground truth's share of every token (gts bool [N, H, W] area-averaged to ``grid``) is blurred with a
    Gaussian of ``blur_sigma`` tokens and standardised per image to s (zero mean, unit std); the map is
    softmax(temperature * (snr * s + ε)) with ε ~ N(0, 1) per token and head. ``snr`` is the ratio of the
    signal's std to the noise's. At snr = 0 the map is pure noise near uniform (temperature 0.05: values
    within ~±10 %), so its 60 %-mass mask is about k random tokens and every score sits at its chance level;
    as snr grows the map concentrates on the object and every score rises. Returns [N, heads, h, w].
    """
    h, w = int(grid[0]), int(grid[1])
    share = F.adaptive_avg_pool2d(gts.float()[:, None], (h, w))  # [N, 1, h, w]
    r = max(1, math.ceil(3 * blur_sigma))
    pos = torch.arange(-r, r + 1, dtype=torch.float32)
    k1 = torch.exp(-0.5 * (pos / blur_sigma) ** 2)
    k1 = k1 / k1.sum()
    s = F.conv2d(F.pad(share, (r, r, 0, 0), mode="replicate"), k1.view(1, 1, 1, -1))
    s = F.conv2d(F.pad(s, (0, 0, r, r), mode="replicate"), k1.view(1, 1, -1, 1))  # [N, 1, h, w]
    s = s.flatten(1)
    s = (s - s.mean(-1, keepdim=True)) / s.std(-1, keepdim=True).clamp_min(1e-6)  # [N, T]
    noise = torch.randn(gts.shape[0], heads, h * w, generator=generator)
    logits = temperature * (snr * s[:, None] + noise)  # [N, heads, T]
    return torch.softmax(logits, -1).view(gts.shape[0], heads, h, w)


# ----------------------------------------------------------------------------- selection and bootstrap
def split_halves(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random split of n images into halves A, B (index tensors)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[: n // 2], perm[n // 2 :]


def crossfit_heads(values: torch.Tensor, half_a: torch.Tensor, half_b: torch.Tensor) -> tuple[int, int]:
    """(head with the best mean on A, head with the best mean on B) of values [N, heads] (NaN ignored)."""
    head_a = int(torch.nan_to_num(values[half_a].nanmean(0), nan=-math.inf).argmax())
    head_b = int(torch.nan_to_num(values[half_b].nanmean(0), nan=-math.inf).argmax())
    return head_a, head_b


def crossfit_best(values: torch.Tensor, half_a: torch.Tensor, half_b: torch.Tensor) -> float:
    """Split-half cross-fitted best-head mean: values [N, heads]; choose on A report on B, and vice versa,
    average. The head is never scored on the images that chose it."""
    a, b = values[half_a], values[half_b]
    head_a, head_b = crossfit_heads(values, half_a, half_b)
    return 0.5 * (float(b[:, head_a].nanmean()) + float(a[:, head_b].nanmean()))


def crossfit_per_image(values: torch.Tensor, half_a: torch.Tensor, half_b: torch.Tensor) -> torch.Tensor:
    """The cross-fitted best head's value of every image: [N, heads] -> [N]; images of B carry the head chosen
    on A and vice versa. Its mean equals :func:`crossfit_best` when the halves are equal (N even); as per-image
    values it feeds the hierarchical and block intervals of :mod:`rtsseg.stats`."""
    head_a, head_b = crossfit_heads(values, half_a, half_b)
    out = torch.empty(values.shape[0], dtype=values.dtype)
    out[half_b] = values[half_b, head_a]
    out[half_a] = values[half_a, head_b]
    return out


def _stat(values: Sequence[torch.Tensor], idx: torch.Tensor, head: str, split_seed: int) -> torch.Tensor:
    """Mean over seeds of the statistic of each [N, heads] matrix on the image sets ``idx`` [R, n] (the same
    images for every seed): [R]. "mean": mean over images of the head mean; "best": split-half cross-fitted
    best head, the halves being fixed positions (``split_halves(n, split_seed)``) of each resample."""
    if head not in ("best", "mean"):
        raise ValueError(f"head must be 'best' (cross-fitted) or 'mean', got {head!r}")
    out = []
    for v in values:
        if head == "mean":
            out.append(v.nanmean(1)[idx].nanmean(1))  # [R]
            continue
        pa, pb = split_halves(idx.shape[1], split_seed)
        a, b = v[idx[:, pa]], v[idx[:, pb]]  # [R, n/2, heads]
        mean_a, mean_b = a.nanmean(1), b.nanmean(1)  # [R, heads]
        head_a = torch.nan_to_num(mean_a, nan=-math.inf).argmax(1, keepdim=True)  # chosen on A
        head_b = torch.nan_to_num(mean_b, nan=-math.inf).argmax(1, keepdim=True)
        out.append(0.5 * (mean_b.gather(1, head_a) + mean_a.gather(1, head_b))[:, 0])  # reported on the other
    return torch.stack(out).mean(0)


def bootstrap(stat: Callable[[torch.Tensor], torch.Tensor], n: int, n_boot: int = 1000, seed: int = 0,
              level: float = 0.95) -> tuple[float, float, float]:
    """(estimate on all images, percentile CI low, high). ``stat(idx [R, n]) -> [R]`` evaluates R image sets at
    once; the CI comes from ``n_boot`` resamples of the n images with replacement (generator seeded with
    ``seed``)."""
    est = float(stat(torch.arange(n)[None])[0])
    if n_boot <= 0 or n < 2:
        return est, math.nan, math.nan
    gen = torch.Generator().manual_seed(seed)
    reps = []
    for start in range(0, n_boot, 250):  # bounded memory: [250, n, heads] per block
        idx = torch.randint(0, n, (min(250, n_boot - start), n), generator=gen)
        reps.append(stat(idx).double())
    reps = torch.cat(reps)
    reps = reps[~reps.isnan()]
    lo, hi = torch.quantile(reps, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)).tolist()
    return est, lo, hi


# ----------------------------------------------------------------------------- results
@dataclass
class AttentionScores:
    """Scores of one initialisation (one or several seeds' maps on the same images).

    ``best_head_jaccard`` is cross-fitted (see the module docstring); ``best_head`` and ``per_head_jaccard``
    are the in-sample choice and per-head means, for figures only. ``ci`` maps "<metric> best|mean" to
    (low, high), percentile bootstrap over images. ``per_image`` keeps the [N, heads] score matrices (one
    per seed) for :func:`paired_difference`.
    """

    per_head_jaccard: list[float]
    best_head: int
    best_head_jaccard: float
    mean_head_jaccard: float
    mass_in_gt: float  # mean share of the head-mean map inside the ground truth
    gt_area: float  # mean share of the image covered by the ground truth (the uniform map's mass_in_gt)
    images: int
    jaccard_chance: float = math.nan  # expected Jaccard of a uniform map on the same images
    best_head_auroc: float = math.nan
    mean_head_auroc: float = math.nan
    best_head_mass_ratio: float = math.nan
    mean_head_mass_ratio: float = math.nan
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    seeds: int = 1
    per_image: dict[str, list[torch.Tensor]] = field(default_factory=dict, repr=False)

    def row(self, percent: bool = True) -> dict[str, float]:
        """Flat record: every score with its CI (Jaccard × 100 when ``percent``) and chance levels."""
        scale = 100.0 if percent else 1.0
        out: dict[str, float] = {"images": self.images, "seeds": self.seeds}
        for metric in METRICS:
            for head in ("best", "mean"):
                key = f"{metric} {head}"
                s = scale if metric == "jaccard" else 1.0
                out[key] = getattr(self, f"{head}_head_{metric}") * s
                lo, hi = self.ci.get(key, (math.nan, math.nan))
                out[f"{key} low"], out[f"{key} high"] = lo * s, hi * s
        out["jaccard chance"] = self.jaccard_chance * scale
        out["auroc chance"] = CHANCE["auroc"]
        out["mass_ratio chance"] = CHANCE["mass_ratio"]
        out["gt area"] = self.gt_area
        return out


def summarise(per_image: Sequence[dict[str, torch.Tensor]], gts: torch.Tensor, grid: Sequence[int],
              chance: torch.Tensor | None = None, n_boot: int = 1000, seed: int = 0,
              mass: float = 0.6) -> AttentionScores:
    """Scores of one initialisation from :func:`score_maps` outputs (one per seed, same images)."""
    per_image = list(per_image)
    if not per_image:
        raise ValueError("summarise needs the scores of at least one seed")
    mats = {m: [p[m] for p in per_image] for m in METRICS}
    n = mats["jaccard"][0].shape[0]
    per_head = torch.stack(mats["jaccard"]).nanmean(1).mean(0)  # [heads]
    chance = jaccard_chance(gts, grid, mass) if chance is None else chance
    s = AttentionScores(
        per_head_jaccard=per_head.tolist(), best_head=int(per_head.argmax()),
        best_head_jaccard=math.nan, mean_head_jaccard=math.nan,
        mass_in_gt=float(torch.stack([p["mass_in_gt"] for p in per_image]).mean()),
        gt_area=float(gts.float().mean()), images=n, jaccard_chance=float(chance.mean()),
        seeds=len(per_image), per_image=mats)
    for metric in METRICS:
        for head in ("best", "mean"):
            est, lo, hi = bootstrap(lambda idx: _stat(mats[metric], idx, head, seed), n, n_boot, seed)
            setattr(s, f"{head}_head_{metric}", est)
            s.ci[f"{metric} {head}"] = (lo, hi)
    return s


def paired_difference(a: AttentionScores, b: AttentionScores, metric: str = "jaccard", head: str = "best",
                      n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """a − b on the same images (and seeds paired in order): (difference, CI low, high), bootstrap over
    images with the same resample for both (head choice cross-fitted inside every replicate)."""
    va, vb = a.per_image[metric], b.per_image[metric]
    if va[0].shape[0] != vb[0].shape[0]:
        raise ValueError(f"paired scores need the same images: {va[0].shape[0]} vs {vb[0].shape[0]}")
    n = va[0].shape[0]
    return bootstrap(lambda idx: _stat(va, idx, head, seed) - _stat(vb, idx, head, seed), n, n_boot, seed)


def map_scores(maps: torch.Tensor | Sequence[torch.Tensor], gts: torch.Tensor, n_boot: int = 1000,
               seed: int = 0, mass: float = 0.6, chance: torch.Tensor | None = None) -> AttentionScores:
    """AttentionScores of given maps [N, heads, h, w] (a list: one per seed), e.g. a reference map broadcast
    to every image (uniform, centre prior) or :func:`planted_maps`."""
    maps = [maps] if isinstance(maps, torch.Tensor) else list(maps)
    per = [score_maps(m, gts, mass) for m in maps]
    return summarise(per, gts, maps[0].shape[-2:], chance, n_boot, seed, mass)


@torch.no_grad()
def capture_maps(backbone: torch.nn.Module, images: torch.Tensor, layer: str | int | None = None,
                 batch_size: int = 64, progress: bool = True) -> torch.Tensor:
    """Maps [N, heads, h, w] (float, CPU) of uint8 images [N, 3, H, W] at the network's input size."""
    was_training = backbone.training
    backbone.eval()
    device = next(backbone.parameters()).device
    out = []
    for start in tqdm(range(0, len(images), batch_size), desc="attention", disable=not progress):
        x = backbone.normalize(images[start : start + batch_size].to(device))  # [b,3,H,W]
        out.append(capture_attention(backbone, x, layer).float().cpu())  # [b,heads,h,w]
    backbone.train(was_training)
    return torch.cat(out)


def attention_scores(
    backbone: torch.nn.Module | Sequence[torch.nn.Module],
    images: torch.Tensor,  # uint8 [N,3,H,W], already at the network's input size
    gts: torch.Tensor,  # bool [N,Hg,Wg], ground-truth regions at the label's own resolution
    layer: str | int | None = None,
    batch_size: int = 64,
    mass: float = 0.6,
    progress: bool = True,
    n_boot: int = 1000,
    seed: int = 0,
    chance: torch.Tensor | None = None,
) -> AttentionScores:
    """Scores of one backbone (or several seeds of one initialisation, scored on the same images).

    ``chance``: per-image :func:`jaccard_chance` if already computed for these images and grid (it depends only
    on them, not on the network)."""
    if images.shape[0] != gts.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {gts.shape[0]} ground-truth masks")
    models = [backbone] if isinstance(backbone, torch.nn.Module) else list(backbone)
    maps = [capture_maps(m, images, layer, batch_size, progress) for m in models]
    return map_scores(maps, gts, n_boot, seed, mass, chance)


def pixel_scores(maps: torch.Tensor, gts: torch.Tensor, mass: float = 0.6) -> dict[str, torch.Tensor]:
    """Slow pixel-level reference of :func:`score_maps`' Jaccard and mass_in_gt (for tests)."""
    size = gts.shape[-2:]
    masks = upsample_maps(mass_mask(maps, mass), size)
    g = gts.bool()[:, None]
    inter = (masks & g).flatten(-2).sum(-1).double()
    union = (masks | g).flatten(-2).sum(-1).double()
    up = upsample_maps(maps.double(), size)
    return {"jaccard": inter / union, "mass_in_gt": mass_in_mask(up.mean(1), g[:, 0])}



# ----------------------------------------------------------------------------- object-specific scores
def derangements(n: int, n_perm: int, seed: int = 0, groups: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """``n_perm`` random derangements of range(n) (no image keeps its own ground truth): long [n_perm, n].

    Uniform over derangements by rejection (a uniform permutation is a derangement with probability ~1/e).
    ``groups`` (index tensors partitioning range(n), each of >= 2 images): every image is sent within its own
    group (e.g. the two cross-fitting halves, or the frames of one sequence). Fewer than 2 images: raises."""
    if n_perm < 1:
        raise ValueError(f"n_perm={n_perm}: pass at least one permutation (e.g. 8)")
    if groups is not None:
        groups = [torch.as_tensor(g_).long() for g_ in groups]
        cover = torch.cat(groups).sort().values if groups else torch.zeros(0, dtype=torch.long)
        if not torch.equal(cover, torch.arange(n)):
            raise ValueError(f"derangements: groups must partition range({n}) (each index in exactly one group)")
        out = torch.empty(n_perm, n, dtype=torch.long)
        for k, grp in enumerate(groups):
            d = derangements(len(grp), n_perm, seed + 7919 * k)  # [P, len(grp)]
            out[:, grp] = grp[d]
        return out
    if n < 2:
        raise ValueError(f"derangements of {n} image(s): a permutation null needs at least 2 images; pass more")
    gen = torch.Generator().manual_seed(seed)
    out = []
    while len(out) < n_perm:
        p = torch.randperm(n, generator=gen)
        if not bool((p == torch.arange(n)).any()):
            out.append(p)
    return torch.stack(out)


def cyclic_shifts(n: int) -> torch.Tensor:
    """All n - 1 non-trivial cyclic shifts i -> (i + k) mod n, k = 1..n-1: long [n - 1, n]. Averaged over them,
    every image is scored against every other image's ground truth exactly once (the exhaustive null)."""
    if n < 2:
        raise ValueError(f"cyclic shifts of {n} image(s): a permutation null needs at least 2 images")
    return (torch.arange(n)[None] + torch.arange(1, n)[:, None]) % n


def mean_object_map(train_gts: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """The mean-object map [h, w] (sums to 1): the train images' ground truths bool [N, H, W] area-averaged to
    ``grid`` and averaged over images -- where objects are, on average, learned from train labels only. An
    image-independent reference: its object-specific excess is 0 by construction."""
    if train_gts.dim() != 3 or train_gts.shape[0] == 0:
        raise ValueError(f"mean_object_map: train_gts must be bool [N, H, W] with N >= 1, got {tuple(train_gts.shape)}")
    share = F.adaptive_avg_pool2d(train_gts.float()[:, None], tuple(int(v) for v in grid))[:, 0]  # [N, h, w]
    m = share.double().mean(0)  # [h, w]
    if float(m.sum()) <= 0:
        raise ValueError("mean_object_map: every train ground truth is empty; pass images that contain objects")
    return (m / m.sum()).float()


def dataset_mean_map(maps: torch.Tensor) -> torch.Tensor:
    """A model's own mean map over images, broadcast back: maps [N, heads, h, w] -> [N, heads, h, w], every image
    carrying the mean over images of the (normalised) maps. It keeps everything the model puts in the same
    place on every image (a centre bias, border tokens) and nothing image-specific: its object-specific
    excess is 0 by construction, its raw AUROC is the model's image-independent part."""
    p = _token_probs(maps).mean(0)  # [heads, T]
    return p.view(1, *maps.shape[1:]).expand(maps.shape[0], -1, -1, -1).to(maps.dtype)


def broadcast_map(m: torch.Tensor, n: int, heads: int = 1) -> torch.Tensor:
    """One reference map [h, w] (or [heads, h, w]) as maps of n images: [n, heads, h, w]."""
    m = m if m.dim() == 3 else m[None].expand(heads, -1, -1)
    return m[None].expand(n, -1, -1, -1)


OBJECT_METRICS = ("auroc", "mass_ratio")


@dataclass
class ObjectSpecificScores:
    """Object-specific scores of one initialisation (one or several seeds' maps on the same images).

    Per metric (``auroc``, ``mass_ratio``) and seed, [N, heads] tensors over the kept images: ``own`` (the
    map against its own image's ground truth), ``null`` (against the ground truths of other images of the set,
    averaged over the permutations) and ``excess = own - null``; ``best`` [N] per seed: the excess of the
    cross-fitted best head per image (head chosen on the other half by mean excess; ``heads`` the two
    choices). "mean" in :meth:`summary` / :meth:`per_image` is the mean over heads of the per-head scores (as
    ``map_scores``' mean over heads), not the score of a head-averaged map.

    ``index``: positions of the kept images in the set given; ``left_out``: images dropped because their
    ground truth is empty or covers the whole image (no AUROC); ``permutations`` [P, N] over the kept images.
    """

    own: dict[str, list[torch.Tensor]]
    null: dict[str, list[torch.Tensor]]
    excess: dict[str, list[torch.Tensor]]
    best: dict[str, list[torch.Tensor]]
    heads: dict[str, list[tuple[int, int]]]
    index: torch.Tensor
    permutations: torch.Tensor
    left_out: int = 0
    halves: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)  # split_halves(N, seed)

    @property
    def seeds(self) -> int:
        return len(next(iter(self.excess.values())))

    @property
    def images(self) -> int:
        return int(self.index.numel())

    def per_head(self, metric: str = "auroc", which: str = "excess") -> list[float]:
        """Mean over seeds and images of ``which`` (own | null | excess), per head."""
        v = getattr(self, which)[metric]
        return torch.stack(v).mean((0, 1)).tolist()

    def per_image(self, metric: str = "auroc", head: str | int = "best") -> list:
        """The per-image excess, one numpy array [N] per seed, for :func:`rtsseg.stats.hierarchical_bootstrap`
        (or ``block_bootstrap`` over frames): ``head`` = "best" (cross-fitted), "mean" (over heads) or an index."""
        if head == "best":
            rows = self.best[metric]
        elif head == "mean":
            rows = [e.mean(1) for e in self.excess[metric]]
        elif isinstance(head, int):
            rows = [e[:, head] for e in self.excess[metric]]
        else:
            raise ValueError(f"head={head!r}: pass 'best', 'mean' or a head index")
        return [r.double().numpy() for r in rows]

    def summary(self) -> dict[str, float]:
        """Flat numbers: per metric, mean own / null / excess over heads ("mean") and of the cross-fitted best head
        (own and null of the best head on the same per-image head choice), mean over seeds and images."""
        out: dict[str, float] = {"images": self.images, "seeds": self.seeds, "left out": self.left_out,
                                 "permutations": int(self.permutations.shape[0])}
        for metric in self.excess:
            for which in ("own", "null", "excess"):
                mats = getattr(self, which)[metric]
                out[f"{metric} {which} mean"] = float(torch.stack([m.mean(1) for m in mats]).mean())
                best = [_per_image_heads(m, self.heads[metric][k], self.halves) for k, m in enumerate(mats)]
                out[f"{metric} {which} best"] = float(torch.stack(best).mean())
        return out



def _per_image_heads(values: torch.Tensor, heads: tuple[int, int], halves) -> torch.Tensor:
    """values [N, heads] -> [N]: images of half B take head heads[0] (chosen on A), images of A heads[1]."""
    half_a, half_b = halves
    out = torch.empty(values.shape[0], dtype=values.dtype)
    out[half_b] = values[half_b, heads[0]]
    out[half_a] = values[half_a, heads[1]]
    return out


def object_specific(maps: torch.Tensor | Sequence[torch.Tensor], gts: torch.Tensor, n_perm: int = 8,
                    seed: int = 0, permutations: torch.Tensor | None = None,
                    metrics: Sequence[str] = OBJECT_METRICS) -> ObjectSpecificScores:
    """Object-specific score of maps [N, heads, h, w] (a list: one per seed, same images) against gts bool
    [N, H, W]: score against the image's own ground truth minus the mean score against other images' ground
    truths of the same set (a permutation null), paired per image, per head and for the cross-fitted best head.

    Why: objects are not placed at random. An image-independent centre map reaches AUROC 0.77 on the
    Tiny-ImageNet val boxes, so "AUROC > 0.5" credits a model with where objects usually are. Against another
    image's ground truth, what a map knows about *its* image no longer helps while what it knows about images
    in general still does: the difference is the part that follows the object. An image-independent map
    (centre, constant, :func:`mean_object_map`, :func:`dataset_mean_map`) scores **exactly 0** on average over
    the images, for *any* permutation: with the same map m on every image, sum_i score(m, g_pi(i)) =
    sum_j score(m, g_j) (tested; the per-image values differ from 0, which is the null spread an interval
    must cover).

    Permutations: ``n_perm`` random derangements (seeded, no image keeps its own ground truth;
    :func:`derangements`), the same for every seed, drawn *within* each of the two cross-fitting halves
    (``split_halves(N, seed)``). Why within: the best head is chosen on half A and reported on half B; if B's
    images were scored against A's ground truths, B's null would share data with the choice, and for an
    image-independent map each head's excess sums to exactly 0 over all images, so the head best on A would be
    reported at exactly minus its A score on B -- a negative bias of the cross-fitted best head. Within halves
    the excess of each half depends on that half only, and an image-independent map's cross-fitted best head
    is exactly 0 as well. ``permutations`` [P, N] may be given instead (e.g. :func:`cyclic_shifts`, the
    exhaustive null, every other ground truth once: exact for the per-head and mean-over-heads scores, not for
    the best head). Images whose ground truth is empty or covers the whole label have no AUROC and are left
    out before permuting (counted).
    """
    maps = [maps] if isinstance(maps, torch.Tensor) else list(maps)
    if not maps:
        raise ValueError("object_specific needs the maps of at least one seed")
    for k, m in enumerate(maps):
        if m.dim() != 4 or m.shape[0] != gts.shape[0] or m.shape[1:] != maps[0].shape[1:]:
            raise ValueError(f"object_specific: maps[{k}] has shape {tuple(m.shape)}; every seed's maps must be "
                             f"[N, heads, h, w] with N = {gts.shape[0]} (the gts) and the same heads and grid")
    bad = [mt for mt in metrics if mt not in OBJECT_METRICS]
    if bad:
        raise ValueError(f"object_specific: metrics {bad} unknown; pass a subset of {OBJECT_METRICS}")
    gts = gts.bool()
    frac = gts.flatten(1).float().mean(1)  # [N]
    keep = ((frac > 0) & (frac < 1)).nonzero().flatten()
    n = int(keep.numel())
    if n < 4:
        raise ValueError(f"object_specific: {n} images with a ground truth that is neither empty nor full; the "
                         "permutation null within two cross-fitting halves needs at least 4: pass more images")
    halves = split_halves(n, seed)
    if permutations is None:
        perms = derangements(n, n_perm, seed, groups=halves)
    else:
        perms = torch.as_tensor(permutations).long()
        if perms.dim() != 2 or perms.shape[1] != n:
            raise ValueError(f"object_specific: permutations must be [P, {n}] over the kept images, "
                             f"got {tuple(perms.shape)}")
        if bool((perms == torch.arange(n)).any()):
            raise ValueError("object_specific: a given permutation keeps an image on its own ground truth; "
                             "pass derangements (rtsseg.attention.evaluate.derangements or cyclic_shifts)")
    g, area = token_counts(gts[keep], maps[0].shape[-2:])  # [n, T], [T]
    own, null, excess, best, heads = ({mt: [] for mt in metrics} for _ in range(5))
    for m in maps:
        p = _token_probs(m[keep])  # [n, heads, T]
        o = size_free_scores(p, g, area)
        acc = {mt: torch.zeros_like(o[mt]) for mt in metrics}
        for perm in perms:
            sc = size_free_scores(p, g[perm], area)  # image i against the gt of image perm[i]
            for mt in metrics:
                acc[mt] += sc[mt]
        for mt in metrics:
            nl = acc[mt] / len(perms)  # [n, heads]
            ex = o[mt] - nl
            own[mt].append(o[mt])
            null[mt].append(nl)
            excess[mt].append(ex)
            hd = crossfit_heads(ex, *halves)
            heads[mt].append(hd)
            best[mt].append(_per_image_heads(ex, hd, halves))
    return ObjectSpecificScores(own, null, excess, best, heads, keep, perms, int(gts.shape[0] - n), halves)


def object_specific_interval(scores: ObjectSpecificScores, metric: str = "auroc", head: str | int = "best",
                             sequences=None, block_len: int | None = None, n_boot: int = 2000, seed: int = 0,
                             level: float = 0.95):
    """The interval of the mean excess over seeds and images (:class:`rtsseg.stats.Interval`): hierarchical
    bootstrap (seeds, then images within seeds); images that are video frames (CamVid) pass ``sequences`` (one
    id per *kept* image, ``scores.index`` selects them) and resample circular blocks of frames within each
    sequence; a list over *all* the images given to :func:`object_specific` (e.g. ``GroundTruthSet.sequences``)
    is narrowed to the kept ones. The head choice is the one cross-fitted on all images (not redone per
    replicate)."""
    if sequences is not None:
        seq = list(sequences)
        if len(seq) == scores.images + scores.left_out and scores.left_out:
            seq = [seq[int(i)] for i in scores.index]
        if len(seq) != scores.images:
            raise ValueError(f"object_specific_interval: {len(seq)} sequence ids for {scores.images} kept images "
                             f"({scores.left_out} left out); pass one id per image given to object_specific")
        sequences = seq
    return stats.hierarchical_bootstrap(scores.per_image(metric, head), n_boot=n_boot, seed=seed, level=level,
                                        block_len=block_len, sequences=sequences)
