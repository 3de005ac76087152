"""The book conventions of rtsseg.book: hidden code, parameters table, Colab cell, glue, index from a template."""

from __future__ import annotations

import json

import nbformat
import pytest

from rtsseg import book, bookpages


def _executed_notebook():
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("profile = 'cpu'\nseed = 0")
    params.metadata["tags"] = ["parameters"]
    injected = nbformat.v4.new_code_cell("# Parameters\nprofile = 'smoke'\n")
    injected.metadata["tags"] = ["injected-parameters"]
    work = nbformat.v4.new_code_cell("print('hi')")
    work.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi\n"),
                    nbformat.v4.new_output("stream", name="stderr", text="100%|####| /home/me/x\n")]
    toggled = nbformat.v4.new_code_cell("x = 1")
    toggled.metadata["tags"] = ["hide-input"]
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), params, injected, work, toggled]
    nb.metadata["papermill"] = {"parameters": {"profile": "smoke", "seeds": [0, 1]}}
    return nb


def test_prepare_for_book_hides_code_and_tables_parameters():
    nb = book.prepare_for_book(_executed_notebook(), commit="abc123def456", config={"repository": {"url": "https://x/r"}})
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    # Colab cell first, removed from the page but kept in the notebook
    assert "colab-setup" in tags[0] and "remove-cell" in tags[0]
    assert 'git+https://x/r@abc123def456' in nb.cells[0].source and "--no-deps" in nb.cells[0].source
    assert nb.cells[1].cell_type == "markdown"
    # both parameter cells stay (the notebook must still run) but are removed from the page
    assert "remove-cell" in tags[2] and "remove-cell" in tags[3]
    # one parameters table, right after them, with the injected values
    assert nb.cells[4].cell_type == "markdown" and "Parameters of this run" in nb.cells[4].source
    assert "| `seeds` | `[0, 1]` |" in nb.cells[4].source
    assert sum("Parameters of this run" in c.source for c in nb.cells) == 1
    assert "remove-input" in tags[5]  # code hidden, output kept
    assert [o.name for o in nb.cells[5].outputs] == ["stdout"]  # stderr (logs, tqdm) dropped
    assert tags[6] == ["hide-input"]  # an author's toggle is kept
    assert nb.metadata["rtsseg"]["commit"] == "abc123def456" and "torch" in nb.metadata["rtsseg"]
    again = book.prepare_for_book(nb)
    assert len(again.cells) == len(nb.cells) == 7  # idempotent


def test_colab_cell_pins_commit_and_keeps_torch():
    src = book.colab_cell_source("https://github.com/o/r", "0123abcd", book.runtime_requirements())
    assert 'rtsseg @ git+https://github.com/o/r@0123abcd' in src
    assert "torch" not in " ".join(book.runtime_requirements()).replace("timm", "")
    assert "%env RTSSEG_DATA=" in src and "RTSSEG_RUNS" in src and "drive.mount" in src
    assert src.index('find_spec("rtsseg") is None') < src.index("%pip")  # installs only when missing


def test_repo_url_is_one_setting():
    cfg = book.book_config()
    url = book.repo_url(cfg)
    assert url.startswith("https://github.com/")
    assert book.colab_url("cpu", "05_attention_maps", cfg).endswith(
        url.removeprefix("https://github.com/") + "/blob/main/book/cpu/05_attention_maps.ipynb")
    with pytest.raises(ValueError, match="repository.url"):
        book.repo_url({})


def test_glue_result_formats_without_quotes(monkeypatch):
    shown = []
    import rtsseg.glue

    monkeypatch.setattr(rtsseg.glue, "glue", lambda name, value, display=True: shown.append((name, repr(value))))
    assert book.glue_result("acc", 0.12345, ".1%") is None  # nothing shown when it ends a cell
    book.glue_result("gain", 2.0, "{:+.1f} points")
    book.glue_result("txt", "1.0 ± 0.2 (n=3)")
    book.glue_result("n", 20000, ",d")
    assert shown == [("acc", "12.3%"), ("gain", "+2.0 points"), ("txt", "1.0 ± 0.2 (n=3)"), ("n", "20\u202f000")]


def test_rel_never_absolute(tmp_path):
    roots = {"$RTSSEG_DATA": tmp_path / "data", ".": tmp_path / "repo"}
    assert book.rel(tmp_path / "data" / "camvid" / "val", roots) == "$RTSSEG_DATA/camvid/val"
    assert book.rel(tmp_path / "repo", roots) == "."
    assert book.rel("/somewhere/else/file.pt", roots) == "file.pt"


