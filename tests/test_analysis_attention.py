"""Chapter 5's analysis on made-up ground truths: references at 0 excess, planted maps far above, paired nulls."""

from __future__ import annotations

import math

import pytest
import torch

from rtsseg.analysis import attention as A
from rtsseg.attention.groundtruth import GroundTruthSet


def _boxes(n=40, size=32, seed=0, sequences=None):
    g = torch.Generator().manual_seed(seed)
    gts = torch.zeros(n, size, size, dtype=torch.bool)
    for i in range(n):
        x0, y0 = (int(v) for v in torch.randint(0, size // 2, (2,), generator=g))
        w, h = (int(v) for v in torch.randint(size // 4, size // 2, (2,), generator=g))
        gts[i, y0:y0 + h, x0:x0 + w] = True
    images = torch.zeros(n, 3, size, size, dtype=torch.uint8)
    return GroundTruthSet("boxes", images, gts, torch.arange(n), sequences=sequences)


def test_references_have_zero_excess_and_planted_maps_a_large_one():
    gset = _boxes()
    train = _boxes(seed=1).gts
    refs = A.reference_maps(gset, (8, 8), train_gts=train, planted_snr=8.0, heads=2)
    assert set(refs) == {"centre map", "mean-object map (train)", "planted maps, SNR 8"}
    for name in ("centre map", "mean-object map (train)"):
        r = A.excess_result(name, refs[name], gset, n_boot=200)
        assert abs(r.auroc.mean) < 1e-9 and abs(r.mass_ratio.mean) < 1e-9, name
        assert r.block_len is None  # independent images: no blocks
    planted = A.excess_result("planted", refs["planted maps, SNR 8"], gset, n_boot=200)
    assert planted.auroc.lo > 0.2 and A.stats.verdict(planted.auroc) == "above"
    # a model's own dataset-mean map is image-independent too
    mean_part = A.excess_result("own mean", A.own_mean_map([refs["planted maps, SNR 8"]]), gset, n_boot=200)
    assert abs(mean_part.auroc.mean) < 1e-9


def test_paired_excess_of_a_map_with_itself_is_zero_and_refuses_other_images():
    gset = _boxes()
    refs = A.reference_maps(gset, (8, 8), planted_snr=4.0, heads=2)
    a = A.excess_result("a", [refs["planted maps, SNR 4"]] * 2, gset, n_boot=200)
    iv = A.paired_excess(a, a, gset, n_boot=200)
    assert iv.mean == 0 and iv.lo == 0 and iv.hi == 0
    c = A.excess_result("c", refs["centre map"], gset, n_boot=200)
    with pytest.raises(ValueError, match="same seeds"):
        A.paired_excess(a, c, gset)
    d = A.paired_excess(A.excess_result("p", refs["planted maps, SNR 4"], gset, n_boot=200), c, gset, n_boot=200)
    assert d.lo > 0  # planted − centre: above


def test_video_frames_get_blocks_and_the_table_renders_from_numbers():
    seq = ["0001TP"] * 20 + ["0016E5"] * 20
    gset = _boxes(sequences=seq)
    refs = A.reference_maps(gset, (8, 8), planted_snr=4.0, heads=2)
    r = A.excess_result("planted", refs["planted maps, SNR 4"], gset, n_boot=200)
    assert r.block_len is not None and r.block_len >= 1 and "block" in r.auroc.method
    table = A.results_table({("frames", "planted"): r})
    assert list(table.index) == [("frames", "planted")]
    shown = A.display_table(table, "frames")
    assert shown.loc["planted", "excess AUROC"] == r.auroc.text(3, signed=True)
    assert A.per_head_excess(r).shape == (1, 2)
    assert not math.isnan(shown.shape[0])


def test_landing_texts_name_what_is_missing():
    from rtsseg.findings import Finding
    from rtsseg.stats import Interval

    f = Finding("attention.excess.barlow_twins.tinyimagenet", "05_attention_maps", "BT excess",
                Interval(0.02, -0.01, 0.05, 3, 0.95, "hierarchical bootstrap"))
    texts = A.landing_texts([f])
    assert texts["attn_auroc_bt"] == "+0.020 [−0.010, +0.050]"
    assert texts["attn_dino_vs_bt"] == "not run in this edition" and set(texts) == set(A.LANDING)


def test_findings_stay_within_the_books_budget():
    gset = _boxes()
    refs = A.reference_maps(gset, (8, 8), planted_snr=4.0, heads=2)
    r = A.excess_result("x", [refs["planted maps, SNR 4"]] * 2, gset, n_boot=100)
    gts = ["Tiny-ImageNet boxes", "boxes < 30%", "CamVid things"]
    results = {(g, f"vit / {i}"): r for g in gts for i in ("random", "supervised", "barlow twins", "dino",
                                                            "attention-supervised")}
    paired = {(g, lab): r.auroc for g in gts for lab in A.HEADLINE_PAIRS + ("supervised − random",)}
    found = A.attention_findings(results, paired, "vit", gts)
    assert len(found) == 3 + 3 + 3 and len({f.key for f in found}) == len(found)
    assert not any("boxes < 30%" in f.what or "supervised −" in f.what for f in found)


def test_per_image_scores_round_trip_and_recompute_the_interval(tmp_path):
    """The file the GPU edition ships back: every row's per-image, per-head scores; the chapter's interval can be
    recomputed from it without maps or networks (float16: within 1e-3 of the in-memory scores)."""
    from rtsseg import stats

    gset = _boxes()
    refs = A.reference_maps(gset, (8, 8), planted_snr=4.0, heads=3)
    results = {("boxes", name): A.excess_result(name, [refs[name]] * 2, gset, n_boot=200) for name in refs}
    size = A.save_per_image_scores(results, tmp_path / "r" / "attention_per_image.npz")
    assert size == (tmp_path / "r" / "attention_per_image.npz").stat().st_size < 64 * 1024
    loaded = A.load_per_image_scores(tmp_path / "r" / "attention_per_image.npz")
    assert list(loaded) == list(results)
    planted = results["boxes", "planted maps, SNR 4"]
    got = loaded["boxes", "planted maps, SNR 4"]
    assert set(got) == set(A.PER_IMAGE_ARRAYS)
    assert got["auroc own"].shape == (2, planted.scores.images, 3) and got["auroc best"].shape == (2, planted.scores.images)
    assert (got["index"] == planted.scores.index.numpy()).all()
    assert abs(got["auroc own"].astype(float) - torch.stack(planted.scores.own["auroc"]).numpy()).max() < 1e-3
    again = stats.hierarchical_bootstrap(list(got["auroc best"].astype(float)), n_boot=200, seed=0)
    assert again.mean == pytest.approx(planted.auroc.mean, abs=1e-3)
