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
   page expects are in :data:`GLUE_NAMES`; a name that no executed notebook defines is written as "not run
   in this edition" by :func:`write_index`, so the book builds whatever subset of chapters has been rewritten.
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

#: Glue names the landing page and the findings chapter read: name -> (step that defines it, meaning).
GLUE_NAMES: dict[str, tuple[str, str]] = {
    # 01_data
    "n_tin_classes": ("01_data", "number of Tiny-ImageNet classes in the data root"),
    "n_tin_train": ("01_data", "Tiny-ImageNet training images (the unlabelled pretraining pool)"),
    "n_tin_val": ("01_data", "Tiny-ImageNet validation images (with boxes)"),
    "tin_chance": ("01_data", "chance accuracy on Tiny-ImageNet, % (100 / number of classes)"),
    "n_camvid_classes": ("01_data", "CamVid classes scored (void ignored)"),
    "n_camvid_train": ("01_data", "CamVid training images"),
    "n_camvid_val": ("01_data", "CamVid validation images"),
    "fig_camvid_examples": ("01_data", "figure: CamVid images and labels"),
    "fig_tin_examples": ("01_data", "figure: Tiny-ImageNet images with boxes"),
    # 02/03 pretraining, 06 embeddings
    "bt_knn_gain": ("06_embeddings", "k-NN top-1 of Barlow Twins minus random init, points, mean ± std over seeds"),
    "dino_knn_gain": ("06_embeddings", "k-NN top-1 of DINO minus random init, points, mean ± std over seeds"),
    # 05 attention
    "attn_auroc_bt": ("05_attention_maps", "Barlow Twins' object-specific AUROC excess with its interval"),
    "attn_auroc_control": ("05_attention_maps", "the attention-supervised control's object-specific excess, interval"),
    "attn_bt_vs_random": ("05_attention_maps", "sentence: Barlow Twins − random init, object-specific AUROC excess"),
    "attn_control": ("05_attention_maps", "sentence: the learned control's object-specific excess, verdict"),
    "attn_dino_vs_bt": ("05_attention_maps", "sentence: DINO − Barlow Twins object-specific excess, paired, verdict"),
    "attn_grid": ("05_attention_maps", "figure: attention maps of the same images under each initialisation, "
                                       "on one colour scale"),
    # 07 segmentation
    "seg_attn_minus_control": ("07_segmentation",
                               "mIoU of the attention-aware decoder minus its same-capacity control, points, "
                               "mean [95 % CI] over the paired backbone × init × seed runs"),
}

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


def glue_keys(path: Path) -> set[str]:
    """The glue names an executed notebook defines (myst-nb keeps them in each output's ``scrapbook`` metadata)."""
    import nbformat

    if not Path(path).is_file():
        return set()
    nb = nbformat.read(path, as_version=4)
    return {
        o["metadata"]["scrapbook"]["name"]
        for c in nb.cells if c.cell_type == "code"
        for o in c.get("outputs", []) if "scrapbook" in o.get("metadata", {})
    }


def executed_glue(profile: str, book: Path | None = None) -> dict[str, str]:
    """glue name -> step that defines it, over the executed notebooks ``book/<profile>/*.ipynb``."""
    folder = (book or REPO_ROOT / "book") / profile
    found: dict[str, str] = {}
    for path in sorted(folder.glob("*.ipynb")):
        for key in glue_keys(path):
            found.setdefault(key, path.stem)
    return found


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


_PLACEHOLDER = re.compile(r"\{\{\s*(glue|figure|status|editions)(?::([A-Za-z0-9_]+))?\s*\}\}")

