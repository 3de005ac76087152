"""Every notebook's parameters cell parses under papermill's own reader (``papermill --help-notebook`` and the
parameter table of ``papermill inspect``), with the same names and defaults that rtsseg reads: a comment that
papermill cannot parse (an ``=`` inside it, say) would drop that parameter from what a batch user is shown."""

from __future__ import annotations

import logging

import pytest

from rtsseg.params import declared_parameters, read_notebook
from rtsseg.profiles import STEPS


@pytest.mark.parametrize("step", STEPS, ids=lambda s: s.name)
def test_papermill_reads_every_parameter_without_a_warning(step, caplog):
    from papermill.translators import PythonTranslator

    nb = read_notebook(step)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    with caplog.at_level(logging.WARNING, logger="papermill"):
        found = PythonTranslator.inspect(cell)
    assert [r.getMessage() for r in caplog.records] == [], f"{step.source}: papermill cannot parse these lines"
    assert [p.name for p in found] == list(declared_parameters(nb, step.source))


def test_the_check_sees_an_unparsable_comment():
    from nbformat.v4 import new_code_cell
    from papermill.translators import PythonTranslator

    cell = new_code_cell("snrs = [1e999, 5.0]  # 1e999 = inf\nn = 3  # count")
    logger = logging.getLogger("papermill")
    seen = []
    handler = logging.Handler()
    handler.emit = seen.append
    logger.addHandler(handler)
    try:
        names = [p.name for p in PythonTranslator.inspect(cell)]
    finally:
        logger.removeHandler(handler)
    assert any("Unable to parse" in r.getMessage() for r in seen) and "snrs" not in names and "n" in names
