"""Run the notebooks of a profile with papermill, skip unchanged steps, and build the Jupyter Book.

Each step is a jupytext percent-format notebook ``notebooks/<step>.py`` with a cell tagged ``parameters``.
Its executed copy goes to ``book/<profile>/<step>.ipynb`` only when it succeeds (a failed run is kept under
``runs/<profile>/failed/`` so it never clobbers committed results). A step is skipped when its fingerprint
— notebook source, parameters, the ``rtsseg`` package source, the data root and its upstream steps'
fingerprints — equals the one recorded in its executed notebook and in ``runs/<profile>/done/``.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rtsseg.book import prepare_for_book, write_index
from rtsseg.config import REPO_ROOT, data_root
from rtsseg.profiles import BOOK, STEPS, Step, executed_notebook, run_dir, step_params

PACKAGE = REPO_ROOT / "rtsseg"
#: Orchestration only: they choose what runs, never what a step computes, so they are not part of a step's inputs.
NOT_INPUTS = ("cli.py", "pipeline.py")


class NotebookParameterError(ValueError):
    """A parameter passed to a notebook is unknown or of the wrong type."""


class StepFailed(RuntimeError):
    """A notebook raised; the message carries the notebook's own exception and where the run was kept."""


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


def validate_parameters(source: Path | str, declared: dict, params: dict) -> None:
    """Unknown names and wrong types are errors naming the notebook and the fix."""
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


# ---- fingerprints --------------------------------------------------------------------------------------

def package_digest() -> str:
    h = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).as_posix() in NOT_INPUTS:
            continue
        h.update(str(path.relative_to(PACKAGE)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def fingerprint(step: Step, params: dict, upstream: dict[str, str | None], pkg: str) -> str:
    blob = json.dumps(
        {
            "notebook": hashlib.sha256(step.source.read_bytes()).hexdigest(),
            "params": params,
            "package": pkg,
            "data_root": str(data_root(must_exist=False)),
            "upstream": upstream,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def recorded_fingerprint(profile: str, name: str) -> str | None:
    """The fingerprint of the last successful run, if its notebook and its run-dir marker agree."""
    import nbformat

    marker = run_dir(profile, "done", f"{name}.json")
    nb_path = executed_notebook(profile, name)
    if not (marker.is_file() and nb_path.is_file()):
        return None
    done = json.loads(marker.read_text())["fingerprint"]
    meta = nbformat.read(nb_path, as_version=4).metadata.get("rtsseg", {})
    return done if meta.get("fingerprint") == done else None


# ---- running ---------------------------------------------------------------------------------------------

@dataclass
class StepResult:
    name: str
    status: str  # "ran", "skipped"
    wall_s: float
    output: Path


def run_step(profile: str, step: Step, overrides: dict | None = None, force: bool = False,
             upstream: dict[str, str | None] | None = None, pkg: str | None = None) -> tuple[StepResult, str]:
    import nbformat
    import papermill

    nb = read_notebook(step)
    declared = declared_parameters(nb, step.source)
    params = {**step_params(profile, step.name), **(overrides or {})}
    validate_parameters(step.source, declared, params)
    fp = fingerprint(step, params, upstream or {}, pkg or package_digest())
    out = executed_notebook(profile, step.name)
    if not force and recorded_fingerprint(profile, step.name) == fp:
        return StepResult(step.name, "skipped", 0.0, out), fp

    _prefer_this_python_kernel()
    os.environ.setdefault("TQDM_MININTERVAL", "10")  # progress bars stream to the terminal, not every 0.1 s
    os.environ.setdefault("TQDM_DISABLE", "1")  # and none reaches the book (widgets need a CDN offline)
    failed = run_dir(profile, "failed", f"{step.name}.ipynb")
    failed.parent.mkdir(parents=True, exist_ok=True)
    print(f"[rtsseg] {profile}/{step.name}: running with {params}", flush=True)
    t0 = time.time()
    try:
        papermill.execute_notebook(
            nb, str(failed), parameters=params, kernel_name="python3", cwd=str(step.source.parent),
            progress_bar=True, log_output=True,
        )
    except papermill.PapermillExecutionError as err:
        raise StepFailed(
            f"step {step.name} (profile {profile}) failed: {err.ename}: {err.evalue}\n"
            f"The partly executed notebook is {failed}"
        ) from None
    wall = time.time() - t0
    executed = nbformat.read(failed, as_version=4)
    executed.metadata["rtsseg"] = {"fingerprint": fp, "profile": profile, "params": params, "wall_s": round(wall, 1)}
    prepare_for_book(executed, params)  # hidden code, parameters table, Colab cell, provenance (rtsseg/book.py)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".ipynb.tmp")
    nbformat.write(executed, tmp)
    os.replace(tmp, out)
    failed.unlink()
    marker = run_dir(profile, "done", f"{step.name}.json")
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"fingerprint": fp, "wall_s": round(wall, 1), "finished": time.time()}))
    return StepResult(step.name, "ran", wall, out), fp


def _prefer_this_python_kernel() -> None:
    """Make kernel ``python3`` this interpreter's (``make install`` registers it under ``sys.prefix``)."""
    here = Path(sys.prefix) / "share" / "jupyter"
    if (here / "kernels" / "python3").is_dir():
        paths = os.environ.get("JUPYTER_PATH", "")
        if str(here) not in paths.split(os.pathsep):
            os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(here), paths) if p)


