"""Chapter 5's analysis: object-specific attention scores of every initialisation, with their references and nulls.

The headline of the attention chapter is the **object-specific excess** (:func:`rtsseg.attention.evaluate.object_specific`):
a map's score against its own image's ground truth minus its score against other images' ground truths. Objects
are not placed at random (Tiny-ImageNet boxes are centred, CamVid things lie on a band), so "AUROC above 0.5"
credits a model with where objects usually are; an image-independent map has excess 0 by construction, and the
null of "finds *this* object" is therefore 0 excess -- not 0.5 AUROC. Beside each model stand the rows it must
beat on the raw score: the centre map, the mean-object map fitted on *train* ground truths, and the model's own
dataset-mean map (everything it puts in the same place on every image); planted maps are the positive control
whose excess must clear 0 by far.

Intervals (:mod:`rtsseg.stats`): resample seeds, then images within seeds (hierarchical bootstrap); video frames
(CamVid) are resampled as circular blocks within each drive, the block length chosen from the measured
autocorrelation of the per-frame scores (:func:`rtsseg.stats.block_length`, stated in the table). Verdicts come
from :class:`rtsseg.findings.Finding` (:func:`rtsseg.stats.verdict`), never from this module's own words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from rtsseg import stats
from rtsseg.attention.evaluate import (ObjectSpecificScores, broadcast_map, centre_prior_map, dataset_mean_map,
                                       mean_object_map, object_specific, planted_maps)

#: the rows every model is read beside
REFERENCES = ("centre map", "mean-object map (train)", "planted maps")


@dataclass
class ExcessResult:
    """One initialisation (or reference) on one ground-truth set: the scores, its block length and intervals."""

    name: str  # e.g. "vit_small64 / barlow twins" or "centre map"
    scores: ObjectSpecificScores
    block_len: int | None  # frames per bootstrap block (video), None for independent images
    auroc: stats.Interval  # excess AUROC of the cross-fitted best head
    mass_ratio: stats.Interval  # excess mass ratio of the cross-fitted best head
    own_auroc: float  # raw best-head AUROC against its own ground truth (mean over seeds and images)
    null_auroc: float  # the same map against other images' ground truths

    def row(self) -> dict:
        """Numbers only (saved results): own / null / excess with interval bounds."""
        out = {"seeds": self.scores.seeds, "images": self.scores.images, "block": self.block_len or 1,
               "own auroc": self.own_auroc, "null auroc": self.null_auroc}
        for metric, iv in (("auroc", self.auroc), ("mass_ratio", self.mass_ratio)):
            d = iv.as_dict()
            out.update({f"excess {metric}": d["mean"], f"excess {metric} lo": d["lo"],
                        f"excess {metric} hi": d["hi"], f"excess {metric} n": d["n"]})
        out["interval"] = self.auroc.method
        return out


def _sequences(gset, scores: ObjectSpecificScores) -> list[str] | None:
    seq = getattr(gset, "sequences", None)
    if seq is None:
        return None
    return [seq[int(i)] for i in scores.index]


def block_length_of(gset, scores: ObjectSpecificScores, metric: str = "auroc") -> int | None:
    """Block length for video frames from the measured autocorrelation of the per-frame excess (first seed),
    within drives; None for independent images (no ``sequences`` on the ground-truth set)."""
    seq = _sequences(gset, scores)
    if seq is None:
        return None
    return stats.block_length(scores.per_image(metric, "best")[0], sequences=seq)


def excess_result(name: str, maps: torch.Tensor | Sequence[torch.Tensor], gset, n_perm: int = 8, n_boot: int = 2000,
                  seed: int = 0, level: float = 0.95) -> ExcessResult:
    """Object-specific scores of ``maps`` (one tensor [N, heads, h, w] per seed) on ``gset`` with their intervals."""
    sc = object_specific(maps, gset.gts, n_perm=n_perm, seed=seed)
    seq = _sequences(gset, sc)
    block = block_length_of(gset, sc)
    ivs = {}
    for metric in ("auroc", "mass_ratio"):
        ivs[metric] = stats.hierarchical_bootstrap(sc.per_image(metric, "best"), n_boot=n_boot, seed=seed,
                                                   level=level, block_len=block, sequences=seq)
    summ = sc.summary()
    return ExcessResult(name, sc, block, ivs["auroc"], ivs["mass_ratio"], summ["auroc own best"],
                        summ["auroc null best"])


def reference_maps(gset, grid: Sequence[int], train_gts: torch.Tensor | None = None, planted_snr: float = 4.0,
                   heads: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    """The image-independent references (centre map; mean-object map of ``train_gts`` when given) and the planted
    positive control, each as maps [N, heads, h, w] on ``gset``'s images at the token ``grid``."""
    n = len(gset)
    out = {"centre map": broadcast_map(centre_prior_map(grid), n)}
    if train_gts is not None:
        out["mean-object map (train)"] = broadcast_map(mean_object_map(train_gts, grid), n)
    out[f"planted maps, SNR {planted_snr:g}"] = planted_maps(gset.gts, planted_snr,
                                                            torch.Generator().manual_seed(seed), grid, heads=heads)
    return out