def test_figure_style_fonts_readable():
    import matplotlib as mpl

    book.figure_style()
    assert min(float(mpl.rcParams[k]) for k in ("font.size", "xtick.labelsize", "legend.fontsize")) >= 10
    assert mpl.rcParams["figure.figsize"][0] <= book.PAGE_WIDTH_IN


def _glued_notebook(path, keys, meta=None):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("glue")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"application/papermill.record/text/plain": "1.0"},
                                           metadata={"scrapbook": {"name": k, "mime_prefix": "application/papermill.record/"}})
                    for k in keys]
    nb.cells = [cell]
    nb.metadata["rtsseg"] = meta or {}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def test_index_writes_glue_or_not_run(tmp_path):
    bk = tmp_path / "book"
    _glued_notebook(bk / "smoke" / "05_attention_maps.ipynb", ["attn_auroc_bt", "attn_grid"],
                    {"commit": "abc", "device": "CPU x2", "torch": "2.x", "wall_s": 120, "params": {"seeds": [0]}})
    (bk / "index.template.md").write_text("BT {{ glue:attn_auroc_bt }}; control {{ glue:attn_auroc_control }}.\n"
                                          "{{ figure:attn_grid }}\n{{ status }}\n")
    text = (bookpages.write_index("smoke", bk)).read_text()
    assert "{glue:text}`/book/smoke/05_attention_maps.ipynb::attn_auroc_bt:s`" in text
    assert f"control {book.NOT_RUN}." in text
    assert "```{glue} attn_grid\n:doc: /book/smoke/05_attention_maps.ipynb\n```" in text
    assert "Profile** `smoke`: 1 of" in text and "CPU x2" in text and "`abc`" in text
    assert "training time is not recorded apart in this execution" in text  # no chapter recorded training_s
    assert "{{" not in text


def test_glue_names_belong_to_steps():
    from rtsseg.profiles import STEPS

    names = {s.name for s in STEPS}
    assert all(step in names for step, _ in bookpages.GLUE_NAMES.values())
    assert json.dumps(bookpages.GLUE_NAMES)


def test_budget_table_sums_run_records(tmp_path):
    bk = tmp_path / "book"
    for step, wall in [("01_data", 60), ("02_pretrain_barlow_twins", 600), ("08_findings", 6000)]:
        _glued_notebook(bk / "cpu" / f"{step}.ipynb", [], {"wall_s": wall, "commit": "abc", "device": "CPU x2",
                                                           "torch": "2.x", "params": {"seeds": [0, 1]}})
    t = book.budget_table("cpu", bk)
    assert list(t.index) == ["01_data", "02_pretrain_barlow_twins", "total"]
    assert t.loc["total", "wall time (min)"] == 11.0 and t.loc["01_data", "seeds"] == "[0, 1]"
    assert {"commit", "device", "torch"} <= set(t.columns)


def test_budget_table_shows_the_training_time_of_loaded_runs(tmp_path):
    bk = tmp_path / "book"
    for step, meta in [("01_data", {"wall_s": 60}), ("02_pretrain_barlow_twins", {"wall_s": 30, "training_s": 1800}),
                       ("04_supervised_baseline", {"wall_s": 24, "training_s": 1206})]:
        _glued_notebook(bk / "cpu" / f"{step}.ipynb", [], {**meta, "commit": "abc", "device": "CPU x2",
                                                           "torch": "2.x", "params": {}})
    t = book.budget_table("cpu", bk)
    assert t.loc["01_data", "training (min)"] == "–" and t.loc["02_pretrain_barlow_twins", "training (min)"] == 30.0
    assert t.loc["total", "training (min)"] == 50.1 and t.loc["total", "wall time (min)"] == 1.9
    (bk / "index.template.md").write_text("{{ status }}\n")
    text = bookpages.write_index("cpu", bk).read_text()
    assert "executed in 2 min; its training runs took 50 min to train" in text


def test_glue_matches_myst_nb():
    """Our copy of myst_nb.glue writes outputs that myst-nb's own reader extracts."""
    from IPython.core.interactiveshell import InteractiveShell
    from myst_nb.ext.glue import extract_glue_data_cell

    shell = InteractiveShell.instance()
    captured = []
    shell.display_pub.publish = lambda data, metadata=None, **kw: captured.append((data, metadata))
    book.glue_result("gain", 1.25, ".1f")
    data, meta = captured[-1]
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.v4.new_output("display_data", data=data, metadata=meta)]
    [(key, out)] = extract_glue_data_cell(cell)
    assert key == "gain" and out["data"]["text/plain"] == "1.2"


