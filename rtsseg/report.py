"""What every notebook records beside its results: parameters, seeds, profile, wall time, machine."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field

import torch

from rtsseg.config import REPO_ROOT


#: Paths whose changes do not make a run's inputs differ from its commit: the executed outputs themselves
#: (a profile run writes book/<profile>/ while it runs) and git-ignored run folders.
_NOT_SOURCES = ("book", "runs")


def _git_commit() -> str:
    """The commit the code ran from, ``+dirty`` when any tracked or untracked (not ignored) file outside
    ``book/`` differs from it; outside a git checkout (a pip install from git) the commit pip recorded."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
        if head.returncode == 0 and head.stdout.strip():
            status = subprocess.run(
                ["git", "status", "--porcelain", "--", ".", *(f":(exclude){p}" for p in _NOT_SOURCES)],
                cwd=REPO_ROOT, capture_output=True, text=True,
            )
            dirty = status.returncode != 0 or bool(status.stdout.strip())
            return head.stdout.strip() + ("+dirty" if dirty else "")
    except OSError:
        pass
    return _installed_commit() or "unknown"


def _installed_commit() -> str | None:
    """``pip install "rtsseg @ git+URL@COMMIT"`` records the commit in the distribution's direct_url.json."""
    from importlib import metadata

    try:
        info = json.loads(metadata.distribution("rtsseg").read_text("direct_url.json") or "{}")
    except metadata.PackageNotFoundError:
        return None
    commit = info.get("vcs_info", {}).get("commit_id")
    return commit[:12] if commit else None


def notebook_params(namespace: dict, step: str) -> dict:
    """The values of ``step``'s declared parameters in ``namespace`` (a notebook's ``globals()``), validated.

    Raises :class:`rtsseg.pipeline.NotebookParameterError` when a value has the wrong type, so a bad
    ``papermill -p`` value fails at the top of the notebook with the parameter's name and the fix.
    """
    from rtsseg.pipeline import declared_parameters, read_notebook, validate_parameters
    from rtsseg.profiles import step as find_step

    s = find_step(step)
    if s.source.is_file():
        declared = declared_parameters(read_notebook(s), s.source)
    else:  # rtsseg installed without its notebooks (Colab): the names the profiles set, as the notebook has them
        from rtsseg.profiles import PROFILES

        names = {"profile", "seed", "seeds", "data_root"}.union(*(p.get(s.name, {}) for p in PROFILES.values()))
        declared = {n: None for n in sorted(names) if n in namespace}
    values = {name: namespace[name] for name in declared}
    validate_parameters(s.source, declared, values)
    if "profile" in values and values["profile"] not in ("smoke", "cpu", "gpu"):
        from rtsseg.pipeline import NotebookParameterError

        raise NotebookParameterError(f"{s.source}: profile={values['profile']!r}. Fix: use smoke, cpu or gpu")
    return values


@dataclass
class RunRecord:
    """Start it after the parameters cell; ``finish()`` returns the record (one column: field -> value) for the
    notebook's end. The parameters themselves are shown at the top of the page (rtsseg.book.prepare_for_book)."""

    step: str
    params: dict
    start: float = field(default_factory=time.time)

    def finish(self):
        import pandas as pd

        wall = time.time() - self.start
        row = {
            "step": self.step,
            "profile": self.params.get("profile"),
            "seeds": self.params.get("seeds", self.params.get("seed")),
            "wall time (min)": round(wall / 60, 2),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU x{os.cpu_count()}",
            "torch threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "commit": _git_commit(),
        }
        # one column, one field per row: fits the page (the one-row form was wider than the text column)
        table = pd.DataFrame([row]).set_index("step").T
        table.index.name = "run record"
        return table


def results_dir(profile: str):
    from rtsseg.profiles import run_dir

    out = run_dir(profile, "results")
    out.mkdir(parents=True, exist_ok=True)
    return out


def save_results(profile: str, name: str, table) -> None:
    """Keep a chapter's headline table (a DataFrame) for the findings chapter: ``runs/<profile>/results/<name>.json``
    (exact: multi-level index and columns, their names, the cell values) and ``<name>.csv`` beside it for people.
    """
    out = results_dir(profile)
    table.to_csv(out / f"{name}.csv")
    (out / f"{name}.json").write_text(json.dumps(_table_to_dict(table), default=str, indent=1))


def _labels(index) -> list:
    return [list(v) if isinstance(v, tuple) else v for v in index.tolist()]


def _table_to_dict(table) -> dict:
    return {
        "index_names": list(table.index.names), "column_names": list(table.columns.names),
        "index": _labels(table.index), "columns": _labels(table.columns),
        "data": table.astype(object).where(table.notna(), None).values.tolist(),
    }


def _table_from_dict(d: dict):
    import pandas as pd

    def make(labels, names):
        if len(names) > 1:
            return pd.MultiIndex.from_tuples([tuple(v) for v in labels], names=names)
        return pd.Index(labels, name=names[0])

    table = pd.DataFrame(d["data"], index=make(d["index"], d["index_names"]),
                         columns=make(d["columns"], d["column_names"]))
    return table.infer_objects()


def read_results(profile: str) -> dict:
    """name -> the table exactly as the chapter saved it (older CSV-only results are read as flat tables)."""
    import pandas as pd

    out = {}
    for p in sorted(results_dir(profile).glob("*.csv")):
        js = p.with_suffix(".json")
        out[p.stem] = _table_from_dict(json.loads(js.read_text())) if js.is_file() else pd.read_csv(p, index_col=0)
    return out


def compute_budget(profile: str, steps: list[str]):
    """Wall time of each executed step, from papermill's per-cell durations in ``book/<profile>/<step>.ipynb``."""
    import nbformat
    import pandas as pd

    from rtsseg.profiles import executed_notebook

    rows = []
    for name in steps:
        path = executed_notebook(profile, name)
        if not path.is_file():
            rows.append({"step": name, "wall time (min)": float("nan"), "executed": "missing"})
            continue
        nb = nbformat.read(path, as_version=4)
        pm = nb.metadata.get("papermill", {})
        rows.append(
            {
                "step": name,
                "wall time (min)": round((pm.get("duration") or 0.0) / 60, 2),
                "executed": (pm.get("end_time") or "")[:19],
                "parameters": json.dumps(nb.metadata.get("rtsseg", {}).get("params", {}), default=str),
            }
        )
    table = pd.DataFrame(rows).set_index("step")
    table.loc["total", "wall time (min)"] = table["wall time (min)"].sum()
    return table