#: Rows of the landing page's table of editions: (label, glue names shown " / "-separated in one cell).
EDITION_ROWS: list[tuple[str, tuple[str, ...]]] = [
    ("main attention backbone", ("bt_main_backbone",)),
    ("Barlow Twins epochs / seeds of the main backbone", ("bt_main_epochs", "bt_main_seeds")),
    ("k-NN top-1 % at random init → after Barlow Twins", ("bt_knn_before", "bt_knn_after")),
    ("k-NN after / before: Barlow Twins / DINO", ("bt_knn_ratio", "dino_knn_ratio")),
    ("supervised val top-1 %, main backbone", ("supervised_main_top1",)),
    ("object-specific AUROC excess (0 = image-independent): Barlow Twins / DINO", ("attn_auroc_bt", "attn_auroc_dino")),
    ("object-specific AUROC excess of the learned control", ("attn_auroc_control",)),
    ("segmentation: attention-aware − control, mIoU points", ("seg_attn_minus_control",)),
    ("compute of the whole edition, min", ("budget_total_min",)),
]


def glue_ref(profile: str, step: str, name: str) -> str:
    """The MyST role that pastes glue ``name`` of the executed chapter ``book/<profile>/<step>.ipynb`` as text
    (the role reads "path::key:format"; without a format it would split the key)."""
    return f"{{glue:text}}`/book/{profile}/{step}.ipynb::{name}:s`"


def editions_table(editions: dict[str, tuple[dict[str, str], list[dict]]]) -> str:
    """The headline numbers of several editions side by side (``profile -> (glue name -> step, run records)``),
    each cell glued from that edition's executed notebooks; empty with fewer than two editions."""
    if len(editions) < 2:
        return ""
    head = ["result"]
    for profile, (_, records) in editions.items():
        devices = ", ".join(sorted({r["device"] for r in records})) or "not run"
        head.append(f"`{profile}` ({devices})")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, names in EDITION_ROWS:
        cells = [label]
        for profile, (found, _) in editions.items():
            parts = [glue_ref(profile, found[n], n) if n in found else "–" for n in names]
            cells.append(" / ".join(parts) if any(n in found for n in names) else NOT_RUN)
        lines.append("| " + " | ".join(cells) + " |")
    first = next(iter(editions))
    intro = (f"## The editions side by side\n\nThe answers above are the `{first}` edition's. Every edition runs the same"
             " notebooks under another profile (its own landing page says what it ran and on what); the table puts"
             " their headline numbers side by side, each cell glued from that edition's executed chapter"
             " (mean ± std over seeds or [95 % interval] as the chapter reports it).\n\n")
    return intro + "\n".join(lines)


def render_index(template: str, profile: str, found: dict[str, str], records: list[dict], figure_caption=None,
                 editions: dict[str, tuple[dict[str, str], list[dict]]] | None = None) -> str:
    """Fill ``{{ glue:NAME }}``, ``{{ figure:NAME }}``, ``{{ status }}`` and ``{{ editions }}`` (the table of
    :func:`editions_table` over ``editions``; nothing when there is one edition) in the landing-page template.

    A name no executed notebook defines becomes "not run in this edition", so the book always builds.
    """
    captions = figure_caption or {}

    def sub(m: re.Match) -> str:
        kind, name = m.group(1), m.group(2)
        if kind == "status":
            return _PLACEHOLDER.sub(sub, status_box(profile, records, found))
        if kind == "editions":
            return editions_table(editions or {})
        where = found.get(name)
        if where is None:
            return NOT_RUN if kind == "glue" else f"```{{note}}\nThe figure `{name}` is {NOT_RUN.strip('*')}.\n```"
        doc = f"/book/{profile}/{where}.ipynb"
        if kind == "glue":
            return glue_ref(profile, where, name)
        caption = captions.get(name, GLUE_NAMES.get(name, ("", name))[1].removeprefix("figure: "))
        caption = caption[:1].upper() + caption[1:] + f" (from {{doc}}`{doc.removesuffix('.ipynb')}`)."
        # glue:figure cannot read another page (no :doc: option); the plain glue directive can
        return f"```{{glue}} {name}\n:doc: {doc}\n```\n\n*{caption}*"

    return _PLACEHOLDER.sub(sub, template)


