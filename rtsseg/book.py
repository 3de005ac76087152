"""Conventions of the rendered book: every notebook of ``notebooks/`` follows them.

The book is a report over hidden code. These are the rules, and the helpers that implement them:

1. **Code hidden, parameters as a table.** :func:`prepare_for_book` is applied by the pipeline to each executed
   notebook before it is written to ``book/<profile>/<step>.ipynb``. It tags every code cell ``remove-input``
   (the output stays; cells tagged ``hide-input`` in the source keep a "show code" toggle instead; a cell
   tagged ``remove-cell`` disappears), tags the ``parameters`` and papermill ``injected-parameters`` cells
   ``remove-cell`` (they stay in the .ipynb so the notebook still runs on Colab), inserts one small markdown
   table "Parameters of this run" in their place, and puts :func:`colab_cell` first (also ``remove-cell``).
   It records the provenance (commit, device, torch) in ``metadata.rtsseg``.
2. **Numbers are glued, never typed.** A notebook calls :func:`glue_result` (a number with its format, or a
   pre-formatted text such as ``mean_std``'s), :func:`glue_figure` and :func:`glue_table`. Prose shows a value
   with ``{glue:text}`name``` on the same page, or ``{glue:text}`/book/<profile>/<step>.ipynb::name:s``` from
   another page (the trailing format is required there); a figure or table with a ``{glue:figure} name``
   block carrying ``:name: fig-...``/``tbl-...`` and a caption (numbered, citable with ``{numref}``); from
   another page only the plain ``{glue} name`` directive with ``:doc: path`` works. The names the landing
   page expects are in :data:`rtsseg.bookpages.GLUE_NAMES`; a name that no executed notebook defines is written
   as "not run in this edition" by :func:`rtsseg.bookpages.write_index`, so the book builds whatever subset of chapters has been rewritten.
   Each chapter ends with a "Result" paragraph citing its glued numbers with their spread.
3. **Colab one click away.** ``_config.yml`` holds the repository URL once (``repository.url``); the launch
   button of each chapter is derived from it by Jupyter Book, and :func:`colab_cell` pins ``rtsseg`` to the
   commit that executed the notebook, installing it with ``--no-deps`` (Colab's torch stays) plus the package's
   non-torch dependencies, only when ``import rtsseg`` fails.
4. **Nothing machine-specific on the page.** Logs and progress bars go to stderr (``nb_output_stderr: remove``
   in ``_config.yml``; ``TQDM_DISABLE=1`` while the pipeline executes); paths are printed with :func:`rel`.
5. **Readable figures.** Call :func:`figure_style` once after the imports: fonts >= 10 pt at the rendered size
   (figures are at most :data:`PAGE_WIDTH_IN` inches wide, the width of the book's text column, so they are
   never scaled down), a colour bar on every compared map (see the plotting helpers), no float noise in
   tables (format with ``mean_std`` or ``round``).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from rtsseg.config import REPO_ROOT
# The notebook-time half (what a running notebook calls) lives in rtsseg.glue; re-exported for older notebooks.
from rtsseg.glue import (GLUE_PREFIX, PAGE_WIDTH_IN, GluedText, figure_style, glue, glue_figure,  # noqa: F401
                         glue_result, glue_table, rel)

NOT_RUN = "*not run in this edition*"

def book_config(path: Path | None = None) -> dict:
    import yaml

    return yaml.safe_load((path or REPO_ROOT / "_config.yml").read_text()) or {}


def repo_url(config: dict | None = None) -> str:
    """The one place the repository URL lives: ``repository.url`` in ``_config.yml``."""
    url = (book_config() if config is None else config).get("repository", {}).get("url")
    if not url:
        raise ValueError("_config.yml has no repository.url. Fix: set repository: {url: https://github.com/OWNER/rtsseg}")
    return url.rstrip("/")


def colab_url(profile: str, step: str, config: dict | None = None, branch: str = "main") -> str:
    """The "Open in Colab" address of an executed notebook of the book (as Jupyter Book's launch button builds it)."""
    gh = repo_url(config).removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{gh}/blob/{branch}/book/{profile}/{step}.ipynb"


# ---- provenance -------------------------------------------------------------------------------------------


def provenance() -> dict:
    """Commit (with ``+dirty`` when the sources differ from it), device, torch version: the run record's machine part."""
    import platform

    import torch

    from rtsseg.report import _git_commit

    return {
        "commit": _git_commit(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU x{os.cpu_count()}",
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


# ---- notebooks --------------------------------------------------------------------------------------------


def runtime_requirements() -> list[str]:
    """The package's dependencies minus torch/torchvision (Colab's own builds stay)."""
    import tomllib

    deps = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return [d for d in deps if re.split(r"[<>=!~ \[]", d, maxsplit=1)[0] not in ("torch", "torchvision")]


def colab_cell_source(url: str, commit: str, requirements: list[str], data: str = "/content/data") -> str:
    """The first cell of every book notebook; harmless outside Colab (it only acts when rtsseg is missing).

    Only the requirements that are missing are installed, so Colab's preinstalled stack (torch first) stays.
    """
    reqs = ", ".join(repr(r) for r in requirements)
    return f"""\
# Colab / fresh environment: run this cell first. Nothing happens where rtsseg is already importable.
import importlib, importlib.metadata, importlib.util, re, sys
if importlib.util.find_spec("rtsseg") is None:
    # rtsseg pinned to the commit that executed this notebook; --no-deps keeps Colab's own torch and torchvision
    %pip install -q --no-deps "rtsseg @ git+{url}@{commit}"
    def _missing(req):
        try:
            importlib.metadata.version(re.split(r"[<>=!~ \\[]", req, maxsplit=1)[0])
            return False
        except importlib.metadata.PackageNotFoundError:
            return True
    _todo = [r for r in [{reqs}] if _missing(r)]
    if _todo:
        %pip install -q {{" ".join(repr(r) for r in _todo)}}
    importlib.invalidate_caches()
# The profile "Run all" runs, with its sizes (rtsseg/profiles.py): "smoke" (minutes), "cpu" (this book),
# "colab" (one free T4 session), "gpu-short", "gpu". "" runs this page's own profile; $RTSSEG_PROFILE does the same.
RTSSEG_PROFILE = ""
if RTSSEG_PROFILE:
    import os
    os.environ["RTSSEG_PROFILE"] = RTSSEG_PROFILE
if "google.colab" in sys.modules:
    %env RTSSEG_DATA={data}
    # Data (the book's subset: 100 train images per class): `!rtsseg download tiny-imagenet {data} --per-class 100`,
    # `!rtsseg download camvid {data}`, COCO-Stuff val2017 (1 GB): `!rtsseg download cocostuff {data}/cocostuff`.
    # Checkpoints survive a Colab session only on Drive:
    #   from google.colab import drive; drive.mount("/content/drive")
    #   %env RTSSEG_RUNS=/content/drive/MyDrive/rtsseg-runs
"""


def colab_cell(commit: str | None = None, config: dict | None = None):
    import nbformat

    commit = (commit or provenance()["commit"]).removesuffix("+dirty")
    cell = nbformat.v4.new_code_cell(colab_cell_source(repo_url(config), commit, runtime_requirements()))
    cell.metadata["tags"] = ["remove-cell", "colab-setup"]
    return cell


def _fmt_param(value) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text.replace("|", "\\|")


def parameters_markdown(params: dict) -> str:
    """One small markdown table: parameter | value (the injected values, else the defaults)."""
    rows = "\n".join(f"| `{k}` | `{_fmt_param(v)}` |" for k, v in params.items())
    return f"**Parameters of this run**\n\n| parameter | value |\n|---|---|\n{rows}\n"


def _tags(cell) -> list[str]:
    return cell.setdefault("metadata", {}).setdefault("tags", [])


def prepare_for_book(nb, params: dict | None = None, commit: str | None = None, config: dict | None = None):
    """Make an executed notebook a book page (see the module docstring, rule 1). Returns ``nb`` (modified in place).

    Idempotent: a notebook prepared twice is prepared once.
    """
    import nbformat

    if nb.metadata.get("rtsseg", {}).get("prepared"):
        return nb
    if params is None:
        params = nb.metadata.get("papermill", {}).get("parameters") or {}
    cells, table_at = [], None
    for cell in nb.cells:
        tags = _tags(cell)
        if cell.cell_type != "code":
            cells.append(cell)
            continue
        if "parameters" in tags or "injected-parameters" in tags:
            if "remove-cell" not in tags:
                tags.append("remove-cell")
            table_at = len(cells) if table_at is None else table_at
        elif not {"remove-cell", "remove-input", "hide-input", "hide-cell"} & set(tags):
            tags.append("remove-input")
        # stderr (logs, tqdm) never reaches the page, even where nb_output_stderr is not set
        cell.outputs = [o for o in cell.get("outputs", []) if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
        cells.append(cell)
    if table_at is not None:
        table = nbformat.v4.new_markdown_cell(parameters_markdown(params))
        table.metadata["tags"] = ["parameters-table"]
        cells.insert(_after_params(cells, table_at), table)
    cells.insert(0, colab_cell(commit, config))
    nb.cells = cells
    profile = params.get("profile")
    if profile and profile != "cpu":  # its chapters may share the cpu book's build: their labels must not collide
        scope_labels(nb, profile)
    meta = nb.metadata.setdefault("rtsseg", {})
    meta.update({"prepared": True, **provenance()})
    if commit:
        meta["commit"] = commit
    return nb


_LABEL = r"[A-Za-z0-9_-]+"
_LABEL_PATTERNS = (
    re.compile(rf"^\s*:name:\s*(?P<label>{_LABEL})", re.M),  # a figure's or table's name
    re.compile(rf"\{{(?:numref|ref)\}}`(?:[^`<]*<)?(?P<label>{_LABEL})>?`"),  # {numref}`label`, {numref}`Table %s <label>`
    re.compile(rf"^\((?P<label>{_LABEL})\)=", re.M),  # (label)= targets
)


def scope_labels(nb, prefix: str):
    """Prefix every cross-reference label of a notebook (``:name:``, ``{numref}``/``{ref}`` targets, ``(label)=``)
    with ``<prefix>-``, in markdown cells and markdown outputs, so that the chapters of another edition built into
    the same book (``rtsseg.pipeline.EXTRA_EDITIONS``) number and link their own figures and tables rather than
    the cpu edition's (Sphinx labels are global). Idempotent; returns ``nb``."""
    meta = nb.metadata.setdefault("rtsseg", {})
    if meta.get("labels_scoped") == prefix:
        return nb

    def sub(m: re.Match) -> str:
        label, whole = m.group("label"), m.group(0)
        if label.startswith(f"{prefix}-"):
            return whole
        start, end = (i - m.start() for i in m.span("label"))
        return whole[:start] + f"{prefix}-{label}" + whole[end:]

    def scoped(text: str) -> str:
        for pattern in _LABEL_PATTERNS:
            text = pattern.sub(sub, text)
        return text

    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = scoped(cell.source)
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            for key in ("text/markdown", GLUE_PREFIX + "text/markdown"):
                if isinstance(data.get(key), str):
                    data[key] = scoped(data[key])
    meta["labels_scoped"] = prefix
    return nb


def _after_params(cells, first: int) -> int:
    """Index just after the run of parameter cells starting at ``first`` (default, then injected)."""
    i = first
    while i < len(cells) and cells[i].cell_type == "code" and {"parameters", "injected-parameters"} & set(_tags(cells[i])):
        i += 1
    return i


# ---- glue -------------------------------------------------------------------------------------------------


# ---- the landing page -------------------------------------------------------------------------------------


def run_records(profile: str, book: Path | None = None) -> list[dict]:
    """One row per executed notebook: step, wall time, commit, device, torch (from the notebook's metadata)."""
    import nbformat

    rows = []
    for path in sorted(((book or REPO_ROOT / "book") / profile).glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        meta, pm = nb.metadata.get("rtsseg", {}), nb.metadata.get("papermill", {})
        rows.append({
            "step": path.stem,
            "wall time (min)": round((meta.get("wall_s") or pm.get("duration") or 0.0) / 60, 1),
            # training chapters: the time their runs took to train (this execution, or the one that trained a run
            # this one loaded unchanged); None where not recorded
            "training (min)": round(meta["training_s"] / 60, 1) if "training_s" in meta else None,
            "seeds": _seeds(meta.get("params", {})),
            "backbones": ", ".join(meta.get("params", {}).get("backbones", [])),
            "commit": meta.get("commit", "not recorded"),
            "device": meta.get("device", "not recorded"),
            "torch": meta.get("torch", "not recorded"),
            "executed": (pm.get("end_time") or "")[:10],
        })
    return rows


def _seeds(params: dict) -> str:
    seeds = params.get("seeds", params.get("seed"))
    return "–" if seeds is None else json.dumps(seeds)


# ---- the findings chapter ---------------------------------------------------------------------------------

#: Published anchors (from the project's anchors list), by result-name prefix: (note label, text, bib key).
ANCHORS: dict[str, tuple[str, str, str]] = {
    "pretrain": ("a", "Barlow Twins, ResNet-50, ImageNet linear top-1: 73.2 % (1000 epochs, batch 2048)",
                 "zbontar2021barlow"),
    "dino": ("b", "DINO, ViT-S/16, ImageNet k-NN / linear top-1: 74.5 / 77.0 %", "caron2021dino"),
    "embeddings": ("b", "DINO, ViT-S/16, ImageNet k-NN / linear top-1: 74.5 / 77.0 %", "caron2021dino"),
    "attention": ("c", "Jaccard of 60 %-mass masks with VOC12 objects, ViT-S/16 best head: random 22.0, "
                       "supervised 27.3, DINO 45.9", "caron2021dino"),
    "segmentation": ("d", "COCO-Stuff-27 linear probe, STEGO ViT-B/8: 41.0 mIoU (unsupervised 28.2)",
                     "hamilton2022stego"),
}


def anchor_notes(results: dict) -> str:
    """The notes (a), (b)… of the anchors of the chapters that saved results, with their citations (MyST markdown)."""
    used = {a for prefix, a in ANCHORS.items() if any(n.startswith(prefix) for n in results)}
    return "\n".join(f"- ({label}) {text} {{cite}}`{key}`." for label, text, key in sorted(used))


def budget_table(profile: str, book: Path | None = None, exclude: tuple[str, ...] = ("08_findings",)):
    """The compute budget: each chapter's own run record (from its executed notebook) and their sum."""
    import pandas as pd

    records = [r for r in run_records(profile, book) if r["step"] not in exclude]
    trained = any(r["training (min)"] is not None for r in records)
    drop = ("backbones", "executed") if trained else ("backbones", "executed", "training (min)")
    rows = [{k: ("–" if v is None else v) for k, v in r.items() if k not in drop} for r in records]
    table = pd.DataFrame(rows).set_index("step") if rows else pd.DataFrame(columns=["wall time (min)"])
    total = {c: "" for c in table.columns}
    total["wall time (min)"] = round(float(table["wall time (min)"].sum()), 1) if rows else 0.0
    if trained:
        total["training (min)"] = round(sum(r["training (min)"] or 0.0 for r in records), 1)
    table.loc["total"] = total
    return table
