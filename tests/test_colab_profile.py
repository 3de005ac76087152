"""The profile a notebook runs with is chosen before "Run all" (first cell / $RTSSEG_PROFILE) and its *values* apply.

An executed book notebook carries papermill's injected cell (``profile = "cpu"``) after its parameters cell, so
an edit of the parameters cell is overwritten by "Run all"; ``rtsseg.report.notebook_params`` (the first code
cell of every chapter) now reads the choice from the environment and applies that profile's table.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys

import nbformat
import pytest

from rtsseg.config import REPO_ROOT
from rtsseg.params import (NotebookParameterError, declared_parameters, explicit_overrides, read_notebook,
                           selected_profile)
from rtsseg.profiles import PROFILES, step
from rtsseg.report import notebook_params, parameters_cell_defaults

SHARED = REPO_ROOT.parent / "shared" / "data"


def _kernel(step_name: str, injected: dict, edits: dict | None = None) -> dict:
    """A notebook's globals after its parameters cell and papermill's injected cell, with IPython's ``In``."""
    defaults = declared_parameters(read_notebook(step(step_name)), step_name)
    cell = "# Parameters\n" + "".join(f"{k} = {v!r}\n" for k, v in injected.items())
    params_cell = "".join(f"{k} = {v!r}\n" for k, v in defaults.items())
    return {**defaults, **(edits or {}), **injected, "In": ["", "# setup", params_cell, cell]}


def test_the_environment_selects_the_profile_and_its_values_apply(monkeypatch):
    assert PROFILES["smoke"]["01_data"]["n_examples"] != declared_parameters(read_notebook(step("01")), "01")[
        "n_examples"], "the test needs a value that differs between smoke and cpu"
    ns = _kernel("01_data", {"profile": "cpu"})  # what book/cpu/01_data.ipynb's injected cell holds
    monkeypatch.delenv("RTSSEG_PROFILE", raising=False)
    assert notebook_params(dict(ns), "01_data")["n_examples"] == 4  # no choice: the page's own profile
    monkeypatch.setenv("RTSSEG_PROFILE", "smoke")
    values = notebook_params(ns, "01_data")
    assert values["profile"] == ns["profile"] == "smoke"
    assert values["n_examples"] == ns["n_examples"] == 2  # applied to the notebook's globals, not only returned


def test_explicit_values_win_over_the_profile(monkeypatch):
    monkeypatch.setenv("RTSSEG_PROFILE", "smoke")
    ns = _kernel("01_data", {"profile": "cpu", "n_examples": 3})  # papermill -p n_examples 3
    assert notebook_params(ns, "01_data")["n_examples"] == 3
    edited = _kernel("01_data", {"profile": "cpu"}, edits={"n_examples": 5})  # a cell changed it before
    assert notebook_params(edited, "01_data")["n_examples"] == 5


def test_another_profiles_injected_table_is_replaced_not_kept(monkeypatch):
    """An executed gpu-short chapter injects gpu-short's table (epochs=…, batch_size=512, adamw_lr=5e-4): those are
    the profile's values, not the user's, so smoke replaces them and names smoke does not set go back to the
    parameters cell's defaults."""
    name = "02_pretrain_barlow_twins"
    defaults = declared_parameters(read_notebook(step(name)), name)
    injected = {"profile": "gpu-short", **PROFILES["gpu-short"][name]}
    assert explicit_overrides(name, injected) == {}
    monkeypatch.setenv("RTSSEG_PROFILE", "smoke")
    values = notebook_params(_kernel(name, injected), name)
    assert values["batch_size"] == PROFILES["smoke"][name]["batch_size"] == 32
    assert values["backbones"] == ["vit_small64"] and values["epochs"] == 1
    assert "adamw_lr" not in PROFILES["smoke"][name] and values["adamw_lr"] == defaults["adamw_lr"] != 5e-4


def test_plain_papermill_profile_parameter_applies_the_values(monkeypatch):
    monkeypatch.delenv("RTSSEG_PROFILE", raising=False)
    values = notebook_params(_kernel("01_data", {"profile": "smoke"}), "01_data")  # papermill -p profile smoke
    assert values["n_examples"] == 2


def test_without_notebook_sources_the_defaults_come_from_the_history(monkeypatch, tmp_path):
    """pip-installed rtsseg (Colab) has no notebooks/: the parameters cell is read back from ``In``."""
    import rtsseg.profiles as profiles

    name = "02_pretrain_barlow_twins"
    ns = _kernel(name, {"profile": "gpu-short", **PROFILES["gpu-short"][name]})
    monkeypatch.setattr(profiles, "NOTEBOOKS", tmp_path)  # Step.source now points at a missing file
    monkeypatch.setenv("RTSSEG_PROFILE", "smoke")
    assert parameters_cell_defaults(ns)["epochs"] == declared_parameters(read_notebook_at(name), name)["epochs"]
    values = notebook_params(ns, name)
    assert values["epochs"] == 1 and values["projector_dims"] == [256, 256, 256] and values["profile"] == "smoke"
    assert parameters_cell_defaults({"In": ["a = 1"]}) is None  # no injected cell: nothing to read back