def test_performance_appendix_is_written_from_the_benchmark_json(tmp_path):
    """Every number of the appendix comes from the results files: change the file, the page changes."""
    import json

    from rtsseg.bookpages import write_performance

    results = tmp_path / "results"
    results.mkdir()
    row = {"label": "net@64", "batch_size": 8, "gflops_per_image": 2.5, "achieved_tflops": 0.25, "frac_bf16_peak": 0.125,
           "frac_fp32_peak": 0.5, "ours_images_per_s": 100.0, "ratio_ours_over_ref": 1.5}
    meta = {"device_name": "testdev", "suite": "cpu", "peaks": {"bf16_tflops": 2.0, "fp32_tflops": 0.5}}
    (results / "cpu_testdev.json").write_text(json.dumps({"meta": meta, "rows": [row]}))
    (results / "cpu_testdev_quick.json").write_text(json.dumps({"meta": meta, "rows": [dict(row, label="quick")]}))
    (tmp_path / "book").mkdir()
    text = write_performance(tmp_path / "book", results).read_text()
    assert "| net@64 | 8 | 2.5 | 0.25 | 12.5 | 50.0 | 100 | 1.50 |" in text
    assert "quick" not in text  # smoke-check results are not reported
    assert "## testdev (cpu suite)\n" in text  # one file of that device: no file name in the heading
    (results / "cpu_testdev_b.json").write_text(json.dumps({"meta": meta, "rows": [row]}))
    two = write_performance(tmp_path / "book", results).read_text()
    assert "## testdev (cpu suite, cpu_testdev)\n" in two and "## testdev (cpu suite, cpu_testdev_b)\n" in two
    (results / "cpu_testdev_b.json").unlink()
    assert bookpages.EMULATED_NOTE not in text
    # a CPU whose bf16 product is slower than its fp32 one emulates bf16: no share of that "peak" is printed
    slow = {"device_name": "slowbf16", "suite": "cpu", "peaks": {"bf16_tflops": 0.001, "fp32_tflops": 0.1}}
    (results / "cpu_testdev.json").write_text(json.dumps({"meta": slow, "rows": [dict(row, frac_bf16_peak=71.98)]}))
    text = write_performance(tmp_path / "book", results).read_text()
    assert "| net@64 | 8 | 2.5 | 0.25 | – | 50.0 | 100 | 1.50 |" in text and "7198" not in text
    assert bookpages.EMULATED_NOTE in text
    three = dict(row, frac_bf16_peak=71.98, fp32_images_per_s=90.0, fp32_achieved_tflops=0.2, fp32_frac_bf16_peak=60.0,
                 fp32_frac_fp32_peak=0.4, ref_images_per_s=80.0, ratio_ours_over_fp32=1.1)
    (results / "cpu_testdev.json").write_text(json.dumps({"meta": slow, "rows": [three]}))
    text = write_performance(tmp_path / "book", results).read_text()
    assert "| – / 50.0 |" in text and "| – / 40.0 |" in text and "7198" not in text and "6000" not in text


def test_index_shows_other_editions_side_by_side(tmp_path):
    bk = tmp_path / "book"
    _glued_notebook(bk / "smoke" / "05_attention_maps.ipynb", ["attn_auroc_bt"],
                    {"commit": "abc", "device": "CPU x2", "torch": "2.x", "wall_s": 60, "params": {"seeds": [0]}})
    _glued_notebook(bk / "gpu-short" / "05_attention_maps.ipynb", ["attn_auroc_bt", "attn_auroc_dino"],
                    {"commit": "def", "device": "NVIDIA H100", "torch": "2.y", "wall_s": 60, "params": {"seeds": [0]}})
    (bk / "index.template.md").write_text("# Title\n\nBT {{ glue:attn_auroc_bt }}.\n\n{{ editions }}\n")
    # smoke saved the object-specific excess (chapter 8's export); gpu-short was executed before it existed
    from rtsseg.findings import Finding
    from rtsseg.stats import Interval

    excess = Finding("attention.excess.barlow_twins.tinyimagenet", "05_attention_maps", "excess",
                     Interval(0.01, 0.0, 0.02, 3, method="hierarchical bootstrap"))
    (bk / "smoke" / "results").mkdir()
    (bk / "smoke" / "results" / "results.json").write_text(json.dumps(
        {"profile": "smoke", "results": {"findings_05_attention_maps": [excess.as_dict()]}}))
    text = bookpages.write_index("smoke", bk, others=("gpu-short",)).read_text()
    assert "| result | `smoke` (CPU x2) | `gpu-short` (NVIDIA H100) |" in text
    row = next(line for line in text.splitlines() if line.startswith("| object-specific AUROC excess (0 = "))
    cells = row.split(" | ")
    assert cells[1] == "{glue:text}`/book/smoke/05_attention_maps.ipynb::attn_auroc_bt:s` / –"
    # the same glue names hold another measure there, and the cell says so
    assert cells[2] == ("{glue:text}`/book/gpu-short/05_attention_maps.ipynb::attn_auroc_bt:s` / "
                        "{glue:text}`/book/gpu-short/05_attention_maps.ipynb::attn_auroc_dino:s` "
                        "(AUROC against the own box, not the excess) |")
    seg = next(line for line in text.splitlines() if line.startswith("| segmentation"))
    assert seg.count(book.NOT_RUN) == 2
    # one edition alone: no table, and the other edition's own page gets its own title
    alone = bookpages.write_index("gpu-short", bk, title="GPU edition").read_text()
    assert "| result |" not in alone and "\n# GPU edition\n" in alone and "# Title" not in alone


