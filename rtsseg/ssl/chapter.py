"""The numbers, tables and figures of the three training chapters (2 Barlow Twins, 3 DINO, 4 supervised), so that
each notebook holds parameters, calls, figures and prose only.

Everything here reads what the trainers wrote (``history.csv``, ``checkpoint.pt``, ``ccmatrix_e*.pt``) and
returns a table (a ``DataFrame``), a figure, a :class:`rtsseg.findings.Finding` or the chapter's glue texts as
``{glue name: text}`` (already formatted: the notebook only calls ``glue_result(name, text)``). Nothing here
trains, and nothing here changes a run's configuration: the notebooks still build every config.

Conventions of every chapter's ``histories``: ``{(backbone, seed): history.csv frame}`` in training order; row 0
is epoch 0 (the random init, scored before training) where the trainer validates at the start (Barlow Twins,
DINO), the last row is the trained model. Accuracies in the frames are fractions; tables and texts show %.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import MaxNLocator

from rtsseg.ssl.plot import log_axis_if_wide
from rtsseg.stats import mean_std, t_interval

Key = tuple[str, int]  # (backbone, seed)


# ----------------------------------------------------------------------------------------------- runs, keys
def epochs_of(backbone: str, epochs: int, epochs_by_backbone: Mapping[str, int] | None) -> int:
    """The epochs ``backbone`` trains: its entry of ``epochs_by_backbone``, else ``epochs`` (chapters 2 and 4)."""
    return int((epochs_by_backbone or {}).get(backbone, epochs))


def read_histories(runs: Mapping[Key, Path]) -> dict[Key, pd.DataFrame]:
    """``history.csv`` of every run folder, same keys and order."""
    return {key: pd.read_csv(Path(run) / "history.csv") for key, run in runs.items()}


def history_table(histories: Mapping[Key, pd.DataFrame]) -> pd.DataFrame:
    """Every run's history (one row per epoch: k-NN, losses, learning rate, wall time) in one table with its
    backbone and seed: the saved result the figures and k-NN tables can be recomputed from without the runs."""
    return pd.concat([h.assign(backbone=b, seed=s) for (b, s), h in histories.items()], ignore_index=True)


def keys_of(histories: Mapping[Key, pd.DataFrame], backbone: str) -> list[Key]:
    """The (backbone, seed) keys of one backbone, in training order."""
    return [k for k in histories if k[0] == backbone]


def main_of(main_backbone: str, backbones: Sequence[str]) -> str:
    """The backbone a chapter's headline reads: ``main_backbone`` when it trained, else the first backbone."""
    return main_backbone if main_backbone in backbones else backbones[0]


def seed_histories(histories: Mapping[Key, pd.DataFrame], backbone: str, label: str = "seed {seed}") -> dict:
    """``{label: frame}`` of one backbone's seeds, for the history figures (one line per seed)."""
    return {label.format(backbone=b, seed=s): histories[b, s] for b, s in keys_of(histories, backbone)}


def _column(frames: Sequence[pd.DataFrame], column: str, row: int = -1, scale: float = 1.0) -> list[float]:
    """``scale × frame[column]`` at ``row`` of each frame (one value per seed)."""
    return [scale * float(h.iloc[row][column]) for h in frames]


def _ratio(frames: Sequence[pd.DataFrame], column: str = "knn_acc") -> list[float]:
    """Last / first value of ``column`` per seed (the trained model over its own random init)."""
    return [float(h.iloc[-1][column]) / float(h.iloc[0][column]) for h in frames]


def knn_gain_finding(frames: Sequence[pd.DataFrame], key: str, step: str, what: str, column: str = "knn_acc"):
    """The chapter's headline: k-NN top-1 after training minus the same seed's random init (epoch 0), in points,
    paired over seeds (:func:`rtsseg.stats.t_interval` of the per-seed differences), against 0."""
    from rtsseg.findings import Finding

    diffs = [100 * (float(h.iloc[-1][column]) - float(h.iloc[0][column])) for h in frames]
    if not diffs:
        raise ValueError(f"{step}: no history for finding {key!r}. Fix: train at least one seed of the backbone")
    return Finding(key, step, what, t_interval(diffs), "points", 0.0, "0 (the random init of the same seed)")


