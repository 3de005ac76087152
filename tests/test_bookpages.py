"""The landing page's answers, written at build time from saved findings (rtsseg.bookpages), and the Sphinx
extension that numbers glued tables as tables (rtsseg.sphinx_tables)."""

import json
import math

from docutils import nodes

from rtsseg import bookpages
from rtsseg.findings import Finding
from rtsseg.stats import Interval


def F(key, mean, lo, hi, n=3, unit=""):
    return Finding(key, "05_attention_maps", key, Interval(mean, lo, hi, n, method="hierarchical bootstrap"), unit)


def test_answer_word_follows_the_interval_and_the_positive_control():
    above, below, null = F("a", 0.1, 0.05, 0.15), F("b", -0.1, -0.15, -0.05), F("c", 0.0, -0.02, 0.02)
    control = F("ctrl", 0.2, 0.15, 0.25)
    weak_control = F("ctrl", 0.01, -0.01, 0.03)
    assert bookpages.answer_word(above) == "Yes"
    assert bookpages.answer_word(below) == "No"
    assert bookpages.answer_word(null, control) == "No"  # an effect as large as the control's would have been seen
    assert bookpages.answer_word(null, weak_control) == "Not at this scale"  # the control itself does not pass
    assert bookpages.answer_word(null) == "Not at this scale"
    wide = F("w", 0.0, -0.5, 0.5)  # too wide to see the control's effect
    assert bookpages.answer_word(wide, control) == "Not at this scale"
    one_seed = Finding("s", "x", "s", Interval(0.3, math.nan, math.nan, 1))
    assert bookpages.answer_word(one_seed, control) == "Not at this scale"


def _findings():
    return {f.key: f for f in [
        F("attention.excess.barlow_twins.tinyimagenet", 0.02, 0.01, 0.03),
        F("attention.diff.barlow_twins_minus_random.tinyimagenet", 0.005, -0.01, 0.02),
        F("attention.excess.attention-supervised.tinyimagenet", 0.2, 0.15, 0.25),
        F("attention.excess.dino.tinyimagenet", 0.01, -0.01, 0.03),
        F("segmentation.attn_minus_control", 0.4, -0.1, 0.8, unit="mIoU points"),
        F("segmentation.oracle_minus_control.vit_small64", 5.0, 3.0, 7.0, unit="mIoU points"),
        F("pretrain.bt_knn_minus_random", 0.6, -0.6, 1.8, unit="points"),
    ]}


def test_answers_name_their_numbers_intervals_and_nulls():
    word, text = bookpages.answer_attention(_findings())
    assert word == "No" and text.startswith("**No.**")
    assert "+0.005 [−0.010, +0.020]" in text and "no measurable difference from 0" in text
    assert "image-independent" in text and "positive control" in text and "+0.200 [+0.150, +0.250]" in text
    assert "edition's scale" in text
    word, text = bookpages.answer_decoder(_findings())
    # no measurable gain, while a gain as large as the oracle ceiling (+5.0, above 0) would have been detected
    assert word == "No" and "+0.40 [−0.10, +0.80] mIoU points" in text and "+5.00 [+3.00, +7.00]" in text
    assert "what falls short is the learned attention" in text
    no_ceiling = {k: v for k, v in _findings().items() if "oracle" not in k}
    word, text = bookpages.answer_decoder(no_ceiling)
    assert word == "Not at this scale" and "no oracle ceiling" in text
    text2 = bookpages.answer_features(_findings())
    assert "+0.6 [−0.6, +1.8] points" in text2 and "±" not in text2


def test_a_decoder_gain_says_its_share_of_the_ceiling_and_whether_the_maps_are_semantic():
    found = dict(_findings())
    found["segmentation.attn_minus_control"] = F("segmentation.attn_minus_control", 0.7, 0.2, 1.2, unit="mIoU points")
    found["segmentation.share_of_ceiling.vit_small64"] = F("segmentation.share_of_ceiling.vit_small64", 0.036,
                                                           0.004, 0.066, unit="of the ceiling")
    word, text = bookpages.answer_decoder(found)
    assert word == "Yes" and "learned attention gives part of it" in text
    assert "+0.036 [+0.004, +0.066] of the ceiling on vit_small64 (above 0, none of it;" in text
    assert "not evidence of semantic maps" not in text  # Barlow Twins' excess in _findings is above 0
    found["attention.excess.barlow_twins.tinyimagenet"] = F("attention.excess.barlow_twins.tinyimagenet", 0.008,
                                                            -0.0004, 0.016)
    text = bookpages.answer_decoder(found)[1]
    assert "That gain is not evidence of semantic maps" in text
    assert "(+0.008 [0.000, +0.016], no measurable difference from 0)" in text
    del found["segmentation.share_of_ceiling.vit_small64"]
    assert "of the ceiling on" not in bookpages.answer_decoder(found)[1]


