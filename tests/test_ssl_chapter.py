"""The training chapters' tables, texts, findings and figures (rtsseg.ssl.chapter, rtsseg.ssl.plot.plot_training),
on made-up histories whose numbers are recomputed by hand here."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as st

from rtsseg.checkpoint import save_checkpoint
from rtsseg.ssl import chapter as C
from rtsseg.ssl.plot import plot_training


def _bt(knn0, knn1, loss=(10.0, 5.0), emb=(0.02, 0.05), wall=(0.0, 120.0)):
    return pd.DataFrame({"epoch": [0, 1], "knn_acc": [knn0, knn1], "loss": list(loss), "emb_std": list(emb),
                         "wall_s": list(wall)})


@pytest.fixture
def bt_histories():
    return {("vit", 0): _bt(0.02, 0.05, wall=(0.0, 60.0)), ("vit", 1): _bt(0.04, 0.06, wall=(0.0, 180.0)),
            ("swin", 0): _bt(0.01, 0.03)}


def test_epochs_of_and_keys(bt_histories):
    assert C.epochs_of("swin", 2, {"swin": 1}) == 1
    assert C.epochs_of("vit", 2, {"swin": 1}) == 2
    assert C.epochs_of("vit", 3, None) == 3
    assert C.keys_of(bt_histories, "vit") == [("vit", 0), ("vit", 1)]
    assert C.main_of("resnet", ["vit", "swin"]) == "vit" and C.main_of("swin", ["vit", "swin"]) == "swin"
    assert list(C.seed_histories(bt_histories, "vit")) == ["seed 0", "seed 1"]


def test_read_histories(tmp_path):
    (tmp_path / "a").mkdir()
    _bt(0.1, 0.2).to_csv(tmp_path / "a" / "history.csv", index=False)
    h = C.read_histories({("vit", 3): tmp_path / "a"})
    assert list(h) == [("vit", 3)] and h["vit", 3]["knn_acc"].tolist() == [0.1, 0.2]


def test_knn_gain_finding_is_the_paired_t_interval(bt_histories):
    hs = [bt_histories[k] for k in C.keys_of(bt_histories, "vit")]
    f = C.knn_gain_finding(hs, "pretrain.x", "02_pretrain_barlow_twins", "BT − random")
    d = np.array([3.0, 2.0])  # points: 5 − 2, 6 − 4
    half = st.t.ppf(0.975, 1) * d.std(ddof=1) / math.sqrt(2)
    assert f.interval.mean == pytest.approx(2.5)
    assert (f.interval.lo, f.interval.hi) == pytest.approx((2.5 - half, 2.5 + half))
    assert f.interval.n == 2 and f.unit == "points" and f.null == 0.0
    assert f.verdict == "no measurable difference"  # half-width 6.35 with two seeds
    # three seeds with a consistent gain: the interval clears 0
    more = hs + [_bt(0.03, 0.055)]
    assert C.knn_gain_finding(more, "k", "02_pretrain_barlow_twins", "w").verdict == "above"
    one = C.knn_gain_finding(hs[:1], "k", "02_pretrain_barlow_twins", "w")
    assert not one.interval.has_interval and "3.00" in one.sentence(2)
    with pytest.raises(ValueError, match="no history"):
        C.knn_gain_finding([], "k", "02_pretrain_barlow_twins", "w")


def test_bt_tables_by_hand(bt_histories):
    knn, monitors = C.bt_tables(bt_histories, ["vit", "swin"], {"vit": "adamw", "swin": "lars"})
    assert list(knn.index) == ["vit", "swin"] and knn.loc["vit", "seeds"] == 2
    assert knn.loc["vit", "optimizer"] == "adamw" and knn.loc["vit", "epochs"] == 1
    assert knn.loc["vit", "k-NN before (%)"] == f"3.0 ± {math.sqrt(2):.1f} (n=2)"
    assert knn.loc["vit", "k-NN after (%)"] == f"5.5 ± {math.sqrt(0.5):.1f} (n=2)"
    # the ratio per seed (2.5 and 1.5), not the ratio of the means (5.5 / 3)
    assert knn.loc["vit", "after / before"] == f"2.00 ± {math.sqrt(0.5):.2f} (n=2)"
    assert knn.loc["swin", "k-NN after (%)"] == "3.0 (n=1)"
    assert monitors.index.name == "backbone"
    assert monitors.loc["vit", "wall time (min)"] == f"2.0 ± {math.sqrt(2):.1f} (n=2)"  # 1 and 3 minutes
    assert monitors.loc["vit", "emb std after"] == "0.050 ± 0.000 (n=2)"


def test_bt_result_texts(bt_histories):
    f = C.knn_gain_finding([bt_histories["vit", 0], bt_histories["vit", 1]], "k", "02_pretrain_barlow_twins", "BT")
    t = C.bt_result_texts(bt_histories, "vit", 2, f)
    assert t["bt_main_backbone"] == "vit" and t["bt_main_seeds"] == "2" and t["bt_main_epochs"] == "2"
    assert t["bt_knn_before"].startswith("3.0 ±") and t["bt_knn_after"].startswith("5.5 ±")
    assert t["bt_knn_minus_random"].startswith("BT: +2.50 [")
    assert C.pool_texts(20000, 200, 64) == {"bt_pool": "20,000", "bt_classes": "200", "bt_image_size": "64",
                                            "bt_chance": "0.5"}


def test_plot_other_backbones(bt_histories):
    only_main = {k: v for k, v in bt_histories.items() if k[0] == "vit"}
    assert C.plot_other_backbones(only_main, "vit", {"vit": "adamw"}) is None
    fig = C.plot_other_backbones(bt_histories, "vit", {"vit": "adamw", "swin": "lars"})
    assert [len(ax.lines) for ax in fig.axes] == [1, 1]  # one run of swin on each panel
    assert fig.axes[1].lines[0].get_ydata().tolist() == pytest.approx([1.0, 3.0])  # percent


def test_plot_ccmatrices_reads_the_last_epoch(tmp_path, bt_histories):
    runs = {}
    for b, s in bt_histories:
        runs[b, s] = tmp_path / f"{b}{s}"
        runs[b, s].mkdir()
        torch.save(torch.eye(4) * (0.5 if b == "vit" else 1.0), runs[b, s] / "ccmatrix_e1.pt")
    fig = C.plot_ccmatrices(runs, bt_histories, ["vit", "swin"])
    images = [im for ax in fig.axes for im in ax.images]
    assert len(images) == 2 and images[0].get_array()[0, 0] == pytest.approx(0.5)  # vit seed 0 first
    assert fig.axes[0].get_title() == "vit, epoch 1"


def _flops():
    return {"vit": dict(bt=dict(flops_per_image=2e9), dino=dict(flops_per_image=5e9, out_dim=4096), epochs=1)}


def test_flops_table_by_hand():
    t = C.flops_table(_flops(), 2)
    row = t.loc["vit"]
    assert row["Barlow Twins GFLOP/image"] == 2.0 and row["DINO GFLOP/image"] == 5.0 and row["DINO / BT"] == 2.5
    assert row["DINO / BT total FLOPs"] == pytest.approx(1 * 5 / (2 * 2))


def test_teacher_schedule_from_checkpoint(tmp_path):
    save_checkpoint({"total_steps": 4, "steps_per_epoch": 2}, tmp_path / "checkpoint.pt")
    t = C.teacher_schedule(tmp_path, 0.5, 1.0, 0.9)
    m = [1 - 0.05 * (1 + math.cos(math.pi * i / 4)) for i in range(4)]  # cosine from 0.9 to 1
    assert t["steps"] == 4 and t["base"] == 0.9
    assert t["retention"] == pytest.approx(math.prod(m))
    assert t["lr_warmup"] == 0.25 and t["temp_warmup"] == 0.5  # 1 and 2 of 4 steps
    auto = C.teacher_schedule(tmp_path, 0.0, 0.0, None)  # chosen from the run length: <= 5 % left
    assert auto["base"] < 0.996 and auto["retention"] <= 0.05 + 1e-9


def _dino(k0, k1, ent=5.0, kl=0.5):
    return pd.DataFrame({"epoch": [0, 1], "knn_acc": [k0, k1], "loss": [8.0, 7.0], "teacher_entropy": [8.0, ent],
                         "kl": [0.0, kl]})


def test_dino_table_and_texts():
    hs = {("vit", 0): _dino(0.01, 0.04), ("vit", 1): _dino(0.02, 0.04, ent=math.log(4096), kl=0.001)}
    table, summaries = C.dino_table(hs, _flops())
    assert table.loc["vit", "k-NN after (%)"] == "4.0 ± 0.0 (n=2)"
    assert table.loc["vit", "collapse"] == "no collapse, uniform collapse"
    assert len(C.dino_history_figures(hs, _flops())) == 1
    teacher = dict(steps=1234, base=0.99, retention=0.04, lr_warmup=0.25, temp_warmup=0.0)
    f = C.knn_gain_finding(list(hs.values()), "k", "03_pretrain_dino", "DINO")
    bt = pd.DataFrame({"k-NN after (%)": ["3.1 (n=1)"]}, index=pd.Index(["vit"], name="backbone"))
    t = C.dino_result_texts(hs, "vit", _flops()["vit"], summaries["vit"], teacher, 2, 4, 0.5, bt, f)
    assert t["dino_steps"] == "1,234" and t["dino_momentum_base"] == "0.9900" and t["dino_teacher_retention"] == "4"
    assert t["dino_step_ratio"] == "2.50" and t["dino_flops_ratio"] == "1.25" and t["dino_bt_warmup_share"] == "25"
    assert t["dino_knn_ratio"] == f"{(4 + 2) / 2:.2f} ± {np.std([4, 2], ddof=1):.2f} (n=2)"
    assert t["dino_bt_knn_after"] == "3.1 (n=1)"
    assert t["dino_knn_minus_random"].startswith("DINO: +2.50 [")
    t = C.dino_result_texts(hs, "vit", _flops()["vit"], summaries["vit"], teacher, 2, 4, 0.5, None, f)
    assert t["dino_bt_knn_after"] == "not run in this profile"
    # two seeds, one interval: +2.5 points paired by seed, t over n=2 is wide but the sign follows the interval
    assert t["dino_budget_verdict"].startswith("DINO is trained" if f.verdict == "above" else "DINO is not trained")


def test_dino_budget_verdict_follows_the_knn_interval():
    from rtsseg.findings import Finding
    from rtsseg.stats import Interval

    def f(lo, hi):
        return Finding("pretrain.dino_knn_minus_random", "03_pretrain_dino", "DINO − random init",
                       Interval((lo + hi) / 2, lo, hi, 3, method="t"), "points")

    assert C.dino_budget_verdict(f(0.5, 1.5)).startswith("DINO is trained at this budget")
    for lo, hi in [(-0.96, 0.73), (-2.0, -0.5)]:  # the cpu edition's interval; one below 0
        text = C.dino_budget_verdict(f(lo, hi))
        assert text.startswith("DINO is not trained at this budget") and "no DINO − Barlow Twins comparison" in text
        assert f"{lo:+.2f}".replace("-", "−") in text


def _sup(top1, loss=2.0, attn=None):
    d = {"epoch": [1, 2], "val_top1": [top1 / 2, top1], "train_acc": [0.1, 0.2], "loss": [3.0, loss],
         "wall_s": [60.0, 120.0], "ce_loss": [3.0, loss]}
    if attn is not None:
        d["attn_loss"] = list(attn)
    return pd.DataFrame(d)


def test_supervised_table_finding_and_texts(tmp_path):
    hs = {("vit", 0): _sup(0.10), ("vit", 1): _sup(0.12), ("vit", 2): _sup(0.11), ("swin", 0): _sup(0.15)}
    table, best = C.supervised_table(hs, ["vit", "swin"])
    assert best == ("swin", [15.0])  # highest mean val top-1
    assert table.loc["vit", "val top-1 (%)"] == "11.0 ± 1.0 (n=3)" and table.loc["vit", "wall time (min)"] == \
        "2.0 ± 0.0 (n=3)"
    f = C.supervised_finding(hs, "vit", 200)
    half = st.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)
    assert (f.interval.lo, f.interval.hi) == pytest.approx((11 - half, 11 + half))
    assert f.null == 0.5 and f.verdict == "above"  # chance is 0.5 %
    assert C.supervised_finding(hs, "resnet", 200) is None
    t = C.supervised_texts(hs, "vit", 200, best, f)
    assert t["supervised_chance"] == "0.5" and t["supervised_best_backbone"] == "swin"
    assert t["supervised_main_top1"] == "11.0 ± 1.0 (n=3)" and "above chance (0.5 %)" in t["supervised_top1_finding"]
    assert C.supervised_texts(hs, "resnet", 200, best, None)["supervised_main_top1"] == "not run"
    save_checkpoint({"num_classes": 200}, tmp_path / "checkpoint.pt")
    assert C.num_classes_of(tmp_path) == 200


def test_control_texts_and_histories():
    control = {0: _sup(0.1, attn=(2.0, math.log(4))), 1: _sup(0.1, attn=(1.0, math.log(2)))}
    t = C.control_texts(control, 1.0)
    assert t["control_attn_loss_first"] == f"1.50 ± {math.sqrt(0.5):.2f} (n=2)"
    assert t["control_mass_last"] == f"37.5 ± {np.std([25, 50], ddof=1):.1f} (n=2)"  # exp(−log 4) = 25 %
    assert t["control_weight"] == "1" and t["control_top1"] == "10.0 ± 0.0 (n=2)"
    both = C.control_histories({("vit", 0): _sup(0.1), ("swin", 0): _sup(0.1)}, control, "vit")
    assert list(both) == ["supervised seed 0", "control seed 0", "control seed 1"]


def test_plot_training_panels_and_legend():
    hs = {"a": _sup(0.1), "b": _sup(0.2)}
    fig = plot_training(hs, [("loss", "loss", 1), ("val_top1", "top-1", 100), ("ce_loss", "ce", 1)])
    drawn = [ax for ax in fig.axes if ax.lines]
    assert len(drawn) == 3 and all(len(ax.lines) == 2 for ax in drawn)
    assert drawn[1].lines[1].get_ydata().tolist() == pytest.approx([10.0, 20.0])
    assert fig.axes[3].get_legend() is not None  # the free slot holds the legend
    with pytest.raises(ValueError):
        plot_training({}, [("loss", "loss", 1)])


def test_run_folders_are_shown_whole(monkeypatch, tmp_path):
    import IPython.display

    monkeypatch.setenv("RTSSEG_RUNS", str(tmp_path))
    long = tmp_path / "cpu" / "pretrain" / "vit_small64_seed0" / ("a" * 60)  # longer than pandas' 50 characters
    runs = {("vit_small64", 0): long}
    table = C.run_folder_table(runs)
    assert list(table.index) == ["vit_small64 seed 0"] and table.iloc[0, 0].endswith("a" * 60)
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj._repr_html_()))
    C.show_run_folders(runs)
    assert "a" * 60 in shown[0] and "..." not in shown[0]


def test_history_table_keeps_every_epoch_of_every_run():
    import pandas as pd

    h = {("vit_small64", 0): pd.DataFrame({"epoch": [0, 1], "knn_acc": [2.6, 3.0]}),
         ("botnet_small", 0): pd.DataFrame({"epoch": [0], "knn_acc": [3.3]})}
    t = C.history_table(h)
    assert list(t.columns) == ["epoch", "knn_acc", "backbone", "seed"] and len(t) == 3
    assert t.loc[t.backbone == "vit_small64", "knn_acc"].tolist() == [2.6, 3.0]