def own_mean_map(maps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Each seed's dataset-mean map (:func:`dataset_mean_map`): the model's image-independent part."""
    return [dataset_mean_map(m) for m in maps]


def paired_excess(a: ExcessResult, b: ExcessResult, gset, metric: str = "auroc", n_boot: int = 2000, seed: int = 0,
                  level: float = 0.95) -> stats.Interval:
    """a − b of the per-image best-head excess, paired per seed and image (same images, same seeds in order),
    hierarchical over seeds and images (blocks of frames for video, the longer of the two block lengths)."""
    if a.scores.seeds != b.scores.seeds or not torch.equal(a.scores.index, b.scores.index):
        raise ValueError(f"paired_excess: {a.name} and {b.name} must have the same seeds ({a.scores.seeds} vs "
                         f"{b.scores.seeds}) and images; pair only runs scored on the same set")
    blocks = [x for x in (a.block_len, b.block_len) if x]
    return stats.paired_hierarchical_bootstrap(a.scores.per_image(metric, "best"), b.scores.per_image(metric, "best"),
                                               n_boot=n_boot, seed=seed, level=level,
                                               block_len=max(blocks) if blocks else None,
                                               sequences=_sequences(gset, a.scores))


def per_head_excess(result: ExcessResult, metric: str = "auroc") -> np.ndarray:
    """Per-head excess, mean over images, one row per seed: [seeds, heads] (the distribution figure)."""
    return np.stack([e.double().mean(0).numpy() for e in result.scores.excess[metric]])


def results_table(results: dict[tuple[str, str], ExcessResult]):
    """A DataFrame of numbers, one row per (ground truth, row name) -- saved by the chapter, rendered by
    :func:`display_table`."""
    import pandas as pd

    rows = [{"ground truth": gt, "row": name, **r.row()} for (gt, name), r in results.items()]
    return pd.DataFrame(rows).set_index(["ground truth", "row"])


def display_table(table, ground_truth: str, decimals: int = 3):
    """The chapter's table for one ground truth: raw AUROC against its own and other images' ground truths, the
    excess AUROC and excess mass ratio with their intervals (text rendered from the saved numbers)."""
    import pandas as pd

    t = table.xs(ground_truth, level="ground truth")
    out = pd.DataFrame(index=t.index)
    out["seeds × images"] = [f"{int(s)} × {int(i)}" for s, i in zip(t["seeds"], t["images"])]
    out["AUROC own / other"] = [f"{o:.{decimals}f} / {n:.{decimals}f}" for o, n in zip(t["own auroc"], t["null auroc"])]
    for metric, label in (("auroc", "excess AUROC"), ("mass_ratio", "excess mass ratio")):
        out[label] = [stats.Interval.from_dict({"mean": m, "lo": lo, "hi": hi, "n": n}).text(decimals, signed=True)
                      for m, lo, hi, n in zip(t[f"excess {metric}"], t[f"excess {metric} lo"],
                                              t[f"excess {metric} hi"], t[f"excess {metric} n"])]
    out.index.name = "map"
    return out


STEP = "05_attention_maps"


#: the findings chapter 5 saves (chapter 8's table holds at most 20 rows for the whole book)
HEADLINE_INITS = ("attention-supervised", "barlow twins", "dino")  # excess of these, on the first ground truth
HEADLINE_PAIRS = ("barlow twins − random", "dino − random", "dino − barlow twins")  # on the first and the last


def attention_findings(results: dict[tuple[str, str], ExcessResult], paired: dict[tuple[str, str], stats.Interval],
                       main_backbone: str, ground_truths: Sequence[str]) -> list:
    """The chapter's headline findings (:class:`rtsseg.findings.Finding`, at most 9): on the first ground truth the
    object-specific AUROC excess of :data:`HEADLINE_INITS` on the main backbone (null 0: an image-independent map,
    the planted control as reference), and on the first and the last ground truth the paired differences
    :data:`HEADLINE_PAIRS`. Every other row stays in the chapter's tables. Rows missing from ``results`` are
    skipped."""
    from rtsseg.findings import Finding

    gts = list(ground_truths)
    out = []
    for k, gt in enumerate(dict.fromkeys([gts[0], gts[-1]])):
        key_gt = gt.split()[0].lower().replace("-", "")
        planted = next((r for (g, name), r in results.items() if g == gt and name.startswith("planted")), None)
        ref = f"planted maps {planted.auroc.mean:+.3f}" if planted is not None else ""
        for init in HEADLINE_INITS if k == 0 else ():
            r = results.get((gt, f"{main_backbone} / {init}"))
            if r is not None:
                out.append(Finding(f"attention.excess.{init.replace(' ', '_')}.{key_gt}", STEP,
                                   f"{init} {main_backbone}, object-specific AUROC excess on {gt}", r.auroc, "",
                                   0.0, "0 (an image-independent map)", ref))
        for label in HEADLINE_PAIRS:
            iv = paired.get((gt, label))
            if iv is not None:
                out.append(Finding(f"attention.diff.{label.replace(' ', '_').replace('−', 'minus')}.{key_gt}", STEP,
                                   f"{label} ({main_backbone}), object-specific AUROC excess on {gt}", iv, "", 0.0,
                                   "0 (no difference)"))
    return out


#: the paired comparisons of the main backbone the chapter reports (a − b)
PAIRS = (("barlow twins", "random"), ("dino", "random"), ("supervised", "random"), ("attention-supervised", "random"),
         ("dino", "barlow twins"))


def score_all(sets: dict, run_maps, backbones: Sequence[str], inits: Sequence[str], main_backbone: str,
              fit_gts: dict, grid: Sequence[int], planted_snr: float = 4.0, n_perm: int = 8, n_boot: int = 2000,
              seed: int = 0, pairs=PAIRS):
    """Every row of the chapter: per ground truth (``sets`` {name: GroundTruthSet}) the references, every
    (backbone, init) whose maps ``run_maps(backbone, init, gt)`` returns (a list over seeds, empty when it did not
    run), the main backbone's own mean maps, and the paired differences ``pairs`` on the main backbone.
    Returns (results {(gt, row): ExcessResult}, paired {(gt, "a − b"): Interval})."""
    results, paired = {}, {}
    for gt, s in sets.items():
        for ref, m in reference_maps(s, grid, fit_gts.get(gt), planted_snr, seed=seed).items():
            results[gt, ref] = excess_result(ref, m, s, n_perm, n_boot, seed)
        for backbone in backbones:
            for init in inits:
                m = run_maps(backbone, init, gt)
                if m:
                    results[gt, f"{backbone} / {init}"] = excess_result(f"{backbone} / {init}", m, s, n_perm,
                                                                        n_boot, seed)
        for init in inits:
            m = run_maps(main_backbone, init, gt)
            if m:
                results[gt, f"{main_backbone} / {init}: own mean map"] = excess_result(
                    f"{init}: own mean map", own_mean_map(m), s, n_perm, n_boot, seed)
        for a, b in pairs:
            ra, rb = results.get((gt, f"{main_backbone} / {a}")), results.get((gt, f"{main_backbone} / {b}"))
            if ra is not None and rb is not None and ra.scores.seeds == rb.scores.seeds:
                paired[gt, f"{a} − {b}"] = paired_excess(ra, rb, s, n_boot=n_boot, seed=seed)
    return results, paired


#: Per-image arrays of :func:`save_per_image_scores`, per (ground truth, row): own and null [seeds, N, heads] per
#: metric, the cross-fitted best head's excess [seeds, N] per metric, and the kept images' positions [N].
PER_IMAGE_ARRAYS = ("auroc own", "auroc null", "auroc best", "mass_ratio own", "mass_ratio null", "mass_ratio best",
                    "index")


def save_per_image_scores(results: dict, path) -> int:
    """Every row's per-image, per-head scores (``results`` of :func:`score_all`) in one compressed ``.npz``, so
    that the chapter's statistics can be recomputed without the maps or the networks (the GPU edition ships
    this file back; the checkpoints stay there). Scores are float16 (AUROC and mass ratios need no more than 3
    significant digits), ``index`` int32. Array ``k{i} <what>`` belongs to ``rows[i]`` = (ground truth, row) of
    the ``rows`` array. Returns the file's size in bytes."""
    from pathlib import Path

    arrays, rows = {}, []
    for i, ((gt, row), r) in enumerate(results.items()):
        sc = r.scores
        rows.append(f"{gt}\t{row}")
        for metric in ("auroc", "mass_ratio"):
            arrays[f"k{i} {metric} own"] = torch.stack(sc.own[metric]).to(torch.float16).numpy()  # [S, N, H]
            arrays[f"k{i} {metric} null"] = torch.stack(sc.null[metric]).to(torch.float16).numpy()
            arrays[f"k{i} {metric} best"] = torch.stack(sc.best[metric]).to(torch.float16).numpy()  # [S, N]
        arrays[f"k{i} index"] = sc.index.to(torch.int32).numpy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, rows=np.array(rows), **arrays)
    return path.stat().st_size