def test_missing_findings_give_a_whole_sentence_not_a_placeholder_inside_one():
    for fn in (bookpages.answer_attention, bookpages.answer_decoder):
        word, text = fn(None)
        assert word == bookpages.NOT_ANSWERED and text.startswith(f"*{bookpages.NOT_ANSWERED}*:")


def test_reconcile_says_agreement_difference_and_silence():
    steps = ("05_attention_maps", "07_segmentation")
    records = {p: [{"device": "CPU x2", "commit": "abc", "step": s} for s in steps] for p in ("cpu", "gpu-short", "colab")}
    text = bookpages.reconcile_editions({"cpu": ("No", "Yes"), "gpu-short": (bookpages.NOT_ANSWERED, "Yes"),
                                         "colab": ("Yes", "Yes")}, records)
    assert "On question 1 they differ" in text and "`cpu` (CPU x2; commit abc) No" in text
    assert "On question 2 the editions that answer it agree (Yes" in text
    assert "`gpu-short` (CPU x2; commit abc) does not answer question 1: it was executed before" in text
    # an edition without chapter 7 does not answer question 2 because it never ran it, and says so
    records["gpu-short"] = records["gpu-short"][:1]
    text = bookpages.reconcile_editions({"cpu": ("No", "No"), "gpu-short": ("No", bookpages.NOT_ANSWERED)}, records)
    assert "does not answer question 2: its chapter 7 was not executed in that edition" in text
    assert "question 2: it was executed before" not in text
    assert bookpages.reconcile_editions({"cpu": ("No", "No")}, records) == ""
    alone = bookpages.reconcile_editions({"cpu": ("No", "No"), "gpu-short": (bookpages.NOT_ANSWERED,) * 2}, records)
    assert "Only `cpu` (CPU x2; commit abc) answers question 1 (No)" in alone and "agree" not in alone


def test_edition_findings_reads_chapter_8s_export_and_rechecks_verdicts(tmp_path):
    f = _findings()["attention.excess.barlow_twins.tinyimagenet"]
    folder = tmp_path / "cpu" / "results"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"profile": "cpu", "results": {
        "findings_05_attention_maps": [f.as_dict()], "attention_object_specific": {"x": 1}}}))
    assert list(bookpages.edition_findings("cpu", tmp_path)) == [f.key]
    assert bookpages.edition_findings("gpu-short", tmp_path) is None
    d = f.as_dict() | {"verdict": "below"}
    (folder / "results.json").write_text(json.dumps({"results": {"findings_05": [d]}}))
    try:
        bookpages.edition_findings("cpu", tmp_path)
    except ValueError as e:
        assert "does not follow from its interval" in str(e)
    else:
        raise AssertionError("an edited verdict was accepted")


def test_render_index_fills_answers():
    out = bookpages.render_index("A {{ answer:attention }} B {{ answer:nothing }}.", "cpu", {}, [],
                                 answers={"attention": "**Yes.** x"})
    assert out == "A **Yes.** x B ."


def test_a_figure_holding_a_table_is_numbered_as_a_table():
    from rtsseg.sphinx_tables import is_table_figure

    table_html = nodes.figure("", nodes.raw("", "<table><tr><td>1</td></tr></table>", format="html"),
                              nodes.caption("", "budget"))
    plot = nodes.figure("", nodes.image(uri="x.png"), nodes.caption("", "a plot"))
    with_table = nodes.figure("", nodes.table(), nodes.caption("", "t"))
    assert is_table_figure(table_html) and is_table_figure(with_table) and not is_table_figure(plot)


def test_untrained_dino_is_not_compared_on_the_landing_page():
    found = dict(_findings())
    assert bookpages.dino_trained(found) is None  # no k-NN finding saved: the excess is quoted as measured
    assert "DINO's +0.010" in bookpages.answer_attention(found)[1]
    found["pretrain.dino_knn_minus_random"] = F("pretrain.dino_knn_minus_random", -0.1, -1.0, 0.7, unit="points")
    assert bookpages.dino_trained(found) is False
    text = bookpages.answer_attention(found)[1]
    assert "DINO is not trained at this budget" in text and "DINO's +0.010" not in text
    assert "no DINO − Barlow Twins comparison" in bookpages.answer_features(found)
    found["pretrain.dino_knn_minus_random"] = F("pretrain.dino_knn_minus_random", 1.0, 0.5, 1.5, unit="points")
    assert bookpages.dino_trained(found) is True
    assert "DINO's +0.010" in bookpages.answer_attention(found)[1]
    assert "not trained" not in bookpages.answer_features(found)