def test_scope_labels_prefixes_names_and_references_once():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("```{glue:figure} fig_x\n:name: fig-x\n\nCaption.\n```\n(sec-a)=\n## A"),
        nbformat.v4.new_markdown_cell("See {numref}`fig-x`, {numref}`Table %s <tbl-y>` and {ref}`sec-a`; "
                                      "{cite}`key` and {doc}`08_findings` stay."),
        nbformat.v4.new_code_cell("x"),
    ]
    nb.cells[2].outputs = [nbformat.v4.new_output("display_data", data={"text/markdown": "{numref}`tbl-y`"})]
    book.scope_labels(nb, "gpu-short")
    book.scope_labels(nb, "gpu-short")  # idempotent
    assert ":name: gpu-short-fig-x" in nb.cells[0].source and "(gpu-short-sec-a)=" in nb.cells[0].source
    assert nb.cells[1].source == ("See {numref}`gpu-short-fig-x`, {numref}`Table %s <gpu-short-tbl-y>` and "
                                  "{ref}`gpu-short-sec-a`; {cite}`key` and {doc}`08_findings` stay.")
    assert nb.cells[2].outputs[0]["data"]["text/markdown"] == "{numref}`gpu-short-tbl-y`"
    # the pipeline scopes every profile's chapters but the cpu book's own
    cpu = nbformat.v4.new_notebook()
    cpu.cells = [nbformat.v4.new_markdown_cell(":name: fig-x")]
    assert ":name: fig-x" in book.prepare_for_book(cpu, {"profile": "cpu"}).cells[-1].source
    other = nbformat.v4.new_notebook()
    other.cells = [nbformat.v4.new_markdown_cell(":name: fig-x")]
    assert ":name: smoke-fig-x" in book.prepare_for_book(other, {"profile": "smoke"}).cells[-1].source


def test_reproduce_page_measured_costs_come_from_the_run_records(tmp_path):
    bk = tmp_path / "book"
    for step, wall in [("01_data", 12), ("02_pretrain_barlow_twins", 3000), ("05_attention_maps", 234)]:
        _glued_notebook(bk / "cpu" / f"{step}.ipynb", [], {"wall_s": wall, "commit": "abc", "device": "CPU x2",
                                                           "torch": "2.x", "params": {}})
    (bk / "reproduce.template.md").write_text("| cpu | {{ measured:cpu }} |\n05 took {{ measured:cpu:05 }} min; "
                                              "07 {{ measured:cpu:07 }}; gpu {{ measured:gpu-short }}.\n")
    text = bookpages.write_reproduce(bk).read_text()
    assert "| cpu | 54 min on CPU x2: 01 0.2, 02 50.0, 05 3.9 min (03, 04, 06, 07, 08 not executed in this edition) |" in text
    assert "05 took 3.9 min; 07 not run in `cpu`; gpu not executed here (no `book/gpu-short/*.ipynb`)." in text
    assert "{{" not in text and text.startswith("<!-- Generated by rtsseg.bookpages.write_reproduce")


def test_committed_reproduce_page_is_the_one_its_template_and_run_records_give(tmp_path):
    """book/reproduce.md is generated at every build; the committed copy must be what the committed template and
    executed notebooks give (else a reader on the repository sees costs the book does not)."""
    import shutil

    from rtsseg.config import REPO_ROOT

    bk = tmp_path / "book"
    shutil.copytree(REPO_ROOT / "book", bk, ignore=shutil.ignore_patterns("_build"))
    assert bookpages.write_reproduce(bk).read_text() == (REPO_ROOT / "book" / "reproduce.md").read_text(), \
        "book/reproduce.md is stale. Fix: rtsseg book --profile cpu (it rewrites the page), then commit it"