def status_box(profile: str, records: list[dict], found: dict[str, str]) -> str:
    from rtsseg.profiles import STEPS

    ran = {r["step"] for r in records}
    missing = [s.name for s in STEPS if s.name not in ran]
    devices = sorted({r["device"] for r in records}) or ["none"]
    commits = sorted({r["commit"] for r in records}) or ["none"]
    torch_v = sorted({r["torch"] for r in records}) or ["none"]
    total = sum(r["wall time (min)"] for r in records)
    backbones = sorted({b.strip() for r in records for b in r.get("backbones", "").split(",") if b.strip()})
    expected = sorted(set(GLUE_NAMES) - set(found))
    lines = [
        "```{admonition} This edition",
        ":class: note",
        f"- **Profile** `{profile}`: {len(ran)} of {len(STEPS)} chapters executed, {total:.0f} min of compute in all",
        f"  (per chapter in {{doc}}`/book/{profile}/08_findings`)"
        + (f"; backbones {', '.join(backbones)}." if backbones else "; backbones as in each chapter's parameters."),
        ("- **Scale** {{ glue:n_tin_train }} Tiny-ImageNet images of {{ glue:n_tin_classes }} classes for pretraining;"
         " CamVid {{ glue:n_camvid_train }} train / {{ glue:n_camvid_val }} val images for segmentation."
         if {"n_tin_train", "n_camvid_train"} <= set(found) else f"- **Scale** see {{doc}}`/book/{profile}/01_data`."),
        f"- **Hardware** {', '.join(devices)}; torch {', '.join(torch_v)}; commit {', '.join(f'`{c}`' for c in commits)}.",
        "- **Not run here**: COCO-Stuff and full-size backbones (ViT-S/16, Swin-T, BoTNet-50 at 224 px) need the",
        "  `gpu` profile (see {doc}`/book/reproduce`)" + (f"; chapters without an executed notebook: {', '.join(missing)}." if missing else "."),
    ]
    if expected:
        lines.append(f"- Results this edition does not define yet: {', '.join(f'`{k}`' for k in expected)}.")
    lines.append("```")
    return "\n".join(lines)


def write_index(profile: str, book: Path | None = None, others: tuple[str, ...] = (), title: str | None = None) -> Path:
    """Write ``book/<profile>/index.md`` (the landing page of that profile's book) from ``book/index.template.md``.

    ``others``: editions whose headline numbers the page shows beside this one's (``{{ editions }}``); their
    notebooks must be part of the same build. ``title`` replaces the template's first heading."""
    book = book or REPO_ROOT / "book"
    template = (book / "index.template.md").read_text()
    if title:
        template = re.sub(r"\A# .*$", f"# {title}", template, count=1, flags=re.M)
    editions = {p: (executed_glue(p, book), run_records(p, book)) for p in (profile, *others)}
    text = render_index(template, profile, editions[profile][0], editions[profile][1], editions=editions)
    out = book / profile / "index.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    header = "<!-- Generated by rtsseg.book.write_index from book/index.template.md: edit the template. -->\n"
    out.write_text(header + text)
    return out


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

    rows = [{k: v for k, v in r.items() if k not in ("backbones", "executed")}
            for r in run_records(profile, book) if r["step"] not in exclude]
    table = pd.DataFrame(rows).set_index("step") if rows else pd.DataFrame(columns=["wall time (min)"])
    total = {c: "" for c in table.columns}
    total["wall time (min)"] = round(float(table["wall time (min)"].sum()), 1) if rows else 0.0
    table.loc["total"] = total
    return table


# ---- the performance appendix -----------------------------------------------------------------------------

