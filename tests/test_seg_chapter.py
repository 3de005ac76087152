"""Chapter 7's functions (rtsseg.seg.chapter) on made-up grids: the three numbers, the sections, the publisher."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from rtsseg.seg import chapter as ch  # noqa: E402
from rtsseg.seg import experiment as ex  # noqa: E402

ORACLE = ch.ORACLE


def grid(gains=None, ceilings=None, backbone="vit", inits=("random", "dino"), control=0.30):
    """Rows of a made-up grid: per init and seed a control, attn_all = control + gain, oracle = control + ceiling."""
    gains = gains or {"random": [0.01, 0.02, 0.00], "dino": [0.03, 0.01, 0.02]}
    ceilings = ceilings or {"random": [0.10, 0.14, 0.12], "dino": [0.20, 0.18, 0.22]}
    rows = []
    for init in inits:
        for seed, (g, c) in enumerate(zip(gains[init], ceilings[init])):
            base = control + 0.01 * seed
            for dec, v in (("control", base), ("attn_all", base + g), (ORACLE, base + c), ("linear", base - 0.05)):
                rows.append({"backbone": backbone, "init": init, "seed": seed, "decoder": dec, "mIoU": v,
                             "things mIoU": v / 2, "iou": [v] * 3})
    return pd.DataFrame(rows)


def test_share_of_ceiling_by_hand():
    s = grid()
    iv = ch.share_of_ceiling(s, "vit", n_boot=500)
    gain = np.mean([np.mean([0.01, 0.02, 0.00]), np.mean([0.03, 0.01, 0.02])])
    ceiling = np.mean([0.12, 0.20])
    assert iv.mean == pytest.approx(gain / ceiling) and iv.n == 2
    assert iv.lo < iv.mean < iv.hi
    # a seed's gain and ceiling are resampled together: with gain = ceiling / 10 per seed the share is 0.1 exactly
    s2 = grid(gains={"random": [0.01, 0.014, 0.012], "dino": [0.02, 0.018, 0.022]})
    iv2 = ch.share_of_ceiling(s2, "vit", n_boot=500)
    assert iv2.lo == pytest.approx(0.1) and iv2.hi == pytest.approx(0.1)
    assert ch.share_of_ceiling(s[s.decoder != ORACLE], "vit") is None
    one = grid(gains={"random": [0.01]}, ceilings={"random": [0.1]}, inits=("random",))
    assert math.isnan(ch.share_of_ceiling(one, "vit").lo)


def test_three_numbers_are_findings_in_points():
    nums = ch.three_numbers(grid(), "vit")
    ref = ex.pooled_difference(grid(), ORACLE, "control")
    assert nums["ceiling"].interval.mean == pytest.approx(100 * ref.mean)
    assert nums["ceiling"].unit == "mIoU points" and nums["ceiling"].verdict == "above"
    assert nums["gain"].interval.mean == pytest.approx(100 * np.mean([0.01, 0.02]))
    assert nums["share"].verdict == "above" and nums["share"].key == "segmentation.share_of_ceiling.vit"
    assert nums["gain"].sentence(1).startswith("vit: learned attention's gain (attn_all − control): +1.5 [")
    no_oracle = ch.three_numbers(grid().query("decoder != @ORACLE"), "vit")
    assert no_oracle["ceiling"] is None and no_oracle["share"] is None and no_oracle["gain"] is not None
    assert all(v is None for v in ch.three_numbers(grid().query("decoder != 'control'"), "vit").values())
    flat = ch.three_numbers(grid(ceilings={"random": [0.01, -0.02, 0.0], "dino": [0.0, 0.01, -0.01]}), "vit")
    assert flat["ceiling"].verdict == "no measurable difference" and flat["share"] is None  # no ratio to a 0


def test_answer_section_glues_the_landing_page_number_and_few_findings():
    s = pd.concat([grid(), grid(backbone="botnet", inits=("random",))], ignore_index=True)
    s = s[~((s.backbone == "botnet") & (s.decoder == ORACLE))]
    out = ch.answer_section(s, "camvid", "vit")
    head = ex.headline(s)
    assert out.texts["seg_attn_minus_control"] == (ex.interval_text(head["interval"]), None)
    assert out.texts["seg_verdict"][0] == head["verdict"]
    assert out.texts["seg_answer"][0].startswith("attn_all − control, mean of 3 cell means: ")
    assert [f.key for f in out.findings] == ["segmentation.attn_minus_control", "segmentation.oracle_minus_control.vit",
                                             "segmentation.share_of_ceiling.vit"]
    three = out.tables["tbl_seg_three_numbers"]
    assert list(three.index) == ["vit", "botnet"] and three.loc["botnet", "ceiling"] == "–"
    assert three.loc["vit", "ceiling verdict"] == "above"
    share = out.findings[-1]
    assert three.loc["vit", "share"] == share.value_text(3) and "of the ceiling" in three.loc["vit", "share"]
    assert share.value_text(3) in out.texts["seg_three_numbers"][0]  # three decimals: 0.036, never 0.04
    assert "of the ceiling, above 0, none of the ceiling (smallest detectable" in out.texts["seg_three_numbers"][0]
    # botnet: one seed in each cell, so nothing to resample, and the sentence says that rather than "n=…"
    one_seed = pd.concat([grid(), grid(gains={"random": [0.01], "dino": [0.02]}, ceilings={"random": [0.1], "dino": [0.2]},
                                       backbone="botnet")], ignore_index=True)
    text = ch.answer_section(one_seed, "camvid", "vit").texts["seg_three_numbers"][0]
    assert "botnet: learned attention's gain (attn_all − control): +1.5 (n=2) mIoU points" in text
    assert "(no interval: 2 cells of one seed each, nothing to resample)" in text and "from n=2" not in text
    assert set(out.figures) == {"fig_seg_differences"} and "tbl_seg_differences" in out.tables
    assert "segmentation_camvid_attn_minus_control" in out.results
    empty = ch.answer_section(s[s.decoder != "control"], "camvid", "vit")
    assert not empty.findings and empty.texts["seg_verdict"][0] == "no answer"


def test_finetune_section_pools_cells_and_tables():
    rows = []
    for init, d in (("random", [0.01, 0.02, 0.03]), ("dino", [0.0, 0.01, -0.01])):
        for seed in range(3):
            for arm, miou, after in (("no loss", 0.2, 0.01), ("attention loss", 0.2 + d[seed], 0.05 + 0.01 * seed)):
                rows.append({"backbone": "vit", "init": init, "seed": seed, "arm": arm, "mIoU": miou,
                             "things mIoU": 0.1, "excess before": 0.02, "excess after": after, "train_s": 1.0,
                             "checkpoint": "x"})
    rows = pd.DataFrame(rows)
    from rtsseg.seg.finetune import FinetunePair, paired_table

    pairs = {}
    for (b, i), r in rows.groupby(["backbone", "init"], sort=False):
        diffs, ivs = paired_table(r)
        pairs[b, i] = FinetunePair(r, diffs, ivs, {})
    out = ch.finetune_section(rows, pairs, [], "camvid", 1, 0.1)
    miou, excess = out.findings
    expect = ex.mean_of_cell_means([[0.01, 0.02, 0.03], [0.0, 0.01, -0.01]])
    assert miou.interval.mean == pytest.approx(100 * expect.mean) and miou.interval.lo == pytest.approx(100 * expect.lo)
    assert excess.interval.mean == pytest.approx(np.mean([0.03, 0.04, 0.05])) and excess.unit == "AUROC"
    assert out.texts["seg_ft_miou"][0] == miou.sentence(1)
    assert miou.what.startswith("fine-tuned the last block, ") and out.texts["seg_ft_blocks"][0] == "the last block"
    assert ch.finetune_section(rows, pairs, [], "camvid", 2, 0.1).texts["seg_ft_blocks"][0] == "the last 2 blocks"
    t = out.tables["tbl_seg_finetune_differences"]
    assert t.loc[("vit", "random", "val mIoU: attention loss − no loss"), "difference"].startswith("+2.0 [")
    one = ch.finetune_section(rows[rows.init == "random"], {("vit", "random"): pairs["vit", "random"]}, [], "camvid",
                              1, 0.1)
    assert one.findings[0].interval.method == "t"  # a single cell: its seeds' t interval, as its table row
    assert one.findings[0].interval.lo == pytest.approx(100 * pairs["vit", "random"].intervals[
        "val mIoU: attention loss − no loss"].lo)
    assert out.tables["tbl_seg_finetune"].loc[("vit", "random", "no loss"), "mIoU"] == "20.0 [20.0, 20.0]"
    assert "checkpoint" not in out.results["segmentation_camvid_finetune"]
    none = ch.finetune_section(pd.DataFrame(), {}, [("vit", "dino", 0, "no run")], "camvid", 1, 0.1)
    assert not none.findings and none.texts["seg_ft_miou"] == ("not run", None) and len(none.show) == 1


def test_publisher_hands_everything_to_the_book():
    calls = []
    put = ch.publisher(lambda *a: calls.append(("text", *a)), lambda *a: calls.append(("table", *a)),
                       lambda *a: calls.append(("figure", *a)), lambda *a: calls.append(("save", *a)),
                       lambda x: calls.append(("show", x)))
    out = ch.Published(texts={"a": (1, "d")}, tables={"t": "T"}, figures={"f": "F"}, results={"r": "R"}, show=["S"])
    assert put(out) is out
    assert calls == [("text", "a", 1, "d"), ("table", "t", "T"), ("figure", "f", "F"), ("save", "r", "R"),
                     ("show", "S")]


def test_grid_per_class_and_cost_sections():
    s = grid()
    g = ch.Grid(s, {}, [{"what": "backbone outputs", "wall s": 6.0, "cpu s": 3.0},
                        {"what": "backbone outputs", "wall s": 4.0, "cpu s": 3.0}], [("vit", "dino", 1, "no run")])
    setup = ch.Setup({}, ["a", "b", "c"], {}, 0, [], [], ["random", "dino"], {}, None)
    out = ch.grid_section(g, setup, "camvid")
    table = out.tables["tbl_seg_ablation"]
    assert table.loc[("mIoU", "vit", "control"), "random"] == ex.format_ci([0.30, 0.31, 0.32], show_n=False)
    kept = out.results["segmentation_camvid"].index.get_level_values("decoder")
    assert ORACLE not in set(kept) and "attn_all" in set(kept)
    assert len(out.show) == 1 and list(out.show[0].columns) == ["backbone", "init", "seed", "why skipped"]
    per_class, best = ch.per_class_section(s, ["a", "b", "c"])
    assert best == ("vit", "dino", 0, "attn_all")  # oracle rows never win
    assert per_class.texts["seg_best_cell"] == ("vit / dino", None)
    ft = pd.DataFrame({"arm": ["no loss", "attention loss"], "train_s": [30.0, 50.0]})
    cost = ch.cost_section(g.timing, ft)
    assert cost.texts["seg_wall_min"] == (pytest.approx(90 / 60), ".1f")
    assert cost.tables["tbl_seg_cost"].loc["backbone outputs", ("wall s", "mean")] == 5.0
