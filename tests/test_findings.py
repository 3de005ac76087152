"""Headline findings are saved as numbers, their verdicts follow from their intervals, the table stays curated."""

from __future__ import annotations

import csv
import json
import math

import pytest

from rtsseg import findings as F
from rtsseg.stats import Interval


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("RTSSEG_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


def _f(key="a", step="05_attention_maps", mean=0.1, lo=0.05, hi=0.15, **kw):
    return F.Finding(key, step, f"quantity {key}", Interval(mean, lo, hi, 3, 0.95, "hierarchical bootstrap"), **kw)


def test_verdict_follows_the_interval_and_its_null():
    assert _f().verdict == "above"
    assert _f(mean=-0.1, lo=-0.15, hi=-0.05).verdict == "below"
    assert _f(mean=0.01, lo=-0.02, hi=0.04).verdict == "no measurable difference"
    assert _f(mean=0.77, lo=0.76, hi=0.78, null=0.767, null_name="the centre map").verdict == "no measurable difference"
    assert _f(mean=0.80, lo=0.79, hi=0.81, null=0.767).verdict == "above"
    one_seed = F.Finding("s", "05_attention_maps", "one seed", Interval(0.1, math.nan, math.nan, 1))
    assert one_seed.verdict == "no measurable difference" and math.isnan(one_seed.detectable)
    assert _f().detectable == pytest.approx(0.05)  # the half-width at power 0.5


def test_roundtrip_and_a_tampered_verdict_is_refused(runs):
    saved = [_f("a"), _f("b", mean=0.0, lo=-0.1, hi=0.1, reference="planted maps +0.34")]
    path = F.save_findings("cpu", "05_attention_maps", saved)
    back = F.read_findings("cpu")
    assert [b.as_dict() for b in back] == [s.as_dict() for s in saved]
    rows = json.loads(path.read_text())
    rows[1]["verdict"] = "above"  # edited by hand
    path.write_text(json.dumps(rows))
    with pytest.raises(ValueError, match="does not follow from its interval"):
        F.read_findings("cpu")


def test_save_refuses_duplicates_and_other_steps(runs):
    with pytest.raises(ValueError, match="saved twice"):
        F.save_findings("cpu", "05_attention_maps", [_f("a"), _f("a")])
    with pytest.raises(ValueError, match="name another step"):
        F.save_findings("cpu", "05_attention_maps", [_f("a", step="07_segmentation")])
    with pytest.raises(TypeError, match="rtsseg.stats.Interval"):
        F.Finding("x", "05_attention_maps", "x", (0.1, 0.0, 0.2))


def test_table_is_curated_linked_and_signed():
    text = F.findings_markdown([_f("a"), _f("b", step="07_segmentation", mean=-0.01, lo=-0.03, hi=0.01, unit="mIoU")])
    lines = text.splitlines()
    assert len(lines) == 4 and lines[0].startswith("| finding |")
    assert "+0.100 [+0.050, +0.150]" in lines[2] and "above" in lines[2] and "[5](05_attention_maps.html)" in lines[2]
    assert "−0.010 [−0.030, +0.010] mIoU" in lines[3] and "no measurable difference" in lines[3]
    with pytest.raises(ValueError, match="more than the table's 20 rows"):
        F.findings_markdown([_f(str(i)) for i in range(21)])
    assert "No chapter" in F.findings_markdown([])


def test_export_writes_every_result_as_numbers(runs, tmp_path):
    from rtsseg.report import results_dir

    F.save_findings("cpu", "05_attention_maps", [_f("a")])
    (results_dir("cpu") / "knn.json").write_text(json.dumps({"columns": ["x"], "data": [[1.5]]}))
    out_json, out_csv = F.export_results("cpu", tmp_path / "book" / "results")
    bundle = json.loads(out_json.read_text())
    assert set(bundle["results"]) == {"findings_05_attention_maps", "knn"}
    [row] = list(csv.DictReader(out_csv.open()))
    assert float(row["mean"]) == 0.1 and float(row["lo"]) == 0.05 and row["verdict"] == "above"


def test_paragraph_names_the_absence_of_findings():
    assert "states no finding" in F.findings_paragraph([])
    text = F.findings_paragraph([_f("a"), _f("b", mean=0.0, lo=-0.1, hi=0.1)])
    assert text.count(".") >= 2 and "above 0" in text and "no measurable difference from 0" in text