def _performance_three_columns(meta: dict, rows: list[dict]) -> list[str]:
    """The lines of one results file of ``bench_mfu.py`` that timed ours with ``amp=auto``, ours in fp32 and the
    plain fp32 reference in one run (after the heading written by :func:`write_performance`)."""
    def num(value, fmt: str) -> str:
        return "" if value is None else format(value, fmt)

    def pct(r: dict, prefix: str) -> str:
        b, f = r.get(f"{prefix}frac_bf16_peak"), r.get(f"{prefix}frac_fp32_peak")
        return "" if b is None or f is None else f"{100 * b:.1f} / {100 * f:.1f}"

    lines = []
    auto, peaks = meta.get("amp_auto") or {}, meta.get("peaks", {})
    if meta.get("cpu_model"):
        lines.append(f"CPU: {meta['cpu_model']}; bf16 peak measured at {peaks.get('bf16_size', peaks.get('size', '?'))}², "
                     f"fp32 at {peaks.get('fp32_size', peaks.get('size', '?'))}².")
    if auto:
        lines.append(f"`amp=auto` chose **{auto.get('precision', '?')}** here ({auto.get('why', '')}).")
    if any(r.get("fp32_same_as_ours") for r in rows):
        lines.append("Where auto is fp32, the auto and fp32 columns are one measurement.")
    if meta.get("load_avg"):
        lines.append(f"Load average at the start {meta['load_avg'][0]:.2f} on {meta.get('threads', '?')} threads: on a "
                     "shared machine compare the ratios of one run, see `benchmarks/NOTES.md`.")
    # two tables, so that each fits the page: ours with auto, then ours in fp32 and the plain reference
    lines += ["", "| backbone | batch | GFLOP / image | auto is | auto images/s | auto TFLOP/s | auto % bf16 / fp32 peak |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r.get('batch_size', '')} | {r['gflops_per_image']:.1f} | {r.get('precision', r.get('amp', ''))} "
            f"| {r['ours_images_per_s']:.1f} | {r['achieved_tflops']:.3g} | {pct(r, '')} |")
    lines += ["", "| backbone | fp32 images/s | fp32 TFLOP/s | fp32 % bf16 / fp32 peak | reference images/s "
                  "| auto / reference | auto / fp32 |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['label']} | {num(r.get('fp32_images_per_s'), '.1f')} | {num(r.get('fp32_achieved_tflops'), '.3g')} "
            f"| {pct(r, 'fp32_')} | {num(r.get('ref_images_per_s'), '.1f')} | {num(r.get('ratio_ours_over_ref'), '.2f')} "
            f"| {num(r.get('ratio_ours_over_fp32'), '.2f')} |")
    return lines


