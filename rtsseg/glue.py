"""What a running notebook calls to hand values, figures and tables to the book (``myst_nb.glue``'s format).

The notebook-time half of the book's conventions (:mod:`rtsseg.book` holds the rules and the build-time half:
landing pages, findings, the performance appendix): kept apart so that a notebook, and :mod:`rtsseg.report`
(the run record), never import the book builder.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from rtsseg.config import REPO_ROOT

#: Text column width of sphinx-book-theme at a 1280 px window, in inches at 96 dpi: figures no wider than this
#: are shown at their own size, so a 10 pt font stays 10 pt.
PAGE_WIDTH_IN = 8.0

#: myst-nb's mime prefix of a glued output that is not displayed where it is computed.
GLUE_PREFIX = "application/papermill.record/"


def glue(name: str, variable, display: bool = True) -> None:
    """``myst_nb.glue`` itself (same output format), so that a notebook runs where myst-nb is not installed (Colab)."""
    import IPython
    from IPython.display import display as ipy_display

    mimebundle, metadata = IPython.core.formatters.format_display_data(variable)
    prefix = "" if display else GLUE_PREFIX
    metadata["scrapbook"] = dict(name=name, mime_prefix=prefix)
    ipy_display({prefix + k: v for k, v in mimebundle.items()}, raw=True, metadata=metadata)


class GluedText(str):
    """A string whose ``repr`` is itself, so ``{glue:text}`` shows ``3.1 ± 0.4`` and not ``'3.1 ± 0.4'``."""

    def __repr__(self) -> str:
        return str(self)


def glued_value(nb, name: str) -> str | None:
    """The text/plain of the output glued as ``name`` in an executed notebook (nbformat node), or None."""
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        for out in cell.get("outputs", []):
            if out.get("metadata", {}).get("scrapbook", {}).get("name") == name:
                data = out.get("data", {})
                return data.get(GLUE_PREFIX + "text/plain", data.get("text/plain"))
    return None


def glued_json(nb, name: str):
    """:func:`glued_value` parsed as JSON (None when absent)."""
    text = glued_value(nb, name)
    return None if text is None else json.loads(text)


def glue_result(name: str, value, fmt: str | None = None, display: bool = False):
    """Glue a number (formatted with ``fmt``, e.g. ``".1f"``, or ``"{:.1f} %"``) or a text under ``name``.

    ``display=False``: the value appears only where the prose cites it. Returns None, so that a call on a
    cell's last line displays nothing.
    """
    if fmt is None:
        text = str(value)
    elif "{" in fmt:
        text = fmt.format(value)
    else:
        text = format(value, fmt)
    # myst-nb reads a glued text/plain back with ast.literal_eval: "20,000" would render as the tuple "(20, 0)".
    # Thousands are grouped with a narrow no-break space instead (the SI style).
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "\u202f", text)
    glue(name, GluedText(text), display=display)


def drawn_artists(fig) -> int:
    """How many data artists (lines, collections, images, patches, tables) the figure's axes hold: 0 for a figure
    that shows nothing but axes or a text such as "no other backbone in this run"."""
    n = 0
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        n += len(ax.lines) + len(ax.collections) + len(ax.images) + len(ax.patches) + len(ax.tables)
    return n


def glue_figure(name: str, fig, display: bool = False):
    """Glue a matplotlib figure; the page shows it with ``{glue:figure} name`` and a ``:name:``/caption.

    A figure with nothing drawn is refused (the reader would see an empty frame): glue a sentence instead."""
    import matplotlib.pyplot as plt

    if drawn_artists(fig) == 0:
        plt.close(fig)
        raise ValueError(f"figure {name!r} has nothing drawn (no line, image, bar or point on any axes). "
                         f"Fix: glue a sentence saying why there is nothing to show, and drop the figure")
    glue(name, fig, display=display)
    plt.close(fig)  # else the inline backend shows it a second time at the end of the cell


def table_number(value) -> str:
    """A table's float as a reader wants it: at most 3 decimals, no float noise (26.299999 -> "26.3")."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def glue_table(name: str, table, display: bool = False):
    """Glue a DataFrame; the page shows it with ``{glue:figure} name``, ``:name: tbl-...`` and a caption.

    Rendered whole (no pandas "…" rows, columns or cut cells) with floats by :func:`table_number`. Keep it
    narrower than the page: at most ~7 columns of short text, else transpose or split it.
    """
    import pandas as pd

    with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.max_colwidth", None,
                           "display.width", None, "display.float_format", table_number):
        glue(name, table, display=display)


# ---- figures and paths ------------------------------------------------------------------------------------


def figure_style() -> dict:
    """Matplotlib settings of every book figure: 10-11 pt text at the rendered size, page-wide figures."""
    import matplotlib as mpl

    rc = {
        "figure.figsize": (PAGE_WIDTH_IN, PAGE_WIDTH_IN * 0.5),
        "figure.dpi": 96,  # 1 inch of figure = 96 CSS px: the size it is drawn at is the size it is shown at
        "savefig.dpi": 144,  # sharp on high-density screens, still shown at figure inches
        "savefig.bbox": "tight",
        "font.size": 10,
        "axes.titlesize": 11,
        "axes.labelsize": 10,
        "xtick.labelsize": 10,
        "ytick.labelsize": 10,
        "legend.fontsize": 10,
        "figure.titlesize": 12,
        "lines.markersize": 5,
        "image.cmap": "viridis",
        "axes.spines.top": False,
        "axes.spines.right": False,
    }
    mpl.rcParams.update(rc)
    try:  # inline backend: keep the figure's own size (no tight re-crop beyond bbox) and a retina-sharp png
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("png")
    except ImportError:
        pass
    return rc


def rel(path: str | os.PathLike, roots: dict[str, str | os.PathLike] | None = None) -> str:
    """``path`` relative to the data root (``$RTSSEG_DATA/...``), the runs root or the repository, never absolute."""
    from rtsseg.config import data_root, runs_root

    p = Path(path).expanduser().resolve()
    if roots is None:
        roots = {"$RTSSEG_DATA": data_root(must_exist=False), "$RTSSEG_RUNS": runs_root(), ".": REPO_ROOT}
    for label, root in roots.items():
        try:
            sub = p.relative_to(Path(root).resolve())
        except ValueError:
            continue
        return f"{label}/{sub.as_posix()}" if sub.parts else label
    return p.name


__all__ = ["GLUE_PREFIX", "PAGE_WIDTH_IN", "glue", "GluedText", "glued_value", "glued_json", "glue_result",
           "glue_figure", "glue_table", "figure_style", "rel", "drawn_artists", "table_number"]
