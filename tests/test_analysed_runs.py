"""Chapters analyse the runs their training chapters trained (issue 17, part 3).

Before: chapters 5-7 loaded ``latest.json`` (last writer wins), so a papermill run of chapter 2 with other
parameters into the same runs folder swapped the weights under them, and ``rtsseg book`` built a book whose
chapter 2 described one run and whose chapter 5 analysed another.
"""

from __future__ import annotations

import json

import nbformat
import pytest

from rtsseg import pipeline
from rtsseg.errors import NoRunError
from rtsseg.experiments import pretrain_dir, trained_run
from rtsseg.glue import GLUE_PREFIX
from rtsseg.pipeline import RunRefused
from rtsseg.report import RUNS_GLUE, RunRecord, read_trained_runs, run_key, write_trained_runs

BT = "02_pretrain_barlow_twins"
ATTN = "05_attention_maps"


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("RTSSEG_RUNS", str(tmp_path / "runs"))
    monkeypatch.setattr(pipeline, "executed_notebook", lambda profile, name: tmp_path / "book" / profile / f"{name}.ipynb")
    return tmp_path


def _run_folder(profile: str, ident: str):
    folder = pretrain_dir(profile, "vit_small64", 0) / ident
    folder.mkdir(parents=True)
    (folder / "checkpoint.pt").write_bytes(b"x")
    (folder / "config.json").write_text(json.dumps({"config": {"precision": "fp32"}}))
    return folder


def _book_chapter(root, profile, name, runs):
    """An executed notebook holding the RUNS_GLUE output exactly as rtsseg.glue writes it."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("record.finish()")
    cell.outputs = [nbformat.v4.new_output("display_data", data={GLUE_PREFIX + "text/plain": json.dumps(runs)},
                                           metadata={"scrapbook": {"name": RUNS_GLUE, "mime_prefix": GLUE_PREFIX}})]
    nb.cells = [cell]
    nb.metadata["rtsseg"] = {"fingerprint": name, "upstream": {}}
    path = root / "book" / profile / f"{name}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def test_analysis_loads_the_recorded_run_not_the_latest(runs):
    a, b = _run_folder("p", "aaaaaaaaaaaa"), _run_folder("p", "bbbbbbbbbbbb")
    (a.parent / "latest.json").write_text(json.dumps({"run": b.name}))  # b finished last (a papermill run)
    with pytest.raises(NoRunError, match="--step 02"):
        trained_run("p", "vit_small64", "barlow twins", 0)  # no chapter recorded a run yet
    record = RunRecord(BT, {"profile": "p"})
    record.trained("barlow twins", "vit_small64", 0, a)
    table = record.finish()
    assert read_trained_runs("p", BT) == {"barlow twins/vit_small64/0": a.name}
    assert trained_run("p", "vit_small64", "barlow twins", 0) == a
    assert table.loc["precision"].iloc[0] == "fp32" and table.loc["runs trained"].iloc[0] == 1
    with pytest.raises(NoRunError, match="seed 1"):
        trained_run("p", "vit_small64", "barlow twins", 1)


def test_book_refuses_the_papermill_swap_and_a_skipped_training_step_restores_its_record(runs):
    a, b = _run_folder("p", "aaaaaaaaaaaa"), _run_folder("p", "bbbbbbbbbbbb")
    key = run_key("barlow twins", "vit_small64", 0)
    _book_chapter(runs, "p", BT, {"trained": {key: a.name}, "analysed": {}})
    _book_chapter(runs, "p", ATTN, {"trained": {}, "analysed": {key: a.name}})
    assert pipeline.run_mismatches("p") == []
    # papermill ran chapter 2 again with other parameters into the same runs folder (its record now names b),
    # then `rtsseg run --step 05` analysed b: the book's chapter 2 still describes a
    write_trained_runs("p", BT, {key: b.name})
    _book_chapter(runs, "p", ATTN, {"trained": {}, "analysed": {key: b.name}})
    (why,) = pipeline.run_mismatches("p")
    assert why[0] == ATTN and why[1] == BT and b.name in why[2] and a.name in why[2]
    with pytest.raises(RunRefused, match=r"analysed other runs .* Fix: rtsseg run --profile p --step 02 --step 05"):
        pipeline.build_book("p", partial=True)
    # the fix: chapter 2 unchanged in the book -> skipped, and its record is the book's again
    pipeline.restore_trained_runs("p", BT)
    assert read_trained_runs("p", BT) == {key: a.name}
    assert trained_run("p", "vit_small64", "barlow twins", 0) == a
    # an analysis of a run that no training chapter of the book trained is refused too
    _book_chapter(runs, "p", ATTN, {"trained": {}, "analysed": {run_key("dino", "vit_small64", 0): "cccccccccccc"}})
    assert "trained no such run" in pipeline.run_mismatches("p")[0][2]