def run_profile(profile: str, only: list[str] | None = None, force: bool = False,
                overrides: dict | None = None) -> list[StepResult]:
    """Run the profile's steps in order (or only the named ones, still in order)."""
    wanted = {s.name for s in STEPS} if not only else {_resolve(n) for n in only}
    overrides = overrides or {}
    declared = {s.name: declared_parameters(read_notebook(s), s.source) for s in STEPS if s.name in wanted}
    unused = set(overrides) - set().union(*declared.values())
    if unused:
        raise NotebookParameterError(
            f"override(s) {sorted(unused)} match no parameter of the steps {sorted(wanted)}. "
            f"Fix: use one of {sorted(set().union(*declared.values()))}"
        )
    pkg = package_digest()
    fps: dict[str, str | None] = {}
    results = []
    for step in STEPS:
        if step.name not in wanted:
            fps[step.name] = recorded_fingerprint(profile, step.name)
            continue
        upstream = {d: fps.get(d) for d in step.depends}
        mine = {k: v for k, v in overrides.items() if k in declared[step.name]}
        result, fps[step.name] = run_step(profile, step, mine, force, upstream, pkg)
        print(f"[rtsseg] {profile}/{step.name}: {result.status} ({result.wall_s:.0f} s) -> {result.output}", flush=True)
        results.append(result)
    return results


def _resolve(name: str) -> str:
    from rtsseg.profiles import step

    return step(Path(name).stem).name


# ---- the book --------------------------------------------------------------------------------------------

def toc_for(profile: str) -> Path:
    """The committed ``_toc.yml`` shows the cpu profile; other profiles get a copy pointing at their folder."""
    toc = REPO_ROOT / "_toc.yml"
    if profile == "cpu":
        return toc
    text = toc.read_text().replace("book/cpu/", f"book/{profile}/")
    out = run_dir(profile, "_toc.yml")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out


def build_book(profile: str) -> Path:
    missing = [s.name for s in STEPS if not executed_notebook(profile, s.name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"profile {profile!r} has no executed notebook for {missing} under {BOOK / profile}. "
            f"Fix: run `rtsseg run --profile {profile}` first"
        )
    write_index(profile)  # book/<profile>/index.md: the landing page, glued from the executed notebooks
    cmd = [
        sys.executable, "-m", "jupyter_book", "build", str(REPO_ROOT), "--path-output", str(BOOK),
        "--toc", str(toc_for(profile)), "--config", str(REPO_ROOT / "_config.yml"),
    ]
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent))
    if jb:
        cmd = [jb, *cmd[3:]]
    subprocess.run(cmd, check=True)
    index = BOOK / "_build" / "html" / "index.html"
    print(f"[rtsseg] book: {index}")
    return index
