"""The papermill pipeline: parameter checks, fingerprints, toc per profile, CLI errors."""

from __future__ import annotations

import nbformat
import pytest

from rtsseg import pipeline
from rtsseg.params import NotebookParameterError, declared_parameters, parse_override, validate_parameters
from rtsseg.profiles import PROFILES, STEPS, Step


def _nb(source: str):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), cell]
    return nb


def test_declared_parameters_reads_literals():
    nb = _nb('profile = "cpu"\nepochs = 3  # comment\nseeds = [0, 1]\ndata_root = None\nlr: float = 0.1')
    assert declared_parameters(nb) == {"profile": "cpu", "epochs": 3, "seeds": [0, 1], "data_root": None, "lr": 0.1}


def test_declared_parameters_needs_one_tagged_cell():
    nb = _nb("a = 1")
    nb.cells[1].metadata["tags"] = []
    with pytest.raises(NotebookParameterError, match="exactly one cell tagged 'parameters'"):
        declared_parameters(nb, "nb.py")


def test_validate_parameters_names_unknown_and_bad_types():
    declared = {"epochs": 3, "lr": 0.1, "name": "a", "seeds": [0], "flag": False, "root": None}
    validate_parameters("nb.py", declared, {"epochs": 5, "lr": 1, "root": "/x", "flag": True})
    with pytest.raises(NotebookParameterError, match=r"nb.py: unknown parameter\(s\) \['epoch'\]"):
        validate_parameters("nb.py", declared, {"epoch": 5})
    with pytest.raises(NotebookParameterError, match="epochs='5' has type str, expected int"):
        validate_parameters("nb.py", declared, {"epochs": "5"})
    with pytest.raises(NotebookParameterError, match="expected int"):
        validate_parameters("nb.py", declared, {"epochs": 2.5})
    with pytest.raises(NotebookParameterError, match="expected bool"):
        validate_parameters("nb.py", declared, {"flag": 1})


def test_parse_override():
    assert parse_override("epochs=3") == ("epochs", 3)
    assert parse_override("seeds=[0, 1]") == ("seeds", [0, 1])
    assert parse_override("backbone=vit_small64") == ("backbone", "vit_small64")
    with pytest.raises(NotebookParameterError):
        parse_override("epochs")


def test_every_profile_parameter_is_declared_by_its_notebook():
    for step in STEPS:
        declared = declared_parameters(pipeline.read_notebook(step), step.source)
        assert "profile" in declared, step.name
        for profile, steps in PROFILES.items():
            validate_parameters(step.source, declared, {"profile": profile, **steps[step.name]})


def test_fingerprint_tracks_params_and_upstream(tmp_path, monkeypatch):
    src = tmp_path / "s.py"
    src.write_text("# %%\nx = 1\n")
    monkeypatch.setattr(Step, "source", property(lambda self: src))
    s = Step("s")
    base = pipeline.fingerprint(s, {"a": 1}, {"u": "f1"}, "pkg")
    assert base == pipeline.fingerprint(s, {"a": 1}, {"u": "f1"}, "pkg")
    assert base != pipeline.fingerprint(s, {"a": 2}, {"u": "f1"}, "pkg")
    assert base != pipeline.fingerprint(s, {"a": 1}, {"u": "f2"}, "pkg")
    assert base != pipeline.fingerprint(s, {"a": 1}, {"u": "f1"}, "pkg2")
    src.write_text("# %%\nx = 2\n")
    assert base != pipeline.fingerprint(s, {"a": 1}, {"u": "f1"}, "pkg")


def test_toc_for_other_profiles_points_at_their_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("RTSSEG_RUNS", str(tmp_path))
    text = pipeline.toc_for("smoke").read_text()
    assert "book/smoke/02_pretrain_barlow_twins" in text and "book/cpu/" not in text
    assert pipeline.toc_for("cpu").name == "_toc.yml"


def test_unknown_override_is_refused_before_running(tmp_path, monkeypatch):
    monkeypatch.setenv("RTSSEG_RUNS", str(tmp_path))
    with pytest.raises(NotebookParameterError, match="match no parameter"):
        pipeline.run_profile("smoke", only=["01"], overrides={"epochz": 3})


def test_profiles_hold_only_what_differs_from_the_notebook_defaults():
    """A value equal to the notebook's default would silently undo a later change of that default."""
    for step in STEPS:
        declared = declared_parameters(pipeline.read_notebook(step), step.source)
        for profile, steps in PROFILES.items():
            repeats = {k: v for k, v in steps[step.name].items() if declared.get(k) == v}
            assert not repeats, f"{profile}/{step.name} repeats the notebook defaults {repeats}"


def test_notebooks_build_trainer_configs_with_config_from():
    """Configs are filled from the parameters by field name, not copied by hand."""
    for name in ("02_pretrain_barlow_twins", "04_supervised_baseline"):
        text = next(s for s in STEPS if s.name == name).source.read_text()
        assert "config_from(" in text and "Config(\n" not in text, name
