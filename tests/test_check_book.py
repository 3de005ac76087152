"""scripts/check_book.py in a real headless Chromium: each defect a reader would see is caught, a clean page passes."""

from __future__ import annotations

import base64
import importlib.util
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("check_book", REPO / "scripts" / "check_book.py")
check_book = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_book)

CHROMIUM = check_book.find_chromium()
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (Debian: apt-get install -y chromium; .ci/run installs it)"),
    pytest.mark.skipif(importlib.util.find_spec("websocket") is None, reason="websocket-client not installed"),
]
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def _page(body: str) -> str:
    return f"<html><body><article class='bd-article' style='width:600px'>{body}</article></body></html>"


def test_check_book_catches_defects(tmp_path):
    html = tmp_path / "html"
    (html / "sub").mkdir(parents=True)
    (html / "_static").mkdir()
    (html / "dot.png").write_bytes(PNG)
    from PIL import Image, ImageDraw

    Image.new("RGB", (200, 150), "white").save(html / "blank.png")  # a figure with nothing drawn
    plot = Image.new("RGB", (200, 150), "white")
    ImageDraw.Draw(plot).line([(10, 140), (60, 20), (120, 90), (190, 10)], fill="navy", width=4)
    ImageDraw.Draw(plot).rectangle([20, 100, 60, 140], fill="orange")
    plot.save(html / "plot.png")
    pages = {
        "good.html": "<p>Fine: <img src='dot.png'> <img src='plot.png'> <code>\\(x\\)</code> in code is fine.</p>"
                     "<table><tr><th>seed 0.5</th><td>1</td><td><em>not run in this edition</em></td></tr></table>"
                     "<p><em>not run in this edition</em></p><p>0.30 and 1.005 are fine.</p>",
        "sub/image.html": "<img src='missing.png'>",
        "error.html": "<div class='cell_output'><div class='output traceback highlight-ipythontb'>Traceback</div></div>",
        "wide.html": "<table><tr>" + "<td>a_very_long_unbreakable_cell_content_xxxxxxxx</td>" * 12 + "</tr></table>",
        "maths.html": "<p>The loss \\(C = z_1^\\top z_2 / N\\) is drawn by MathJax.</p>",
        "path.html": "<div class='cell_output'><pre>saved to /work/wt/book/runs/x.pt</pre></div>",
        "dirty.html": "<table><tr><td>commit</td><td>abc123+dirty</td></tr></table>",
        "cite.html": "<p>As shown by {cite}`caron2021dino`. See <span class='xref std std-doc'>reproduce</span>.</p>",
        "placeholder.html": "<p>It differs from its control by <em>not run in this edition</em> mIoU points.</p>",
        "truncated.html": "<table><tr><th>a</th><th>b</th></tr><tr><td>...</td><td>...</td></tr>"
                          "<tr><td>$RTSS...</td><td>1</td></tr></table><p>856 rows × 6 columns</p>",
        "mangled.html": "<table><tr><th>linear.1</th><th>linear.2</th></tr><tr><td>1</td><td>2</td></tr></table>",
        "glue.html": "<p>The loss is {glue:text}`ch02_loss` and the step 26.299999 s.</p>",
        "tablefig.html": "<figure><table><tr><td>1</td></tr></table><figcaption><p><span class='caption-number'>"
                         "Fig. 3 </span>A table.</p></figcaption></figure>",
        "empty.html": "<img src='blank.png' width='200'>",
        "anchor.html": "<p id='here'><a href='#here'>fine</a> <a href='#05_attention_maps.html'>5</a></p>",
    }
    for name, body in pages.items():
        (html / name).write_text(_page(body))
    (html / "_static" / "ignored.html").write_text(_page("<img src='missing.png'>"))
    report = check_book.check_book(html, tmp_path / "shots", allow_network=True)
    assert set(report) == set(pages)
    assert report["good.html"] == []
    assert any("broken image" in p for p in report["sub/image.html"])
    assert any("error/stderr output" in p for p in report["error.html"])
    assert any("table wider" in p for p in report["wide.html"])
    assert any("\\(" in p for p in report["maths.html"])
    assert any("{cite}" in p for p in report["cite.html"])
    assert any("absolute path" in p for p in report["path.html"])
    assert any("+dirty" in p for p in report["dirty.html"])
    assert any("unresolved reference" in p for p in report["cite.html"])
    assert any("placeholder inside a sentence" in p for p in report["placeholder.html"])
    assert any("rows × 6 columns" in p for p in report["truncated.html"])
    assert any("truncation row" in p for p in report["truncated.html"])
    assert any("cut short" in p for p in report["truncated.html"])
    assert any("mangled column label" in p for p in report["mangled.html"])
    assert any("unrendered glue" in p for p in report["glue.html"])
    assert any("unrounded number: 26.299999" in p for p in report["glue.html"])
    assert any("captioned as a figure" in p for p in report["tablefig.html"])
    assert any("empty figure" in p for p in report["empty.html"])
    assert report["anchor.html"] == ["link to a missing anchor: #05_attention_maps.html"]
    assert (tmp_path / "shots" / "sub__image.png").stat().st_size > 0
    assert len(list((tmp_path / "shots").glob("*.png"))) == len(pages)


#: The gpu-short edition's chapter pages: executed before check_book's newer checks (unrounded numbers, cut
#: run-folder cells, pandas truncation), they are mended only by re-executing that edition on a GPU (issue 23).
GPU_SHORT_CHAPTERS = "book/gpu-short/0"


@pytest.fixture(scope="module")
def built_book_report():
    """check_book on the real book, when it has been built in this checkout (`rtsseg book --profile cpu`); a clean
    clone (CI) has none and skips."""
    html = REPO / "book" / "_build" / "html"
    if not (html / "index.html").is_file():
        pytest.skip("book/_build/html not built (rtsseg book --profile cpu)")
    return check_book.check_book(html, html.parent / "screenshots")


def test_built_book_passes_when_built(built_book_report):
    """Every page of the built book but the gpu-short chapters (below) passes."""
    failing = {k: v for k, v in built_book_report.items() if v and not k.startswith(GPU_SHORT_CHAPTERS)}
    assert failing == {}


@pytest.mark.xfail(strict=True, reason="the gpu-short chapters predate check_book's newer checks; they pass once that "
                                       "edition is re-executed on a GPU (issue 23). strict: a pass fails, so the mark "
                                       "goes when they do")
def test_built_gpu_short_chapters_pass_when_built(built_book_report):
    failing = {k: v for k, v in built_book_report.items() if v and k.startswith(GPU_SHORT_CHAPTERS)}
    assert failing == {}
