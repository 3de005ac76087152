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
    ``book/`` differs from it; outside a git checkout (a pip install from git) the commit pip recorded.

    ``$RTSSEG_COMMIT`` wins when set: a machine that receives a copy of the working tree without its history
    (the GPU machine of ``scripts/gpu_run.sh``, whose copy carries a stale ``.git``) is told the commit the
    copy was made from by the caller, who checked that the tree was clean."""
    if os.environ.get("RTSSEG_COMMIT"):
        return os.environ["RTSSEG_COMMIT"]
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


#: Papermill writes the injected cell as this comment followed by one assignment per parameter.
_INJECTED_MARKER = "# Parameters"


def injected_parameters(namespace: dict) -> list[str]:
    """Names assigned by papermill's injected cell (tagged ``injected-parameters``) in this kernel, in order.

    The kernel never sees cell tags, but IPython keeps every executed cell's source in ``In``; papermill's
    injected cell is the one that starts with ``# Parameters`` (its translator's comment). The last such cell
    counts. Outside IPython (a plain script) or without papermill, returns [].
    """
    import ast

    history = namespace.get("In")
    if not isinstance(history, list):
        try:
            history = get_ipython().user_ns.get("In", [])  # noqa: F821 (only defined inside IPython)
        except NameError:
            return []
    for source in reversed(history or []):
        if isinstance(source, str) and source.lstrip().startswith(_INJECTED_MARKER):
            try:
                tree = ast.parse(source)
            except SyntaxError:
                return []
            return [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                    if isinstance(t, ast.Name)]
    return []


def parameters_cell_defaults(namespace: dict) -> dict | None:
    """The parameters cell's literal values, read back from IPython's ``In`` history: the last cell before
    papermill's injected cell (``# Parameters``) whose statements are all literal assignments. None when there is
    no such history (a plain script, a kernel without papermill's cell).

    Used where the notebook sources are not installed (``pip install rtsseg`` on Colab): the injected cell has
    overwritten the defaults of the names it sets, and another profile needs them back."""
    import ast

    history = namespace.get("In")
    if not isinstance(history, list):
        return None
    marks = [i for i, src in enumerate(history) if isinstance(src, str) and src.lstrip().startswith(_INJECTED_MARKER)]
    if not marks:
        return None
    for source in reversed(history[: marks[-1]]):
        if not isinstance(source, str) or not source.strip():
            continue
        try:
            body = ast.parse(source).body
            values = {node.targets[0].id: ast.literal_eval(node.value) for node in body if isinstance(node, ast.Assign)
                      and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)}
        except (SyntaxError, ValueError):
            continue
        if body and len(values) == len(body):
            return values
    return None


def notebook_params(namespace: dict, step: str) -> dict:
    """The values of ``step``'s declared parameters, validated, *applied* to ``namespace`` (a notebook's
    ``globals()``) and returned.

    The profile is ``$RTSSEG_PROFILE`` when set (the Colab cell's ``RTSSEG_PROFILE = "smoke"`` line sets it;
    ``rtsseg run --profile P`` sets it to P), else the notebook's ``profile`` parameter. Its values
    (:data:`rtsseg.profiles.PROFILES`, over the parameters cell's defaults) replace the notebook's globals,
    so "Run all" of an executed book notebook whose injected cell says ``profile = "cpu"`` runs at the chosen
    profile's sizes, not only in its runs folder. Values injected by papermill that are not the injected profile's
    own (``papermill -p epochs 3``, ``rtsseg run -p``) win over the profile (:func:`rtsseg.params.explicit_overrides`).

    Fails at the top of the notebook, with the parameter's name and the fix, when papermill injected a name
    the parameters cell does not declare (``papermill -p n_example 3``: plain papermill only warns), when a
    value has the wrong type or is out of range, or when the profile is not one of :data:`PROFILES`.
    """
    from rtsseg.params import (NotebookParameterError, declared_parameters, explicit_overrides, profile_values,
                               read_notebook, selected_profile, validate_parameters)
    from rtsseg.profiles import PROFILES
    from rtsseg.profiles import step as find_step

    s = find_step(step)
    if s.source.is_file():
        declared = declared_parameters(read_notebook(s), s.source)
    else:  # rtsseg installed without its notebooks (Colab): the parameters cell, read back from the history
        declared = parameters_cell_defaults(namespace)
        if declared is None:  # no history: the names the profiles set, with the values the notebook holds
            names = {"profile", "seed", "seeds", "data_root"}.union(*(p.get(s.name, {}) for p in PROFILES.values()))
            declared = {n: namespace[n] for n in sorted(names) if n in namespace}
    injected_names = injected_parameters(namespace)
    unknown = [name for name in injected_names if name not in declared]
    if unknown:
        raise NotebookParameterError(
            f"{s.source.name}: unknown parameter(s) {unknown}. Fix: use one of {sorted(declared)}"
        )
    injected = {name: namespace[name] for name in injected_names if name in namespace}
    current = {name: namespace[name] for name in declared if name in namespace}
    profile, where = selected_profile(current.get("profile"))
    if "profile" not in declared or profile is None:  # a notebook without a profile: its values as they are
        values = current
    else:
        if profile not in PROFILES:
            raise NotebookParameterError(
                f"{s.source.name}: profile={profile!r} (from {where}). Fix: use one of {list(PROFILES)}"
            )
        # explicit: injected values that are not the injected profile's, and values a cell changed after the
        # parameters cell (or an edited parameters cell, where the sources hold the defaults to compare with)
        edited = {k: v for k, v in current.items() if k not in injected and k != "profile" and v != declared[k]}
        overrides = {**edited, **explicit_overrides(s.name, injected)}
        values = profile_values(s.name, declared, profile, overrides)
        changed = {k: v for k, v in values.items() if k in current and current[k] != v and k != "profile"}
        if changed or profile != current.get("profile"):
            print(f"[rtsseg] {s.name}: profile {profile!r} (from {where}) applied: "
                  + ", ".join(f"{k}={v!r}" for k, v in changed.items())
                  + (f"; kept explicit {sorted(overrides)}" if overrides else ""), flush=True)
    validate_parameters(s.source, declared, values)
    namespace.update(values)
    return values


def config_from(cls, params: dict, **extra):
    """A trainer config ``cls`` (a dataclass) filled from a notebook's ``params``: every field whose name is a
    parameter takes its value, ``extra`` (per-run values: ``backbone=``, ``seed=``, paths) wins over both.

    Values are checked against the field's annotation (lists become tuples where the field is a tuple), so a
    wrong type fails here with the field's name, not deep inside training. Unknown ``extra`` names fail too.
    Fields that are no parameter keep the config's own default.
    """
    import dataclasses
    import typing

    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"config_from: {cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    bad = sorted(set(extra) - names)
    if bad:
        raise TypeError(f"config_from: {cls.__name__} has no field(s) {bad}. Fix: use one of {sorted(names)}")
    values = {**{k: v for k, v in params.items() if k in names}, **extra}
    for name, value in values.items():
        ok, converted = _conform(value, hints[name])
        if not ok:
            raise TypeError(
                f"{cls.__name__}.{name} = {value!r} ({type(value).__name__}) does not match its type {hints[name]}. "
                f"Fix: pass a value of that type (parameter {name!r})"
            )
        values[name] = converted
    return cls(**values)


def _conform(value, hint) -> tuple[bool, object]:
    """(does ``value`` fit the annotation ``hint``, the value converted: list -> tuple for tuple fields)."""
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any:
        return True, value
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            ok, converted = _conform(value, arg)
            if ok:
                return True, converted
        return False, value
    if hint is type(None):
        return value is None, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool), value
    if origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return False, value
        items = args[:1] * len(value) if (origin is list or (len(args) == 2 and args[1] is Ellipsis)) else args
        if args and len(items) != len(value):
            return False, value
        converted = []
        for item, arg in zip(value, items) if args else ((v, typing.Any) for v in value):
            ok, c = _conform(item, arg)
            if not ok:
                return False, value
            converted.append(c)
        return True, origin(converted)
    if isinstance(hint, type):
        return isinstance(value, hint), value
    return True, value


#: Glue name of a chapter's runs (``{"trained": {key: identity}, "analysed": {key: identity}, "published": {key:
#: source}}``, JSON): read by
#: ``rtsseg book`` to refuse a book whose analysis chapters analysed other runs than its training chapters trained.
RUNS_GLUE = "rtsseg_runs"


def run_key(init: str, backbone: str, seed: int) -> str:
    """``"barlow twins/vit_small64/0"``: one trained initialisation of one backbone and seed."""
    return f"{init}/{backbone}/{int(seed)}"


def trained_runs_path(profile: str, step: str):
    """``runs/<profile>/results/trained_<step>.json``: the run identities the last execution of training chapter
    ``step`` trained, read by the analysis chapters (:func:`rtsseg.experiments.checkpoint_path`)."""
    return results_dir(profile) / f"trained_{step}.json"


def write_trained_runs(profile: str, step: str, runs: dict[str, str]) -> None:
    """Atomically (re)write the runs record of training chapter ``step``."""
    path = trained_runs_path(profile, step)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"step": step, "runs": dict(sorted(runs.items()))}, indent=1))
    os.replace(tmp, path)


def read_trained_runs(profile: str, step: str) -> dict[str, str]:
    """``run_key -> identity`` of training chapter ``step`` (empty when it has not run)."""
    path = trained_runs_path(profile, step)
    return json.loads(path.read_text())["runs"] if path.is_file() else {}


@dataclass
class RunRecord:
    """Start it after the parameters cell; ``finish()`` returns the record (one column: field -> value) for the
    notebook's end. The parameters themselves are shown at the top of the page (rtsseg.book.prepare_for_book).

    A training chapter names each run it trained (:meth:`trained`); ``finish()`` writes them to the profile's
    runs record (:func:`write_trained_runs`), which the analysis chapters load from. An analysis chapter names
    each run it analysed (:meth:`analysed`; :func:`rtsseg.experiments.iter_models` does it). Both are glued
    (:data:`RUNS_GLUE`) so that ``rtsseg book`` can check that they agree."""

    step: str
    params: dict
    start: float = field(default_factory=time.time)
    runs: dict = field(default_factory=lambda: {"trained": {}, "analysed": {}, "published": {}})
    precisions: set = field(default_factory=set)

    def trained(self, init: str, backbone: str, seed: int, run_dir) -> None:
        """This chapter trained ``init`` of ``backbone`` with ``seed`` in the run folder ``run_dir``."""
        from pathlib import Path

        self.runs["trained"][run_key(init, backbone, seed)] = Path(run_dir).name
        config = Path(run_dir) / "config.json"  # the precision the run trained in is part of its identity
        if config.is_file():
            self.precisions.add(json.loads(config.read_text())["config"].get("precision", "not recorded"))

    def analysed(self, init: str, backbone: str, seed: int, run_dir) -> None:
        """This chapter analysed the run in ``run_dir`` as ``init`` of ``backbone`` with ``seed``."""
        from pathlib import Path

        self.runs["analysed"][run_key(init, backbone, seed)] = Path(run_dir).name

    def published(self, init: str, backbone: str, source: str) -> None:
        """This chapter analysed published weights (``rtsseg.experiments.iter_published``) as ``init`` of
        ``backbone``; ``source`` names them (a file with its sha256, a URL, timm's tag). No training chapter
        trained them, so ``rtsseg book`` does not compare them with a runs record."""
        self.runs["published"][run_key(init, backbone, 0)] = source

    def finish(self):
        import pandas as pd

        from rtsseg.glue import GluedText, glue

        if self.runs["trained"]:
            write_trained_runs(self.params.get("profile"), self.step, self.runs["trained"])
        if any(self.runs.values()):
            glue(RUNS_GLUE, GluedText(json.dumps(self.runs, sort_keys=True)), display=False)
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
        if self.precisions:
            row["precision"] = ", ".join(sorted(self.precisions))
        for kind, label in (("trained", "runs trained"), ("analysed", "runs analysed"),
                            ("published", "published weights")):  # the identities are glued (RUNS_GLUE), not shown
            if self.runs[kind]:
                row[label] = len(self.runs[kind])
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
