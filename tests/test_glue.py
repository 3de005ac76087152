"""The notebook-time glue (rtsseg.glue): tables rendered whole and without float noise, empty figures refused."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import rtsseg.glue as G  # noqa: E402


def _capture(monkeypatch):
    shown = []

    def fake_glue(name, value, display=True):  # the mimebundle glue() would publish, under the same options
        import IPython

        bundle, _ = IPython.core.formatters.format_display_data(value)
        shown.append((name, bundle.get("text/html", ""), bundle.get("text/plain", "")))

    monkeypatch.setattr(G, "glue", fake_glue)
    return shown


def test_table_number_drops_float_noise():
    assert G.table_number(26.299999) == "26.3"
    assert G.table_number(0.7653) == "0.765"
    assert G.table_number(20000.0) == "20000"
    assert G.table_number(-0.0001) == "0"


def test_glue_table_renders_whole_and_rounded(monkeypatch):
    shown = _capture(monkeypatch)
    long = pd.DataFrame({"run": ["$RTSSEG_RUNS/cpu/pretrain/" + "x" * 80] * 200, "value": [26.299999] * 200})
    G.glue_table("t", long)
    [(name, html, text)] = shown
    assert name == "t"
    assert "..." not in html and "…" not in html and "rows ×" not in text  # pandas' truncation markers
    assert "x" * 80 in html  # the cell is not cut
    assert "26.3<" in html and "26.299999" not in html
    # outside the call the defaults are back (the option context does not leak)
    assert pd.get_option("display.max_rows") != None  # noqa: E711


def test_glue_figure_refuses_an_empty_figure(monkeypatch):
    shown = _capture(monkeypatch)
    fig, ax = plt.subplots()
    fig.text(0.5, 0.5, "no other backbone in this run")
    with pytest.raises(ValueError, match="'empty' has nothing drawn.*Fix: glue a sentence"):
        G.glue_figure("empty", fig)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    G.glue_figure("line", fig)
    fig, ax = plt.subplots()
    ax.imshow([[0, 1], [1, 0]])
    G.glue_figure("image", fig)
    assert [s[0] for s in shown] == ["line", "image"]


def test_book_reexports_the_notebook_half():
    import rtsseg.book as B

    assert B.glue_table is G.glue_table and B.glue_figure is G.glue_figure and B.rel is G.rel