# ------------------------------------------------------------------------------------- chapter 2: Barlow Twins
def pool_texts(n_images: int, n_classes: int, image_size: int) -> dict[str, str]:
    """Chapter 2's pretraining pool: images, classes, resolution, chance accuracy (%)."""
    return {"bt_pool": format(n_images, ",d"), "bt_classes": format(n_classes, "d"),
            "bt_image_size": format(image_size, "d"), "bt_chance": format(100 / n_classes, ".2g")}


def plot_other_backbones(histories: Mapping[Key, pd.DataFrame], main_backbone: str, optimizers: Mapping[str, str],
                         width: float = 8.0):
    """Monitor loss (log scale) and k-NN top-1 (%) per epoch of every run of the backbones other than
    ``main_backbone``; None when no other backbone trained (the chapter glues a sentence instead)."""
    others = [k for k in histories if k[0] != main_backbone]
    if not others:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(width, 3.4))
    for b, s in others:
        h = histories[b, s]
        axes[0].plot(h["epoch"], h["loss"], marker="o", label=f"{b} seed {s} ({optimizers[b]})")
        axes[1].plot(h["epoch"], 100 * h["knn_acc"], marker="o")
    axes[0].set(title="loss (monitor batch)", xlabel="epoch")
    log_axis_if_wide(axes[0], [histories[k]["loss"] for k in others])
    axes[1].set(title="k-NN top-1 (val, %)", xlabel="epoch")
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # whole epochs, never 0.0-1.0
        ax.grid(alpha=0.3)
    fig.legend(loc="lower center", ncol=2, frameon=False)
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    return fig


