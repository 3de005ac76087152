"""Parameters from one place: unknown papermill parameters fail the notebook, configs are built from params."""

from __future__ import annotations

import re

import os
import subprocess
import sys
from dataclasses import dataclass

import nbformat
import pytest

from rtsseg.config import REPO_ROOT
from rtsseg.params import NotebookParameterError, declared_parameters, read_notebook
from rtsseg.profiles import PROFILES, step
from rtsseg.report import config_from, injected_parameters, notebook_params


@dataclass
class _Cfg:
    backbone: str = "a"
    epochs: int = 10
    lr: float = 0.1
    dims: tuple[int, ...] = (8, 8)
    max_images: int | None = None
    seed: int = 0


def test_config_from_fills_matching_fields_and_extra_wins():
    params = {"profile": "cpu", "backbones": ["x"], "epochs": 3, "lr": 1, "dims": [4, 2], "seed": 5}
    cfg = config_from(_Cfg, params, backbone="vit", seed=1)
    assert cfg == _Cfg(backbone="vit", epochs=3, lr=1, dims=(4, 2), max_images=None, seed=1)
    assert isinstance(cfg.dims, tuple)  # a list parameter becomes the field's tuple


@pytest.mark.parametrize(
    "params, extra, match",
    [
        ({"epochs": "3"}, {}, r"_Cfg.epochs = '3' \(str\) does not match"),
        ({"epochs": 2.5}, {}, "_Cfg.epochs"),
        ({"dims": [4, "x"]}, {}, "_Cfg.dims"),
        ({"max_images": True}, {}, "_Cfg.max_images"),
        ({}, {"epoch": 3}, r"has no field\(s\) \['epoch'\]"),
    ],
)
def test_config_from_refuses_wrong_types_with_the_field(params, extra, match):
    with pytest.raises(TypeError, match=match):
        config_from(_Cfg, params, **extra)


def test_injected_parameters_reads_papermills_cell_from_the_history():
    history = ["", 'profile = "cpu"\nn_examples = 4', '# Parameters\nprofile = "smoke"\nn_example = 3\n', "x = 1"]
    assert injected_parameters({"In": history}) == ["profile", "n_example"]
    assert injected_parameters({"In": ["a = 1"]}) == []
    assert injected_parameters({}) == []  # outside IPython


def test_notebook_params_names_the_unknown_parameter_and_the_valid_ones():
    declared = declared_parameters(read_notebook(step("01")), "01")
    ns = {**declared, "n_example": 3, "In": ["", "# Parameters\nn_example = 3\n"]}
    with pytest.raises(NotebookParameterError, match=r"unknown parameter\(s\) \['n_example'\]. Fix: use one of .*'n_examples'"):
        notebook_params(ns, "01_data")
    ok = {**declared, "In": ["", "# Parameters\nn_examples = 3\n"], "n_examples": 3}
    assert notebook_params(ok, "01_data")["n_examples"] == 3
    with pytest.raises(NotebookParameterError, match="must be at least 1"):
        notebook_params({**declared, "n_examples": 0}, "01_data")
    with pytest.raises(NotebookParameterError, match=re.escape(str(list(PROFILES)))):
        notebook_params({**declared, "profile": "laptop"}, "01_data")


def _tiny_notebook(path):
    """The parameters cell of chapter 1 and its first code cell's check, nothing else (runs in a second)."""
    params = [c for c in read_notebook(step("01")).cells if "parameters" in c.metadata.get("tags", [])][0]
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params.source)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(
        'from rtsseg.report import notebook_params\nparams = notebook_params(globals(), "01_data")\nprint("OK", params)'
    )]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.mark.slow
def test_plain_papermill_fails_on_an_undeclared_parameter(tmp_path):
    src = tmp_path / "nb.ipynb"
    _tiny_notebook(src)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    papermill = [sys.executable, "-m", "papermill", "--cwd", str(tmp_path), "-k", "python3"]
    bad = subprocess.run([*papermill, str(src), str(tmp_path / "bad.ipynb"), "-p", "n_example", "3"],
                         capture_output=True, text=True, env=env)
    assert bad.returncode != 0
    assert "NotebookParameterError" in bad.stderr and "['n_example']" in bad.stderr and "'n_examples'" in bad.stderr
    good = subprocess.run([*papermill, str(src), str(tmp_path / "good.ipynb"), "-p", "n_examples", "3",
                           "-y", "seed: 1"], capture_output=True, text=True, env=env)
    assert good.returncode == 0, good.stderr[-2000:]
    out = nbformat.read(tmp_path / "good.ipynb", as_version=4)
    assert "'n_examples': 3" in out.cells[-1].outputs[0]["text"] and "'seed': 1" in out.cells[-1].outputs[0]["text"]
