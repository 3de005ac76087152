"""Run parents per initialisation, load_backbone through the last finished run, step_run_parents for --force."""

from __future__ import annotations

import pytest
import torch

from model_fakes import register_fakes
from rtsseg import experiments as ex
from rtsseg.errors import NoRunError
from rtsseg.rundir import open_run

register_fakes()


def test_run_parents_and_force_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("RTSSEG_RUNS", str(tmp_path))
    assert ex.pretrain_dir("cpu", "vit_small64", 1) == tmp_path / "cpu" / "pretrain" / "vit_small64_seed1"
    assert ex.dino_dir("cpu", "vit_small64", 0) == tmp_path / "cpu" / "dino" / "vit_small64_seed0"
    assert ex.supervised_dir("cpu", "b", 2).parent.name == "supervised"
    assert ex.attention_supervised_dir("cpu", "b", 2).parent.name == "attention_supervised"
    assert ex.step_run_parents("cpu", "02") == [tmp_path / "cpu" / "pretrain"]
    assert ex.step_run_parents("cpu", "03_pretrain_dino") == [tmp_path / "cpu" / "dino"]
    assert set(ex.step_run_parents("cpu", "04")) == {tmp_path / "cpu" / "supervised",
                                                      tmp_path / "cpu" / "attention_supervised"}
    assert ex.step_run_parents("cpu", "05") == []
    assert isinstance(ex.INITS, list) and "dino" in ex.INITS and "attention-supervised" in ex.ALL_INITS


def test_load_backbone_takes_the_recorded_run_and_names_the_step(tmp_path, monkeypatch):
    from rtsseg.report import RunRecord

    monkeypatch.setenv("RTSSEG_RUNS", str(tmp_path))
    assert ex.load_backbone("smoke", "vit_small64", "random", 0, 64).family == "vit"
    with pytest.raises(NoRunError, match=r"no finished barlow twins run .*--profile smoke --step 02"):
        ex.load_backbone("smoke", "tiny_test", "barlow twins", 0, 64)
    with pytest.raises(NoRunError, match=r"--step 04"):
        ex.load_backbone("smoke", "tiny_test", "supervised", 0, 64)
    with pytest.raises(ValueError, match="unknown initialisation"):
        ex.load_backbone("smoke", "tiny_test", "dino-ish", 0, 64)
    from model_fakes import TinyBackbone

    trained = TinyBackbone()
    torch.nn.init.constant_(trained.features[0].weight, 0.5)
    for init in ("dino", "attention-supervised"):
        with open_run(ex.run_parent("smoke", init, "tiny_test", 3), {"x": init}, "code") as run:
            run.save({"backbone": trained.state_dict()})
            run.finish()
        record = RunRecord(ex.TRAINED[init][1], {"profile": "smoke"})
        record.trained(init, "tiny_test", 3, run.path)
        record.finish()
        analysis = RunRecord("05_attention_maps", {"profile": "smoke"})
        got = ex.load_backbone("smoke", "tiny_test", init, 3, 32, record=analysis)
        assert torch.equal(got.features[0].weight, trained.features[0].weight) and not got.training
        assert analysis.runs["analysed"] == {f"{init}/tiny_test/3": run.path.name}
    with open_run(ex.dino_dir("smoke", "tiny_test", 3), {"x": "later"}, "code") as run:
        run.save({"backbone": TinyBackbone().state_dict()})
        run.finish()  # finished last (latest.json names it), but no chapter recorded it: not picked
    assert torch.equal(ex.load_backbone("smoke", "tiny_test", "dino", 3, 32).features[0].weight,
                       trained.features[0].weight)


def test_model_runs_and_iter_models_skip_and_name_what_is_missing(tmp_path, monkeypatch):
    """The backbone x init x seed loop of the analysis chapters: all seeds for the main backbone, others fewer;
    an initialisation whose step has not run is named in ``missing``, the random one is always there."""
    from rtsseg.experiments import iter_models, model_runs

    monkeypatch.setenv("RTSSEG_RUNS", str(tmp_path))
    runs = model_runs(["vit_small64", "swin_small64"], "vit_small64", [0, 1, 2], [0])
    assert runs == [("vit_small64", 0), ("vit_small64", 1), ("vit_small64", 2), ("swin_small64", 0)]
    missing: list = []
    got = [(b, i, s) for b, i, s, _ in iter_models("smoke", runs[:1], ["random", "dino"], 64, missing)]
    assert got == [("vit_small64", "random", 0)]
    assert [m[:3] for m in missing] == [("vit_small64", "dino", 0)] and "dino" in missing[0][3]
    # the reason is shown on a book page: no absolute path, no fix advice
    assert str(tmp_path) not in missing[0][3] and "Fix" not in missing[0][3] and len(missing[0][3]) < 50


def test_family_value_matches_the_name_prefix_and_names_the_parameter():
    import pytest

    from rtsseg.experiments import family_value

    opts = {"vit": "adamw", "botnet": "lars"}
    assert family_value(opts, "vit_s8_64") == "adamw" and family_value(opts, "botnet_small") == "lars"
    with pytest.raises(ValueError, match="optimizer_by_family .* backbone 'swin_small64'. Fix: add"):
        family_value(opts, "swin_small64", "optimizer_by_family")


def test_why_a_run_is_missing_fits_a_table_cell(tmp_path):
    from rtsseg.errors import NoRunError
    from rtsseg.experiments import _why_missing

    err = NoRunError(tmp_path / "cpu" / "dino" / "swin_small64_seed0", "rtsseg run --profile cpu --step 03",
                     what="dino run of swin_small64 seed 0")
    assert _why_missing(err) == "no finished dino run"  # pandas cuts a cell at 50 characters
    other = ValueError(f"{tmp_path}/x.pt is unreadable. Fix: delete it")
    assert _why_missing(other) == f"{tmp_path}/x.pt is unreadable"