def plot_ccmatrices(runs: Mapping[Key, Path], histories: Mapping[Key, pd.DataFrame], backbones: Sequence[str],
                    width: float = 8.0):
    """The cross-correlation matrix saved after the last epoch (``ccmatrix_e{epoch}.pt``) of the first seed of
    each backbone, two panels per row."""
    import torch

    from rtsseg.ssl.plot import plot_ccmatrix

    ncols = min(2, len(backbones))
    nrows = -(-len(backbones) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, 3.6 * nrows), squeeze=False)
    for ax, backbone in zip(axes.flat, backbones):
        key = keys_of(histories, backbone)[0]
        last = int(histories[key]["epoch"].max())
        c = torch.load(Path(runs[key]) / f"ccmatrix_e{last}.pt", weights_only=True)  # [d, d]
        plot_ccmatrix(c, ax=ax, title=f"{backbone}, epoch {last}")
    for ax in list(axes.flat)[len(backbones):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def bt_tables(histories: Mapping[Key, pd.DataFrame], backbones: Sequence[str], optimizers: Mapping[str, str]):
    """Chapter 2's two tables, one row per backbone, mean ± std over seeds: the k-NN top-1 (%) before (random
    init) and after training with their per-seed ratio (``tbl_bt_knn``, saved as ``pretrain_knn``), and the
    final monitors with the wall time of one run (``tbl_bt_monitors``)."""
    knn, monitors = [], {}
    for backbone in backbones:
        hs = [histories[k] for k in keys_of(histories, backbone)]
        knn.append({"backbone": backbone, "seeds": len(hs), "optimizer": optimizers[backbone],
                    "epochs": int(hs[0].iloc[-1]["epoch"]),
                    "k-NN before (%)": mean_std(_column(hs, "knn_acc", 0, 100)),
                    "k-NN after (%)": mean_std(_column(hs, "knn_acc", -1, 100)),
                    "after / before": mean_std(_ratio(hs), decimals=2)})
        monitors[backbone] = {"final loss": mean_std(_column(hs, "loss"), decimals=1),
                              "emb std after": mean_std(_column(hs, "emb_std"), decimals=3),
                              "wall time (min)": mean_std([h["wall_s"].max() / 60 for h in hs])}
    monitors = pd.DataFrame(monitors).T
    monitors.index.name = "backbone"
    return pd.DataFrame(knn).set_index("backbone"), monitors


def bt_result_texts(histories: Mapping[Key, pd.DataFrame], backbone: str, epochs: int, finding) -> dict[str, str]:
    """The numbers of chapter 2's Result paragraph for ``backbone`` (mean ± std over seeds) and the sentence of
    its finding (``bt_knn_minus_random``: the paired interval and its verdict)."""
    hs = [histories[k] for k in keys_of(histories, backbone)]
    return {"bt_main_backbone": backbone, "bt_main_seeds": format(len(hs), "d"), "bt_main_epochs": format(epochs, "d"),
            "bt_knn_before": mean_std(_column(hs, "knn_acc", 0, 100)),
            "bt_knn_after": mean_std(_column(hs, "knn_acc", -1, 100)),
            "bt_knn_ratio": mean_std(_ratio(hs), decimals=2),
            "bt_wall_min": mean_std([h["wall_s"].max() / 60 for h in hs]),
            "bt_knn_minus_random": finding.sentence(2)}


# --------------------------------------------------------------------------------------------- chapter 3: DINO
def dino_flops(backbones: Sequence[str], image_size: int, bt_projector_dims: Sequence[int], n_local_crops: int,
               out_dim: int | None, epochs: int | None, bt_epochs: float) -> dict[str, dict]:
    """Per backbone the counted FLOPs of one training step of each method (``bt``, ``dino``:
    :func:`rtsseg.ssl.flops.step_flops`) and the DINO ``epochs``: the given number, else the epochs whose total
    FLOPs match ``bt_epochs`` of Barlow Twins, rounded, at least 1."""
    from rtsseg.ssl.flops import equal_flops_epochs, step_flops

    out = {}
    for backbone in backbones:
        bt = step_flops(backbone, "barlow_twins", image_size=image_size, projector_dims=tuple(bt_projector_dims))
        dino = step_flops(backbone, "dino", image_size=image_size, n_local_crops=n_local_crops, out_dim=out_dim)
        out[backbone] = dict(bt=bt, dino=dino, epochs=epochs or max(
            1, round(equal_flops_epochs(bt_epochs, bt["flops_per_image"], dino["flops_per_image"]))))
    return out


def flops_table(flops: Mapping[str, dict], bt_epochs: float) -> pd.DataFrame:
    """``tbl_dino_flops``: GFLOP per image of a step of each method, their ratio, the epochs of each and the ratio
    of total FLOPs (DINO epochs × DINO step / BT epochs × BT step), rounded to 3 decimals."""
    return pd.DataFrame([
        {"backbone": b, "Barlow Twins GFLOP/image": f["bt"]["flops_per_image"] / 1e9,
         "DINO GFLOP/image": f["dino"]["flops_per_image"] / 1e9,
         "DINO / BT": f["dino"]["flops_per_image"] / f["bt"]["flops_per_image"],
         "BT epochs": bt_epochs, "DINO epochs": f["epochs"],
         "DINO / BT total FLOPs": _total_ratio(f, bt_epochs)}
        for b, f in flops.items()
    ]).set_index("backbone").round(3)


def _total_ratio(f: dict, bt_epochs: float) -> float:
    return f["epochs"] * f["dino"]["flops_per_image"] / (bt_epochs * f["bt"]["flops_per_image"])


def teacher_schedule(run: Path, warmup_epochs: float, warmup_teacher_temp_epochs: float,
                     momentum_teacher: float | None) -> dict:
    """What one DINO run did, read from its checkpoint: its steps, the teacher's momentum base (the given one,
    else :func:`rtsseg.ssl.dino_schedule.teacher_momentum_base` of the run length, as the trainer picks it), the
    share of the random init the EMA teacher kept, and the lr / teacher-temperature warm-ups as shares of the
    run. ``warmup_*_epochs`` are the run's own (its config's), in DINO epochs."""
    from rtsseg.checkpoint import load_checkpoint
    from rtsseg.ssl.dino_schedule import momentum_schedule, teacher_momentum_base, teacher_retention, warmup_steps

    state = load_checkpoint(Path(run) / "checkpoint.pt")
    total, per_epoch = int(state["total_steps"]), int(state["steps_per_epoch"])
    del state
    base = momentum_teacher if momentum_teacher is not None else teacher_momentum_base(total)
    return dict(steps=total, base=base, retention=teacher_retention(momentum_schedule(base, total)),
                lr_warmup=warmup_steps(warmup_epochs, per_epoch) / total,
                temp_warmup=warmup_steps(warmup_teacher_temp_epochs, per_epoch) / total)


def dino_history_figures(histories: Mapping[Key, pd.DataFrame], flops: Mapping[str, dict]) -> list:
    """One :func:`rtsseg.ssl.dino_plot.plot_dino_history` figure per backbone (lines: seeds; log K of its head)."""
    from rtsseg.ssl.dino_plot import plot_dino_history

    return [plot_dino_history({s: histories[b, s] for b, s in keys_of(histories, backbone)},
                              out_dim=flops[backbone]["dino"]["out_dim"], title=backbone) for backbone in flops]


def dino_table(histories: Mapping[Key, pd.DataFrame], flops: Mapping[str, dict]):
    """``tbl_dino_knn`` (saved as ``dino_knn``): per backbone the teacher backbone's k-NN top-1 (%) before and
    after, mean ± std over seeds, and the collapse monitors of the last epoch; and the per-backbone summaries
    (:func:`rtsseg.ssl.dino_plot.summarize_dino`)."""
    from rtsseg.ssl.dino_plot import summarize_dino

    rows, summaries = [], {}
    for backbone in flops:
        hs = {s: histories[b, s] for b, s in keys_of(histories, backbone)}
        s = summaries[backbone] = summarize_dino(hs, flops[backbone]["dino"]["out_dim"])
        rows.append({
            "backbone": backbone, "epochs": s["epochs"],
            "k-NN before (%)": mean_std(_column(list(hs.values()), "knn_acc", 0, 100)),
            "k-NN after (%)": mean_std(_column(list(hs.values()), "knn_acc", -1, 100)),
            "teacher entropy (nats)": f"{s['teacher_entropy'][0]:.2f} (log K = {s['log_k']:.2f})",
            "KL (nats)": f"{s['kl'][0]:.3f}", "collapse": ", ".join(sorted(set(s["collapse"]))),
        })
    return pd.DataFrame(rows).set_index("backbone"), summaries


def dino_result_texts(histories: Mapping[Key, pd.DataFrame], backbone: str, flops: dict, summary: dict,
                      teacher: dict, bt_epochs: float, n_local_crops: int, warmup_epochs: float,
                      bt_table: pd.DataFrame | None, finding) -> dict[str, str]:
    """The numbers of chapter 3's Result paragraph for ``backbone`` (k-NN mean ± std over seeds, FLOPs ratios,
    collapse monitors, the teacher schedule of its first seed's run, chapter 2's k-NN after Barlow Twins from
    ``bt_table`` (its saved ``pretrain_knn``)) and the sentence of its finding (``dino_knn_minus_random``)."""
    hs = [histories[k] for k in keys_of(histories, backbone)]
    bt_after = (str(bt_table.loc[backbone, "k-NN after (%)"]) if bt_table is not None and backbone in bt_table.index
                else "not run in this profile")
    return {
        "dino_backbone": backbone, "dino_epochs": format(summary["epochs"], "d"),
        "dino_bt_epochs": format(bt_epochs, "d"), "dino_n_local": format(n_local_crops, "d"),
        "dino_step_ratio": format(flops["dino"]["flops_per_image"] / flops["bt"]["flops_per_image"], ".2f"),
        "dino_flops_ratio": format(_total_ratio(flops, bt_epochs), ".2f"),
        "dino_knn_before": mean_std(_column(hs, "knn_acc", 0, 100)),
        "dino_knn_after": mean_std(_column(hs, "knn_acc", -1, 100)),
        "dino_knn_ratio": mean_std(_ratio(hs), decimals=2), "dino_n_seeds": format(len(hs), "d"),
        "dino_entropy": f"{summary['teacher_entropy'][0]:.2f}", "dino_log_k": f"{summary['log_k']:.2f}",
        "dino_collapse": ", ".join(sorted(set(summary["collapse"]))),
        "dino_steps": format(teacher["steps"], ",d"), "dino_momentum_base": format(teacher["base"], ".4f"),
        "dino_teacher_retention": format(100 * teacher["retention"], ".3g"),  # % of the random init left
        "dino_warmup_share": format(100 * teacher["lr_warmup"], ".3g"),  # lr warm-up steps / steps
        "dino_bt_warmup_share": format(100 * warmup_epochs / bt_epochs, ".3g"),  # chapter 2's share
        "dino_temp_warmup_share": format(100 * teacher["temp_warmup"], ".3g"),
        "dino_bt_knn_after": bt_after,
        "dino_knn_minus_random": finding.sentence(2),
        "dino_budget_verdict": dino_budget_verdict(finding),
    }


def run_folder_table(runs: Mapping[Key, Path]) -> pd.DataFrame:
    """The run folder of every (backbone, seed) a training chapter trained, relative to the runs root
    (``rtsseg.glue.rel``): one row "<backbone> seed <seed>", column "run folder"."""
    from rtsseg.glue import rel

    return pd.DataFrame({"run folder": {f"{b} seed {s}": rel(run) for (b, s), run in runs.items()}})


def show_run_folders(runs: Mapping[Key, Path]) -> None:
    """Display :func:`run_folder_table` with whole folder names (pandas cuts a cell at 50 characters, and a folder
    name cut short names no run)."""
    from IPython.display import display

    with pd.option_context("display.max_colwidth", None):  # the HTML is rendered inside display, so inside this
        display(run_folder_table(runs))


def dino_trained(finding) -> bool:
    """The rule for "DINO trained at its budget": its teacher's k-NN top-1 minus its random init (chapter 3's finding,
    paired by seed) lies above 0. Chapter 3's sentence and the landing page (``rtsseg.bookpages``) both ask this."""
    return finding.verdict == "above"


def dino_budget_verdict(finding) -> str:
    """Whether DINO was trained at this budget, from its k-NN finding (teacher minus random init, paired by seed):
    trained only where the interval lies above 0. Otherwise the later chapters' DINO rows are a second untrained
    baseline, not DINO, and the book draws no DINO − Barlow Twins comparison (the landing page drops it)."""
    if dino_trained(finding):
        return ("DINO is trained at this budget: its teacher's k-NN top-1 lies above its random initialisation "
                "(the interval above 0), so the later chapters compare its attention maps with Barlow Twins'.")
    return ("DINO is not trained at this budget: its teacher's k-NN top-1 is not above its random initialisation "
            f"({finding.value_text(2)}: {finding.verdict}, the null being 0). Its rows in the later chapters are a "
            "second untrained baseline, not DINO's recipe at work, and the landing page draws no DINO − Barlow Twins "
            "comparison from them.")


# --------------------------------------------------------------------------------------- chapter 4: supervised
def num_classes_of(run: Path) -> int:
    """The number of classes a supervised run trained on (its checkpoint's ``num_classes``)."""
    from rtsseg.checkpoint import load_checkpoint

    return int(load_checkpoint(Path(run) / "checkpoint.pt")["num_classes"])


def supervised_table(histories: Mapping[Key, pd.DataFrame], backbones: Sequence[str]):
    """``tbl_supervised`` (saved as ``supervised_train``): per backbone, after the last epoch, val top-1, train
    accuracy (%), loss and the wall time of one run (``wall_s`` is cumulative: the last row), mean ± std over
    seeds; and the backbone with the highest mean val top-1 with its per-seed values (%)."""
    rows, best = [], (None, -math.inf, [])
    for backbone in backbones:
        last = [h.iloc[-1] for h in (histories[k] for k in keys_of(histories, backbone))]
        top1 = [100 * float(r["val_top1"]) for r in last]
        if sum(top1) / len(top1) > best[1]:
            best = (backbone, sum(top1) / len(top1), top1)
        rows.append({"backbone": backbone, "seeds": len(last), "epochs": int(last[0]["epoch"]),
                     "val top-1 (%)": mean_std(top1),
                     "train acc (%)": mean_std([100 * r["train_acc"] for r in last]),
                     "final loss": mean_std([r["loss"] for r in last], decimals=2),
                     "wall time (min)": mean_std([r["wall_s"] / 60 for r in last])})
    return pd.DataFrame(rows).set_index("backbone"), (best[0], best[2])


def supervised_finding(histories: Mapping[Key, pd.DataFrame], backbone: str, num_classes: int,
                       step: str = "04_supervised_baseline"):
    """The supervised baseline's val top-1 (%) of ``backbone`` after the last epoch, t interval over seeds,
    against chance (100 / ``num_classes`` %); None when the backbone did not train."""
    from rtsseg.findings import Finding

    top1 = _column([histories[k] for k in keys_of(histories, backbone)], "val_top1", -1, 100)
    if not top1:
        return None
    chance = 100 / num_classes
    return Finding("supervised.val_top1", step, f"supervised {backbone}, val top-1 on Tiny-ImageNet",
                   t_interval(top1), "%", chance, f"chance ({chance:.2g} %)")


def supervised_texts(histories: Mapping[Key, pd.DataFrame], main_backbone: str, num_classes: int, best,
                     finding) -> dict[str, str]:
    """The numbers of chapter 4's first Result sentence: chance, the best backbone and its val top-1, the main
    backbone's val top-1 (mean ± std over seeds) and the sentence of its finding."""
    main = _column([histories[k] for k in keys_of(histories, main_backbone)], "val_top1", -1, 100)
    return {"supervised_chance": format(100 / num_classes, ".2g"), "supervised_best_backbone": best[0],
            "supervised_best_top1": mean_std(best[1]),
            "supervised_main_top1": mean_std(main) if main else "not run", "main_backbone": main_backbone,
            "supervised_top1_finding": finding.sentence(2) if finding is not None else "not run in this edition"}


def control_histories(histories: Mapping[Key, pd.DataFrame], control: Mapping[int, pd.DataFrame],
                      backbone: str) -> dict[str, pd.DataFrame]:
    """The plain supervised runs of ``backbone`` beside the attention-supervised control's, labelled for one
    figure."""
    return {**seed_histories(histories, backbone, "supervised seed {seed}"),
            **{f"control seed {s}": h for s, h in control.items()}}


def control_texts(control: Mapping[int, pd.DataFrame], weight: float) -> dict[str, str]:
    """The control's numbers, mean ± std over seeds: its attention term (−log mass in the box) over the first and
    the last epoch, the geometric-mean mass inside the box over the last epoch (exp of minus the mean −log mass,
    %), its val top-1 (%), and the attention-loss weight."""
    first = [h.iloc[0] for h in control.values()]
    last = [h.iloc[-1] for h in control.values()]
    return {"control_attn_loss_first": mean_std([r["attn_loss"] for r in first], decimals=2),
            "control_attn_loss_last": mean_std([r["attn_loss"] for r in last], decimals=2),
            "control_mass_last": mean_std([100 * math.exp(-r["attn_loss"]) for r in last]),
            "control_top1": mean_std([100 * r["val_top1"] for r in last]),
            "control_weight": format(weight, "g")}


__all__ = ["epochs_of", "read_histories", "keys_of", "main_of", "seed_histories", "knn_gain_finding", "pool_texts",
           "plot_other_backbones", "plot_ccmatrices", "bt_tables", "bt_result_texts", "dino_flops", "flops_table",
           "teacher_schedule", "dino_history_figures", "dino_table", "dino_result_texts", "num_classes_of",
           "supervised_table", "supervised_finding", "supervised_texts", "control_histories", "control_texts"]
