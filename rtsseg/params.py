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


#: List parameters a notebook indexes or loops over to produce anything: ``seeds[0]`` and ``backbones[0]`` pick
#: the figures' run, ``other_seeds`` are the only runs of the other backbones (chapters 5-7 then find none),
#: ``inits`` the columns of chapters 5 and 7, ``lrs`` the learning rates a decoder is fitted with. An empty one
#: would end in an ``IndexError`` (or an empty table) deep inside a notebook. None still means "the default"
#: where a notebook declares it so (``inits`` of chapter 7).
NONEMPTY = ("seeds", "other_seeds", "backbones", "inits", "lrs")


def validate_parameters(source: Path | str, declared: dict, params: dict) -> None:
    """Unknown names, wrong types, counts below 1 and empty lists of :data:`NONEMPTY` are errors naming the
    notebook, the parameter and the fix."""
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
        if name in NONEMPTY and isinstance(value, (list, tuple)) and not value:
            default = declared[name]
            fix = (f"pass at least one value, e.g. {name}={list(default)[:1]!r}" if default
                   else f"pass at least one value, or leave {name} out for the default")
            raise NotebookParameterError(
                f"{Path(source).name}: parameter {name}={value!r} must not be empty. Fix: {fix}"
            )


def override_reach(declared: dict[str, dict], overrides: dict) -> dict[str, list[str]]:
    """``{parameter: [steps that declare it]}`` for the ``-p`` overrides of ``rtsseg run`` over the selected steps
    (``declared``: step -> its declared parameters), in step order: ``-p epochs=4`` without ``--step`` changes
    every step that has an ``epochs`` (02, 03, 04, 07), and the run says so before it starts.

    Refuses (:class:`NotebookParameterError`, one line) an override no selected step declares, and ``profile``,
    which ``--profile`` sets (a notebook told another profile would write into the wrong runs and book)."""
    if "profile" in overrides:
        raise NotebookParameterError(
            f"override -p profile={overrides['profile']!r}: the profile is chosen by --profile, not by a parameter. "
            f"Fix: rtsseg run --profile {overrides['profile']}"
        )
    reach = {key: [step for step, params in declared.items() if key in params] for key in overrides}
    unused = sorted(key for key, steps in reach.items() if not steps)
    if unused:
        known = sorted(set().union(*declared.values()) - {"profile"}) if declared else []
        raise NotebookParameterError(
            f"override(s) {unused} match no parameter of the steps {sorted(declared)}. Fix: use one of {known}, "
            f"or select a step that declares it with --step"
        )
    return reach


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


# ---- the profile a notebook runs with, and its values ------------------------------------------------

#: Environment variable that selects the profile of a notebook run (``rtsseg.book.colab_cell`` sets it from its
#: ``RTSSEG_PROFILE = "..."`` line; ``rtsseg run --profile P`` sets it to ``P`` for its kernels).
PROFILE_ENV = "RTSSEG_PROFILE"


def selected_profile(notebook_profile: str | None, environ=None) -> tuple[str | None, str]:
    """``(profile, where it came from)``: ``$RTSSEG_PROFILE`` when set, else the notebook's own ``profile``.

    Why the environment wins over the notebook: an executed book notebook carries papermill's injected cell
    (``profile = "cpu"``) right after its parameters cell, so "Run all" would overwrite any edit of the
    parameters cell; the first (Colab) cell and the environment run before both."""
    import os

    environ = os.environ if environ is None else environ
    chosen = (environ.get(PROFILE_ENV) or "").strip()
    if chosen:
        return chosen, f"${PROFILE_ENV}"
    return notebook_profile, "the notebook's profile parameter"


def explicit_overrides(step_name: str, injected: dict) -> dict:
    """The injected values that are explicit overrides (``papermill -p``, ``rtsseg run -p``), not the values
    the injected ``profile`` itself put there: ``rtsseg run --profile P`` injects P's table
    (:data:`rtsseg.profiles.PROFILES`) plus the overrides, and only the notebook sees the injected cell.

    A name of P's table injected with P's own value is P's (so another profile replaces it); any other injected
    name or value is the user's and wins over every profile. ``profile`` itself is never an override."""
    from rtsseg.profiles import PROFILES

    table = PROFILES.get(injected.get("profile"), {}).get(step_name, {})
    return {k: v for k, v in injected.items()
            if k != "profile" and (k not in table or _normalised(table[k]) != _normalised(v))}


def _normalised(value):
    return [_normalised(v) for v in value] if isinstance(value, (list, tuple)) else value


def profile_values(step_name: str, defaults: dict, profile: str, overrides: dict | None = None) -> dict:
    """The parameters of ``step_name`` under ``profile``: the notebook's ``defaults`` (its parameters cell),
    then the profile's table, then ``overrides`` (explicit values, which win over the profile), then
    ``profile`` itself. Only declared names: a profile entry the notebook does not declare is an error."""
    from rtsseg.profiles import PROFILES

    if profile not in PROFILES:
        raise NotebookParameterError(
            f"{step_name}: profile={profile!r} is not a profile. Fix: use one of {list(PROFILES)} "
            f"(the parameter profile, or ${PROFILE_ENV})"
        )
    table = PROFILES[profile].get(step_name, {})
    undeclared = sorted(set(table) - set(defaults))
    if undeclared:
        raise NotebookParameterError(
            f"{step_name}: profile {profile!r} sets {undeclared}, which this notebook does not declare. Fix: run "
            f"the notebook of this rtsseg version (rtsseg/profiles.py names the parameters of notebooks/{step_name}.py)"
        )
    values = {**defaults, **table, **(overrides or {})}
    if "profile" in defaults:
        values["profile"] = profile
    return values