def write_performance(book: Path | None = None, results: Path | None = None) -> Path:
    """Write ``book/performance.md`` from the benchmark results (``benchmarks/results/*.json``, written by
    ``benchmarks/bench_mfu.py``) and the GPU edition's calibration records: every number comes from those files.

    One table per benchmark file: the Barlow Twins training step per backbone, its counted model FLOPs, achieved
    TFLOP/s and share of the bf16 / fp32 matrix-product peaks measured in the same run, images/s and, where the
    plain reference step ran in the same run, ours/reference. A file that also timed our step in fp32 (issue 19:
    ``fp32_*`` keys) gets the three-column table, ours with ``amp=auto`` / ours in fp32 / the plain fp32
    reference, and the line saying what ``auto`` chose there and why; older files keep their table."""
    book = book or REPO_ROOT / "book"
    results = results or REPO_ROOT / "benchmarks" / "results"
    lines = [
        "<!-- Generated by rtsseg.book.write_performance from benchmarks/results/: edit the generator. -->",
        "# Performance appendix", "",
        "The Barlow Twins training step of each backbone (both views through the backbone, projector, loss, "
        "backward, optimiser step), timed by `benchmarks/bench_mfu.py` (see `benchmarks/NOTES.md`). Model FLOPs "
        "are counted with `torch.utils.flop_counter.FlopCounterMode`; the peaks are the best large matrix product "
        "measured in the same run. The official Barlow Twins figure is about 132 images/s per V100 for ResNet-50 "
        "{cite}`zbontar2021barlow`.", "",
        "**Reading the % columns.** Each share is the step's achieved TFLOP/s over the peak of *one* dtype's matrix "
        "product, both measured in the same run. A step trained in bf16 is compared with the fp32 peak too, so it can "
        "exceed 100 % of it (bf16 products run several times faster than fp32 ones); a step trained in fp32 on a CPU "
        "that emulates bf16 exceeds 100 % of the (emulated) bf16 peak. Above 100 % of its *own* dtype's peak a step "
        "cannot go in principle; where a row does, the peak was measured low (on a shared machine, or at a halved size "
        "for a slow dtype, stated with each table) and the ratios within one run are what to compare.", "",
    ]
    files = sorted(p for p in results.glob("*.json") if not p.stem.endswith("_quick"))
    for path in files:
        data = json.loads(path.read_text())
        meta, rows = data.get("meta", {}), data.get("rows", [])
        if not rows:
            continue
        peaks = meta.get("peaks", {})
        lines += [f"## {meta.get('device_name', path.stem)} ({meta.get('suite', '?')} suite)", "",
                  f"`{path.relative_to(REPO_ROOT).as_posix() if path.is_relative_to(REPO_ROOT) else path.name}`, "
                  f"{meta.get('time', '')}, torch {meta.get('torch', '?')}, "
                  f"{meta.get('threads', '?')} threads. Measured peaks: bf16 {peaks.get('bf16_tflops', float('nan')):.3g} "
                  f"TFLOP/s, fp32 {peaks.get('fp32_tflops', float('nan')):.3g} TFLOP/s.", ""]
        if any("fp32_images_per_s" in r for r in rows):
            lines += _performance_three_columns(meta, rows)
        else:
            has_ref = any(r.get("ratio_ours_over_ref") is not None for r in rows)  # no empty column
            lines += ["| backbone | batch | GFLOP / image | TFLOP/s | % bf16 peak | % fp32 peak | images/s |"
                      + (" ours / reference |" if has_ref else ""),
                      "|---|---|---|---|---|---|---|" + ("---|" if has_ref else "")]
            for r in rows:
                ref = r.get("ratio_ours_over_ref")
                lines.append(
                    f"| {r['label']} | {r.get('batch_size', '')} | {r['gflops_per_image']:.1f} | {r['achieved_tflops']:.3g} | "
                    f"{100 * r['frac_bf16_peak']:.1f} | {100 * r['frac_fp32_peak']:.1f} | {r['ours_images_per_s']:.0f} |"
                    + (f" {'–' if ref is None else f'{ref:.2f}'} |" if has_ref else ""))
        anchor = [r for r in rows if r.get("ratio_over_official_v100")]
        for r in anchor:
            lines += ["", f"{r['label']}: {r['ours_images_per_s']:.0f} images/s, {r['ratio_over_official_v100']:.1f}x the "
                          "official figure per V100."]
        lines.append("")
    for cal in sorted(results.glob("gpu-short-*/calibration.json")):
        c = json.loads(cal.read_text())
        m = c["measured"]
        lines += [f"## GPU edition: calibration ({cal.parent.name})", "",
                  f"`scripts/gpu_run.sh --calibrate` measured one epoch of each trainer on the GPU ({c['backbone']}, "
                  f"{100 * c['fraction']:.0f} % of the images, scaled): Barlow Twins {m['02']['epoch_s']:.1f} s, DINO "
                  f"{m['03']['epoch_s']:.1f} s, supervised {m['04']['epoch_s']:.1f} s per epoch of all 20,000 images "
                  f"(monitors included). With the budgets {c['shares_s']} s this gave {c['epochs']['02']} Barlow Twins "
                  f"epochs, {c['epochs']['03']:.1f} DINO epochs at equal FLOPs ({c['flops_per_image']['dino'] / 1e9:.1f} "
                  f"vs {c['flops_per_image']['bt'] / 1e9:.1f} GFLOP per image) and {c['epochs']['04']} supervised epochs.",
                  ""]
    out = book / "performance.md"
    out.write_text("\n".join(lines) + "\n")
    return out