def load_per_image_scores(path) -> dict:
    """``{(ground truth, row): {what: array}}`` from :func:`save_per_image_scores`' file."""
    with np.load(path) as f:
        rows = [tuple(r.split("\t", 1)) for r in f["rows"].tolist()]
        return {key: {w: f[f"k{i} {w}"] for w in PER_IMAGE_ARRAYS} for i, key in enumerate(rows)}


def ground_truth_table(sets: dict):
    """Images kept and left out, ground-truth area and drives of each ground-truth set."""
    import pandas as pd

    return pd.DataFrame({
        "images": {n: len(s) for n, s in sets.items()},
        "left out": {n: s.left_out for n, s in sets.items()},
        "ground truth area (%)": {n: round(100 * s.gt_area, 1) for n, s in sets.items()},
        "drives": {n: len(set(s.sequences)) if s.sequences else "–" for n, s in sets.items()},
    }).rename_axis("ground truth")


_ROW_LABEL = {"barlow twins": "Barlow\nTwins", "dino": "DINO", "attention-supervised": "attention-\nsupervised"}


def chapter_figures(sets: dict, first_seed_maps, inits: Sequence[str], results: dict, main_backbone: str,
                    n_images: int = 8, n_head_images: int = 2, page_width: float = 8.0) -> dict:
    """The chapter's figures by glue name: ``attn_grid`` / ``attn_grid_camvid`` (head-mean maps of every
    initialisation on the same images, one colour scale), ``attn_heads_<k>`` (DINO's per-head figure with 60 %-mass
    masks) and ``attn_head_excess`` (per-head excess per initialisation). ``first_seed_maps(init, gt)`` gives the
    main backbone's first-seed maps [N, heads, h, w] on ground truth ``gt`` (None when the init did not run)."""
    from rtsseg.attention.plot import plot_attention_grid, plot_head_excess, plot_head_masks

    figs = {}
    present = [i for i in inits if first_seed_maps(i, "Tiny-ImageNet boxes") is not None]
    for name, gt in (("attn_grid", "Tiny-ImageNet boxes"), ("attn_grid_camvid", "CamVid things")):
        s = sets[gt]
        cols = np.linspace(0, len(s) - 1, min(n_images, len(s))).round().astype(int)
        rows = {_ROW_LABEL.get(i, i): first_seed_maps(i, gt)[cols].mean(1) for i in present}
        figs[name] = plot_attention_grid(s.images[cols], rows, s.gts[cols], title=f"{main_backbone}: {gt}",
                                         panel=min(1.2, (page_width - 1.2) / len(cols)))
    tin = sets["Tiny-ImageNet boxes"]
    for k, j in enumerate(np.linspace(0, len(tin) - 1, n_head_images + 2).round().astype(int)[1:-1]):
        figs[f"attn_heads_{k}"] = plot_head_masks(tin.images[j], {i: first_seed_maps(i, "Tiny-ImageNet boxes")[j]
                                                                 for i in present}, tin.gts[j])
    planted = next(r for (g, n), r in results.items() if g == "Tiny-ImageNet boxes" and n.startswith("planted"))
    figs["attn_head_excess"] = plot_head_excess(
        {i: per_head_excess(results["Tiny-ImageNet boxes", f"{main_backbone} / {i}"]) for i in present},
        reference=planted.auroc.mean)
    return figs


#: landing-page glue name -> (finding key on the Tiny-ImageNet boxes, short value or whole sentence)
LANDING = {"attn_auroc_bt": ("excess.barlow_twins", True), "attn_auroc_dino": ("excess.dino", True),
           "attn_auroc_control": ("excess.attention-supervised", True),
           "attn_control": ("excess.attention-supervised", False),
           "attn_bt_vs_random": ("diff.barlow_twins_minus_random", False),
           "attn_dino_vs_bt": ("diff.dino_minus_barlow_twins", False)}


def landing_texts(findings: list, missing: str = "not run in this edition") -> dict[str, str]:
    """The texts the landing page and the editions table glue from this chapter (:data:`LANDING`): a finding's value
    with its interval, or its whole verdict sentence; ``missing`` where the finding was not measured."""
    by_key = {f.key: f for f in findings}
    out = {}
    for name, (key, short) in LANDING.items():
        f = by_key.get(f"attention.{key}.tinyimagenet")
        out[name] = missing if f is None else f.value_text() if short else f.sentence()
    return out
