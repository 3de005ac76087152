"""Notebook parameters: the one definition of what a notebook declares and what a run may pass it.

The cell tagged ``parameters`` of a jupytext notebook holds the defaults; ``declared_parameters`` reads them
safely (literals only), ``validate_parameters`` checks names, types and counts, ``parse_override`` reads
``key=value`` from the command line. Used by the pipeline (before a step runs) and by every notebook's first
cell (``rtsseg.report.notebook_params``), so a bad value fails the same way under ``rtsseg run`` and plain papermill.
"""

from __future__ import annotations

import ast
from pathlib import Path

from rtsseg.profiles import Step


class NotebookParameterError(ValueError):
    """A parameter passed to a notebook is unknown or of the wrong type."""


# ---- notebooks and their parameters ------------------------------------------------------------------

def read_notebook(step: Step):
    import jupytext

    if not step.source.is_file():
        raise FileNotFoundError(f"notebook source missing: {step.source}")
    nb = jupytext.read(step.source)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def declared_parameters(nb, source: Path | str = "<notebook>") -> dict:
    """Defaults of the cell tagged ``parameters`` (literal assignments only, evaluated safely)."""
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise NotebookParameterError(f"{source}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    params = {}
    for node in ast.parse(cells[0].source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            params[node.targets[0].id] = ast.literal_eval(node.value)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            params[node.target.id] = ast.literal_eval(node.value)
    return params


def _type_ok(default, value) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and (isinstance(default, float) or isinstance(value, int))
    return isinstance(value, type(default))


#: Parameters that count something and must be at least 1 when given (None still means "all"/"default").
POSITIVE = ("epochs", "batch_size", "image_size", "n_examples", "max_images_per_class", "knn_train_per_class",
            "knn_val_per_class", "train_per_class", "val_per_class", "linear_epochs", "max_train", "max_val")


def validate_parameters(source: Path | str, declared: dict, params: dict) -> None:
    """Unknown names, wrong types and counts below 1 are errors naming the notebook, the parameter and the fix."""
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise NotebookParameterError(
            f"{source}: unknown parameter(s) {unknown}. Fix: use one of {sorted(declared)}"
        )
    for name, value in params.items():
        if not _type_ok(declared[name], value):
            raise NotebookParameterError(
                f"{source}: parameter {name}={value!r} has type {type(value).__name__}, expected "
                f"{type(declared[name]).__name__} like the default {declared[name]!r}. Fix: pass a value of that type"
            )
        if name in POSITIVE and isinstance(value, (int, float)) and not isinstance(value, bool) and value < 1:
            raise NotebookParameterError(
                f"{Path(source).name}: parameter {name}={value!r} must be at least 1. Fix: pass {name}=1 or more"
            )


def parse_override(text: str) -> tuple[str, object]:
    """``key=value`` with a Python literal value (``epochs=3``, ``seeds=[0,1]``); bare words stay strings."""
    if "=" not in text:
        raise NotebookParameterError(f"override {text!r} is not key=value")
    key, raw = text.split("=", 1)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key.strip(), value
