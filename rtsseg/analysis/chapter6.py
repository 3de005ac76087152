"""The numbers, tables and figure of chapter 6 (embeddings: k-NN, linear probe, t-SNE), so that the notebook holds
parameters, calls, figures and prose only.

``scores`` is the chapter's long table: one row per (backbone, init, seed) with the k-NN and linear-probe top-1
accuracies as fractions (:func:`probe_scores`); tables and texts show %. ``feats`` holds the val embeddings
``float32 [M, D]`` per (backbone, init, seed), for the t-SNE panels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import pandas as pd
import torch

from rtsseg.analysis.embeddings import linear_probe_accuracy, plot_tsne, tsne_2d
from rtsseg.knn import knn_accuracy
from rtsseg.stats import mean_std, seed_table

METRICS = ("k-NN", "linear")
NOT_RUN = "not run in this edition"


def probe_scores(x_tr: torch.Tensor, y_tr: torch.Tensor, x_va: torch.Tensor, y_va: torch.Tensor, num_classes: int,
                 linear_epochs: int = 100, seed: int = 0, k: int = 20, temperature: float = 0.07) -> dict:
    """Top-1 on the val embeddings ``x_va [M, D]`` of the weighted k-NN (cosine, ``k`` = 20, T = 0.07, DINO's
    ``eval_knn.py``) and of the linear probe, both fitted on ``x_tr [N, D]``; fractions in [0, 1]."""
    return {"k-NN": knn_accuracy(x_tr, y_tr, x_va, y_va, num_classes, k=k, temperature=temperature),
            "linear": linear_probe_accuracy(x_tr, y_tr, x_va, y_va, num_classes, epochs=linear_epochs, seed=seed)}


def score_tables(scores: pd.DataFrame, inits: Sequence[str]) -> tuple[list[str], dict[str, pd.DataFrame]]:
    """The initialisations present in ``scores`` (in ``inits`` order) and per metric the backbone × init table of
    top-1 (%), mean ± std over seeds ("–" where a cell did not run)."""
    present = [i for i in inits if i in set(scores["init"])]
    return present, {m: seed_table(scores, "backbone", "init", m)[present].fillna("–") for m in METRICS}


def paired_gains(scores: pd.DataFrame, init: str, backbone: str, metric: str = "k-NN") -> list[float]:
    """``init`` minus the random init of ``backbone``, in points, one value per seed where both ran (the same
    seed's random network: paired)."""
    s = scores[scores["backbone"] == backbone].pivot_table(index="seed", columns="init", values=metric)
    if init not in s or "random" not in s:
        return []
    return [100 * float(v) for v in (s[init] - s["random"]).dropna()]


def result_texts(scores: pd.DataFrame, backbone: str) -> dict[str, str]:
    """The numbers of the Result paragraph for ``backbone``: its random init's k-NN top-1 (%) and the k-NN gains
    of Barlow Twins, DINO and supervised training over it, paired by seed, mean ± std over seeds."""
    def gain(init: str) -> str:
        d = paired_gains(scores, init, backbone)
        return mean_std(d) if d else NOT_RUN

    rand = scores[(scores["backbone"] == backbone) & (scores["init"] == "random")]["k-NN"]
    return {"emb_main_backbone": backbone, "bt_knn_gain": gain("barlow twins"), "dino_knn_gain": gain("dino"),
            "sup_knn_gain": gain("supervised"),
            "emb_random_knn": mean_std([100 * v for v in rand]) if len(rand) else "not run"}


def tsne_run(runs: Sequence[tuple[str, int]], main_backbone: str, backbones: Sequence[str]) -> tuple[str, int]:
    """The (backbone, seed) the t-SNE figure shows: the main backbone (else the first), its first seed."""
    backbone = main_backbone if main_backbone in backbones else backbones[0]
    return backbone, next(s for b, s in runs if b == backbone)


def plot_tsne_panels(feats: Mapping[tuple[str, str, int], torch.Tensor], labels: torch.Tensor,
                     class_names: Sequence[str], inits: Sequence[str], backbone: str, seed: int, n_classes: int,
                     width: float = 8.0):
    """One t-SNE panel per initialisation of (``backbone``, ``seed``) present in ``feats``, of the val images of
    the first ``n_classes`` classes (``labels [M]``), two panels per row, one shared legend below."""
    labels = torch.as_tensor(labels)  # [M]
    shown = labels < n_classes  # [M]
    names = [n.split(",")[0] for n in class_names[:n_classes]]
    panels = [i for i in inits if (backbone, i, seed) in feats]
    if not panels:
        raise ValueError(f"no embeddings of {backbone} seed {seed}. Fix: score at least one initialisation of it")
    ncols = min(2, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, width / ncols * 0.85 * nrows + 1.0), squeeze=False)
    for ax, init in zip(axes.flat, panels):
        x = feats[backbone, init, seed][shown]  # [m, D]
        pts = tsne_2d(x, seed=seed, perplexity=min(30.0, (len(x) - 1) / 3))
        plot_tsne(pts, labels[shown].numpy(), names, ax=ax, title=init, legend=False)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles, texts = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, texts, loc="lower center", ncol=min(5, len(texts)), frameon=False, markerscale=1.5)
    fig.tight_layout(rect=(0, 0.06 * (1 + (len(texts) - 1) // 5) / nrows, 1, 1))
    return fig


__all__ = ["METRICS", "probe_scores", "score_tables", "paired_gains", "result_texts", "tsne_run",
           "plot_tsne_panels"]
