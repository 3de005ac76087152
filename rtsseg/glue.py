"""Glue: how a running notebook hands a value to the book (``myst_nb.glue``'s output format, without myst-nb).

The notebook-time half of the book's conventions (:mod:`rtsseg.book` holds the rules and the build-time half):
kept apart so that :mod:`rtsseg.report` (the run record) glues without importing the book builder.
"""

from __future__ import annotations

import json

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


__all__ = ["GLUE_PREFIX", "glue", "GluedText", "glued_value", "glued_json"]
