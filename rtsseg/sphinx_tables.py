"""Sphinx extension of the book: a glued table is numbered and captioned as a **table**, not as a figure; a
chapter link inside a notebook's Markdown output reaches the chapter.

A notebook shows a DataFrame with ``glue_table`` and places it with a ``{glue:figure}`` block (the only directive
that gives a glued output a caption and a ``{numref}`` label). Sphinx numbers every ``figure`` node as a figure, so
the budget table of chapter 8 read "Fig. 3". This extension runs while each page is read, before Sphinx assigns
numbers: a figure that holds no image but a table (a docutils table, or an HTML ``<table>`` output, also inside
myst-nb's mime bundle) becomes a :class:`table_figure`, which Sphinx numbers in the ``table`` sequence
("Table 3", ``numfig_format``) and renders exactly like a figure (the translators fall back along the class's
MRO to ``visit_figure``).

Chapter 8's findings table is a Markdown *output* linking each row to its chapter as ``05_attention_maps.html``.
myst-nb parses such outputs as MyST (``nb_render_markdown_format: myst``), where a link to a ``.html`` path is a
cross-reference to a label of that name: none exists, the build warned and the page linked to ``#05_attention_maps.html``.
:class:`ChapterLinks` makes such a link a plain relative link when the chapter it names is a page of the same
folder (anything else is left to warn).

Registered in ``_config.yml`` (``sphinx.extra_extensions``). It runs at build time only, never in a notebook, so it
is not an input of any step (``rtsseg.pipeline.NOT_INPUTS``).
"""

from __future__ import annotations

import posixpath

from docutils import nodes
from sphinx import addnodes
from sphinx.transforms import SphinxTransform


class table_figure(nodes.figure):  # noqa: N801 (docutils names node classes in lower case)
    """A figure whose content is a table: numbered in the ``table`` sequence."""


def is_table_figure(node: nodes.figure) -> bool:
    """True for a figure that shows a table and no image."""
    if any(True for _ in node.findall(nodes.image)):
        return False
    if any(True for _ in node.findall(nodes.table)):
        return True
    return any("<table" in raw.astext() for raw in node.findall(nodes.raw))


class TablesAsTables(SphinxTransform):
    """Turn every figure of :func:`is_table_figure` into a :class:`table_figure` (ids, caption, label kept)."""

    default_priority = 900  # after the parser's own transforms, before the doctree-read collectors number it

    def apply(self, **kwargs) -> None:
        for fig in list(self.document.findall(nodes.figure)):
            if type(fig) is nodes.figure and is_table_figure(fig):
                new = table_figure(fig.rawsource, *fig.children, **fig.attributes)
                new["classes"] = [*fig["classes"], "table-figure"]
                new.source, new.line = fig.source, fig.line
                fig.replace_self(new)
                for ident in new["ids"]:  # the label's target ({numref}) is looked up here: point it at the new node
                    self.document.ids[ident] = new


class ChapterLinks(SphinxTransform):
    """A MyST link ``NAME.html`` to a page of the same folder becomes a relative link to that page."""

    default_priority = 900

    def apply(self, **kwargs) -> None:
        here = posixpath.dirname(self.env.docname)
        for ref in list(self.document.findall(addnodes.pending_xref)):
            target = ref.get("reftarget", "")
            if ref.get("reftype") != "myst" or not target.endswith(".html") or "/" in target or "#" in target:
                continue
            if posixpath.join(here, target.removesuffix(".html")) not in self.env.found_docs:
                continue
            link = nodes.reference("", "", *[nodes.Text(ref.astext())], refuri=target, internal=True)
            link["classes"].append("chapter-link")
            ref.replace_self(link)


def setup(app):
    app.add_enumerable_node(table_figure, "table")
    app.add_transform(TablesAsTables)
    app.add_transform(ChapterLinks)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
