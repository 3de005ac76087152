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


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "rtsseg", "notebooks"], cwd=REPO_ROOT,
                               capture_output=True, text=True).stdout.strip()
        return (out.stdout.strip() or "unknown") + ("+dirty" if dirty else "")
    except OSError:
        return "unknown"


def notebook_params(namespace: dict, step: str) -> dict:
    """The values of ``step``'s declared parameters in ``namespace`` (a notebook's ``globals()``), validated.

    Raises :class:`rtsseg.pipeline.NotebookParameterError` when a value has the wrong type, so a bad
    ``papermill -p`` value fails at the top of the notebook with the parameter's name and the fix.
    """
    from rtsseg.pipeline import declared_parameters, read_notebook, validate_parameters
    from rtsseg.profiles import step as find_step

    s = find_step(step)
    declared = declared_parameters(read_notebook(s), s.source)
    values = {name: namespace[name] for name in declared}
    validate_parameters(s.source, declared, values)
    if "profile" in values and values["profile"] not in ("smoke", "cpu", "gpu"):
        from rtsseg.pipeline import NotebookParameterError

        raise NotebookParameterError(f"{s.source}: profile={values['profile']!r}. Fix: use smoke, cpu or gpu")
    return values


@dataclass
class RunRecord:
    """Start it after the parameters cell; ``finish()`` returns a one-row table for the notebook's end."""

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
        print("parameters:", json.dumps(self.params, default=str))
        return pd.DataFrame([row]).set_index("step")


def results_dir(profile: str):
    from rtsseg.profiles import run_dir

    out = run_dir(profile, "results")
    out.mkdir(parents=True, exist_ok=True)
    return out


def save_results(profile: str, name: str, table) -> None:
    """Keep a chapter's headline table (a DataFrame) for the summary chapter: ``runs/<profile>/results/<name>.csv``."""
    table.to_csv(results_dir(profile) / f"{name}.csv")


def read_results(profile: str) -> dict:
    import pandas as pd

    return {p.stem: pd.read_csv(p, index_col=0) for p in sorted(results_dir(profile).glob("*.csv"))}


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
