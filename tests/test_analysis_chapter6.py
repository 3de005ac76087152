"""Chapter 6's probes, tables, paired gains and t-SNE figure (rtsseg.analysis.chapter6) on made-up embeddings and
scores, recomputed by hand here."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import pandas as pd
import pytest
import torch

from rtsseg.analysis import chapter6 as E


def _clusters(n_per_class: int, num_classes: int, dim: int = 8, seed: int = 0):
    """Points near orthogonal class centres: any sane k-NN or linear probe separates them perfectly."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(num_classes).repeat_interleave(n_per_class)  # [N]
    x = torch.eye(dim)[y] * 5 + 0.1 * torch.randn(len(y), dim, generator=g)  # [N, D]
    return x, y


def test_probe_scores_separable_and_wrong_labels():
    x_tr, y_tr = _clusters(10, 4)
    x_va, y_va = _clusters(5, 4, seed=1)
    s = E.probe_scores(x_tr, y_tr, x_va, y_va, 4, linear_epochs=50)
    assert s == {"k-NN": 1.0, "linear": 1.0}
    wrong = (y_va + 1) % 4  # every val label names another cluster
    s = E.probe_scores(x_tr, y_tr, x_va, wrong, 4, linear_epochs=50)
    assert s == {"k-NN": 0.0, "linear": 0.0}


def _scores():
    rows = [("vit", "random", 0, 0.02), ("vit", "random", 1, 0.04), ("vit", "barlow twins", 0, 0.05),
            ("vit", "barlow twins", 1, 0.06), ("vit", "barlow twins", 2, 0.30),  # seed 2 has no random init
            ("swin", "random", 0, 0.01)]
    return pd.DataFrame([{"backbone": b, "init": i, "seed": s, "k-NN": v, "linear": 2 * v} for b, i, s, v in rows])


def test_score_tables_order_and_missing_cells():
    inits, tables = E.score_tables(_scores(), ["random", "supervised", "barlow twins", "dino"])
    assert inits == ["random", "barlow twins"]  # the INITS order, only those that ran
    knn = tables["k-NN"]
    assert list(knn.columns) == inits
    assert knn.loc["vit", "random"] == f"3.0 ± {math.sqrt(2):.1f} (n=2)"
    assert knn.loc["swin", "barlow twins"] == "–"
    assert tables["linear"].loc["swin", "random"] == "2.0 (n=1)"


def test_paired_gains_pair_by_seed():
    d = E.paired_gains(_scores(), "barlow twins", "vit")
    assert d == pytest.approx([3.0, 2.0])  # seeds 0 and 1 only; the unpaired means would give +10.7
    assert E.paired_gains(_scores(), "dino", "vit") == []
    t = E.result_texts(_scores(), "vit")
    assert t["bt_knn_gain"] == f"2.5 ± {math.sqrt(0.5):.1f} (n=2)"
    assert t["dino_knn_gain"] == "not run in this edition" and t["sup_knn_gain"] == "not run in this edition"
    assert t["emb_random_knn"] == f"3.0 ± {math.sqrt(2):.1f} (n=2)" and t["emb_main_backbone"] == "vit"
    assert E.result_texts(_scores(), "botnet")["emb_random_knn"] == "not run"


def test_tsne_run_and_panels():
    runs = [("vit", 3), ("vit", 4), ("swin", 0)]
    assert E.tsne_run(runs, "vit", ["vit", "swin"]) == ("vit", 3)
    assert E.tsne_run(runs, "resnet", ["swin", "vit"]) == ("swin", 0)
    x, y = _clusters(6, 4, dim=6)
    feats = {("vit", "random", 3): x, ("vit", "dino", 3): x + 1, ("swin", "random", 0): x}
    names = ["a, first", "b", "c", "d"]
    fig = E.plot_tsne_panels(feats, y, names, ["random", "barlow twins", "dino"], "vit", 3, 3)
    drawn = [ax for ax in fig.axes if ax.collections]
    assert [ax.get_title() for ax in drawn] == ["random", "dino"]
    assert sum(len(c.get_offsets()) for c in drawn[0].collections) == 18  # the 3 classes shown, 6 points each
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="no embeddings"):
        E.plot_tsne_panels(feats, y, names, ["supervised"], "vit", 3, 3)