def read_notebook_at(name):
    import jupytext

    return jupytext.read(REPO_ROOT / "notebooks" / f"{name}.py")


def test_an_unknown_profile_names_the_variable_and_the_choices(monkeypatch):
    monkeypatch.setenv("RTSSEG_PROFILE", "laptop")
    with pytest.raises(NotebookParameterError, match=r"\$RTSSEG_PROFILE.*Fix: use one of"):
        notebook_params(_kernel("01_data", {"profile": "cpu"}), "01_data")
    assert selected_profile("cpu", environ={}) == ("cpu", "the notebook's profile parameter")
    assert selected_profile("cpu", environ={"RTSSEG_PROFILE": " colab "})[0] == "colab"


def test_the_colab_cell_has_the_profile_line_colab_sim_edits():
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    from colab_sim import _select_profile

    from rtsseg.book import colab_cell_source, runtime_requirements

    src = colab_cell_source("https://github.com/o/r", "0123abcd", runtime_requirements())
    assert 'RTSSEG_PROFILE = ""' in src and src.index("RTSSEG_PROFILE") < src.index("google.colab")
    edited = _select_profile(src, "smoke")
    assert 'RTSSEG_PROFILE = "smoke"' in edited and 'RTSSEG_PROFILE = ""' not in edited
    # the lines that act on it, run as plain Python, set the variable notebook_params reads
    block = edited[edited.index('RTSSEG_PROFILE = "smoke"'):edited.index('if "google.colab"')]
    env_before = os.environ.get("RTSSEG_PROFILE")
    try:
        exec(block, {})
        assert os.environ["RTSSEG_PROFILE"] == "smoke"
    finally:
        os.environ.pop("RTSSEG_PROFILE", None) if env_before is None else os.environ.update(RTSSEG_PROFILE=env_before)


def _figure_aspect(nb, name: str) -> float:
    from PIL import Image

    for cell in nb.cells:
        for out in cell.get("outputs", []):
            png = [v for k, v in out.get("data", {}).items() if k.endswith("image/png")]  # glue: papermill.record/
            if name in json.dumps(out.get("metadata", {})) and png:
                image = Image.open(io.BytesIO(base64.b64decode(png[0])))
                return image.height / image.width
    raise AssertionError(f"no glued figure {name}")


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "camvid").is_dir(), reason="needs ../shared/data")
def test_run_all_of_the_committed_cpu_chapter_runs_at_smoke_sizes(tmp_path):
    """colab_sim: a fresh venv, the first cell installs this working tree and selects smoke, then "Run all" of
    book/cpu/01_data.ipynb (injected cell: profile = "cpu"). Chapter 1 draws 2 rows x n_examples validation images
    in a figure of PAGE_WIDTH_IN x (PAGE_WIDTH_IN / n_examples * 2 + 0.6): its aspect tells n_examples."""
    committed = nbformat.read(REPO_ROOT / "book" / "cpu" / "01_data.ipynb", as_version=4)
    injected = [c for c in committed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and 'profile = "cpu"' in injected[0].source
    out = tmp_path / "executed.ipynb"
    env = {**os.environ, "RTSSEG_DATA": str(SHARED), "RTSSEG_RUNS": str(tmp_path / "runs"), "OMP_NUM_THREADS": "1"}
    env.pop("RTSSEG_PROFILE", None)
    run = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "colab_sim.py"),
                          str(REPO_ROOT / "book" / "cpu" / "01_data.ipynb"), "--run-all", "--profile", "smoke",
                          "--install", "worktree", "--output", str(out)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    nb = nbformat.read(out, as_version=4)
    from rtsseg.glue import PAGE_WIDTH_IN

    smoke, cpu = (2 / n + 0.6 / PAGE_WIDTH_IN for n in (2, 4))  # height / width of the figure at n_examples = 2 and 4
    aspect = _figure_aspect(nb, "fig_tin_examples")
    assert abs(aspect - smoke) < abs(aspect - cpu), (aspect, smoke, cpu)
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", [])
                   if o.get("output_type") == "stream")
    assert "profile 'smoke' (from $RTSSEG_PROFILE) applied: n_examples=2" in text
    record = [o for o in nb.cells[-1].get("outputs", []) if o.get("output_type") == "execute_result"]
    assert record and "smoke" in record[0]["data"]["text/plain"]  # the run record's profile row (RunRecord.finish)
