"""Run the notebooks of a profile with papermill, skip unchanged steps, and build the Jupyter Book.

Each step is a jupytext percent-format notebook ``notebooks/<step>.py`` with a cell tagged ``parameters``.
Its executed copy goes to ``book/<profile>/<step>.ipynb`` only when it succeeds; while it runs it is written to
``runs/<profile>/running/`` and a failed run is moved to ``runs/<profile>/failed/``, so it never clobbers
committed results. A step is skipped when its fingerprint — notebook source, parameters, the ``rtsseg``
package source, the data root and its upstream steps' fingerprints — equals the one recorded in its executed
notebook and in ``runs/<profile>/done/``. One ``rtsseg run`` per profile at a time (``runs/<profile>/.lock``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rtsseg.book import prepare_for_book
from rtsseg.bookpages import write_index, write_performance, write_reproduce
from rtsseg.config import REPO_ROOT, data_root
from rtsseg.params import NotebookParameterError, declared_parameters, read_notebook, validate_parameters
from rtsseg.profiles import BOOK, PROFILES, STEPS, Step, executed_notebook, run_dir, step_params

PACKAGE = REPO_ROOT / "rtsseg"
#: Orchestration and the pages only the build writes (landing pages, performance appendix): they choose what runs
#: or how the book shows it, never what a step computes, so they are not part of a step's inputs. No notebook and no
#: input module imports them (tests/test_pipeline_inputs.py).
NOT_INPUTS = ("cli.py", "pipeline.py", "bookpages.py", "sphinx_tables.py")


class StepFailed(RuntimeError):
    """A notebook raised; the message carries the notebook's own exception and where the run was kept."""


class RunRefused(RuntimeError):
    """The run cannot start or the book cannot be built as asked; the message names the parameter or path and
    the fix (the CLI prints it as one line and exits with status 2)."""


# ---- before anything runs ------------------------------------------------------------------------------

def needs_cuda(profile: str) -> bool:
    """The full-size profiles (``gpu`` and its variants such as ``gpu-short``) take days per run on a CPU."""
    return profile.split("-", 1)[0] == "gpu"


def preflight(profile: str, allow_cpu: bool = False) -> None:
    """Refuse at once, with the fix, what would fail late or run for days: an unknown profile, a gpu profile on
    a machine without CUDA, a runs folder that cannot be written."""
    if profile not in PROFILES:
        raise RunRefused(f"unknown profile {profile!r}. Fix: use one of {list(PROFILES)}")
    if needs_cuda(profile) and not allow_cpu:
        import torch

        if not torch.cuda.is_available():
            # what the profile trains, from the profile itself (and the notebook's defaults for what it leaves
            # out), so that the sentence stays true per profile: gpu-short is not the full-size configuration
            step = _step("02_pretrain_barlow_twins")  # the training the other chapters follow
            trains = {**declared_parameters(read_notebook(step), step.source), **PROFILES[profile][step.name]}
            seeds = len(trains["seeds"])
            what = (f"{', '.join(trains['backbones'])} at {trains['image_size']} px, {trains['epochs']} epochs, "
                    f"{seeds} seed{'s' * (seeds != 1)}")
            cost = {
                "gpu": "is the full-size configuration, about 9.5 days per backbone and seed on a CPU",
                # benchmarks/NOTES.md: ViT-S/8 @ 64 px is 17.1 GFLOP per image and step, 7.8x vit_small64's 2.2,
                # whose Barlow Twins epoch takes ~4.1 min on 2 cores: chapters 02-04 ~ 5 days there
                "gpu-short": "is sized for about 8 minutes of one H100, about 5 days on 2 CPU cores",
            }.get(profile, "is sized for a CUDA GPU")
            raise RunRefused(
                f"profile {profile!r} ({what}) {cost}; this machine has no CUDA GPU. "
                f"Fix: --profile cpu, or --allow-cpu to run it anyway"
            )
    try:
        runs = run_dir(profile)  # creates the runs root
    except OSError as err:
        raise RunRefused(
            f"cannot write to {err.filename} ({err.strerror}). Fix: make it writable, or set RTSSEG_RUNS to a "
            f"writable folder"
        ) from None
    check_writable(runs)
    check_writable(executed_notebook(profile, "x").parent)


def check_writable(folder: Path) -> None:
    """Create ``folder`` and write a probe file in it, or refuse naming the folder and the fix."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise RunRefused(
            f"cannot write to {folder} ({err.strerror or err}). Fix: make it writable, or set RTSSEG_RUNS to a "
            f"writable folder"
        ) from None


@contextlib.contextmanager
def profile_lock(profile: str):
    """Hold ``runs/<profile>/.lock`` (``fcntl.flock``) while a run of ``profile`` goes on; a second run of the same
    profile fails at once naming the first one's pid. The kernel drops the lock when its process dies."""
    path = run_dir(profile, ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            handle.seek(0)
            pid = handle.read().strip() or "?"
            raise RunRefused(
                f"another run (pid {pid}) is using {path}. Fix: wait for it to finish (or stop that process)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield path
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def clear_step_runs(profile: str, name: str) -> list[Path]:
    """``--force``: delete the run folders (checkpoints, histories) that step ``name`` of ``profile`` wrote, so
    that it trains again instead of resuming. Only folders inside the profile's runs folder are removed."""
    from rtsseg.experiments import step_run_parents

    root = run_dir(profile).resolve()
    removed = []
    for parent in step_run_parents(profile, name):
        parent = Path(parent)
        if not parent.exists():
            continue
        if root not in parent.resolve().parents:
            raise RunRefused(f"--force: {parent} is outside {root}; not removed. Fix: remove it by hand")
        shutil.rmtree(parent)
        removed.append(parent)
        print(f"[rtsseg] --force: removed {parent}", flush=True)
    return removed


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
    from rtsseg.report import read_trained_runs

    # the runs an analysis step will load are an input: after a papermill run of chapter 2 rewrote its runs
    # record, chapter 5 is not "unchanged"; once the record is restored from the book it is again
    runs_in = {d: read_trained_runs(profile, d) for d in step.depends}
    fp = fingerprint(step, {**params, **({"_trained_runs": runs_in} if any(runs_in.values()) else {})},
                     upstream or {}, pkg or package_digest())
    out = executed_notebook(profile, step.name)
    if not force and recorded_fingerprint(profile, step.name) == fp:
        restore_trained_runs(profile, step.name)
        return StepResult(step.name, "skipped", 0.0, out), fp

    _prefer_this_python_kernel()
    os.environ.setdefault("TQDM_MININTERVAL", "10")  # progress bars stream to the terminal, not every 0.1 s
    running = run_dir(profile, "running", f"{step.name}.ipynb")
    os.environ.setdefault("TQDM_DISABLE", "1")  # and none reaches the book (widgets need a CDN offline)
    failed = run_dir(profile, "failed", f"{step.name}.ipynb")
    running.parent.mkdir(parents=True, exist_ok=True)
    print(f"[rtsseg] {profile}/{step.name}: running with {params}", flush=True)
    t0 = time.time()
    shell_profile = os.environ.get("RTSSEG_PROFILE")  # the kernel runs --profile, whatever the shell exported
    os.environ["RTSSEG_PROFILE"] = profile  # (rtsseg.report.notebook_params: $RTSSEG_PROFILE wins)
    try:
        papermill.execute_notebook(
            nb, str(running), parameters=params, kernel_name="python3", cwd=str(step.source.parent),
            progress_bar=True, log_output=True,
        )
    except BaseException as err:  # the notebook raised, or the run was interrupted: keep it as failed
        if running.is_file():
            failed.parent.mkdir(parents=True, exist_ok=True)
            os.replace(running, failed)
        if isinstance(err, papermill.PapermillExecutionError):
            raise StepFailed(
                f"step {step.name} (profile {profile}) failed: {err.ename}: {err.evalue}\n"
                f"The partly executed notebook is {failed}"
            ) from None
        raise
    finally:
        if shell_profile is None:
            os.environ.pop("RTSSEG_PROFILE", None)
        else:
            os.environ["RTSSEG_PROFILE"] = shell_profile
    wall = time.time() - t0
    executed = nbformat.read(running, as_version=4)
    # the values the step ran with: the notebook's defaults under the profile's and the command line's (the page's
    # parameters table and the run record show all of them, not only what was injected)
    values = {**declared, **params}
    executed.metadata["rtsseg"] = {"fingerprint": fp, "profile": profile, "params": values, "injected": params,
                                   "wall_s": round(wall, 1), "upstream": upstream or {}}
    trained = _glued_runs(executed).get("trained") or {}
    if trained:  # a run found finished under the same identity is loaded, not trained again: its time is here
        executed.metadata["rtsseg"]["training_s"] = round(training_seconds(profile, trained), 1)
    prepare_for_book(executed, values)  # hidden code, parameters table, Colab cell, provenance (rtsseg/book.py)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".ipynb.tmp")
    nbformat.write(executed, tmp)
    os.replace(tmp, out)
    running.unlink()
    failed.unlink(missing_ok=True)  # an earlier failure of this step is superseded
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
                overrides: dict | None = None, allow_cpu: bool = False) -> list[StepResult]:
    """Run the profile's steps in order (or only the named ones, still in order), holding the profile's lock.

    ``force`` clears the runs of the wanted steps (:func:`clear_step_runs`) and reruns them.
    """
    wanted = {s.name for s in STEPS} if not only else {_resolve(n) for n in only}
    preflight(profile, allow_cpu)
    overrides = overrides or {}
    declared = {s.name: declared_parameters(read_notebook(s), s.source) for s in STEPS if s.name in wanted}
    from rtsseg.params import override_reach

    reach = override_reach(declared, overrides)  # refuses an override no selected step declares
    for name in declared:  # profile values and overrides are checked before the first step runs
        params = {**step_params(profile, name), **{k: v for k, v in overrides.items() if k in declared[name]}}
        validate_parameters(_step(name).source, declared[name], params)
    for key, steps in reach.items():  # an override reaches every selected step that declares it: say which
        print(f"[rtsseg] -p {key}={overrides[key]!r} applies to {', '.join(steps)}", flush=True)
    with profile_lock(profile):
        pkg = package_digest()
        fps: dict[str, str | None] = {}
        results = []
        for step in STEPS:
            if step.name not in wanted:
                fps[step.name] = recorded_fingerprint(profile, step.name)
                continue
            if force:
                clear_step_runs(profile, step.name)
            upstream = {d: fps.get(d) for d in step.depends}
            mine = {k: v for k, v in overrides.items() if k in declared[step.name]}
            result, fps[step.name] = run_step(profile, step, mine, force, upstream, pkg)
            print(f"[rtsseg] {profile}/{step.name}: {result.status} ({result.wall_s:.0f} s) -> {result.output}",
                  flush=True)
            results.append(result)
    return results


def _step(name: str) -> Step:
    return next(s for s in STEPS if s.name == name)


def _resolve(name: str) -> str:
    """A step's full name from its name, number (``02``) or notebook path; unknown names are refused."""
    from rtsseg.profiles import step

    stem = Path(name).stem
    try:
        return step(f"{int(stem):02d}" if stem.isdigit() else stem).name
    except KeyError:
        raise RunRefused(f"unknown step {name!r}. Fix: use one of {[s.name for s in STEPS]} (or their numbers)") from None


# ---- the book --------------------------------------------------------------------------------------------

#: Editions shown after the cpu edition once one of their notebooks is executed: profile -> part caption.
EXTRA_EDITIONS = {"gpu-short": "GPU edition (gpu-short: ViT-S/8 at 64 px, one H100, about 8 minutes)"}


def extra_editions() -> list[str]:
    """The editions of :data:`EXTRA_EDITIONS` with at least one executed notebook in ``book/<profile>/``."""
    return [p for p in EXTRA_EDITIONS if any(executed_notebook(p, s.name).is_file() for s in STEPS)]


def toc_for(profile: str, partial: bool = False) -> Path:
    """The committed ``_toc.yml`` shows the cpu profile; other profiles get a copy pointing at their folder.
    The cpu book also gets a part per edition of :func:`extra_editions`: its landing page, then its executed
    chapters (a chapter it has not executed is left out; its landing page names it).
    ``partial``: chapters without an executed notebook are left out (the landing page names them)."""
    toc = REPO_ROOT / "_toc.yml"
    text = toc.read_text()
    if profile == "cpu":
        extra = extra_editions()
        if not extra and not partial:
            return toc
        text = _with_editions(text, extra) if extra else text
    else:
        text = text.replace("book/cpu/", f"book/{profile}/")
    if partial:
        missing = [f"book/{profile}/{s.name}" for s in STEPS if not executed_notebook(profile, s.name).is_file()]
        text = "\n".join(line for line in text.splitlines() if line.split("file: ")[-1].strip() not in missing) + "\n"
    out = run_dir(profile, "_toc.yml")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out


def book_output(profile: str) -> Path:
    """Where the HTML of a profile goes: ``book/_build/html`` for cpu (the book ``make book`` builds), else
    ``runs/<profile>/book/_build/html``, so a smoke or gpu build never overwrites the cpu book."""
    return BOOK if profile == "cpu" else run_dir(profile, "book")


def stale_chapters(profile: str) -> list[tuple[str, str, str]]:
    """``(chapter, upstream chapter, why)`` for every executed chapter computed from something other than the
    upstream chapter now in ``book/<profile>/``: its recorded upstream fingerprint differs, or (notebooks run
    before fingerprints of upstream steps were recorded) it finished before its upstream chapter did."""
    import nbformat

    meta = {}
    for s in STEPS:
        path = executed_notebook(profile, s.name)
        if path.is_file():
            nb = nbformat.read(path, as_version=4).metadata
            meta[s.name] = (nb.get("rtsseg", {}), nb.get("papermill", {}).get("end_time") or "")
    stale = []
    for s in STEPS:
        if s.name not in meta:
            continue
        mine, end = meta[s.name]
        recorded = mine.get("upstream")
        for dep in s.depends:
            if dep not in meta:
                continue
            theirs, dep_end = meta[dep]
            if recorded is not None and dep in recorded:
                if recorded[dep] != theirs.get("fingerprint"):
                    stale.append((s.name, dep, f"it used {dep} {recorded[dep]}, the book holds {theirs.get('fingerprint')}"))
            elif end and dep_end and dep_end > end:
                stale.append((s.name, dep, f"it finished at {end[:19]}, before {dep} ({dep_end[:19]})"))
    return stale


def _book_runs(profile: str, name: str) -> dict | None:
    """The runs an executed chapter glued (``{"trained": {...}, "analysed": {...}}``), or None when it glued none
    (a chapter that trains and analyses nothing, or one executed before chapters recorded their runs)."""
    import nbformat

    path = executed_notebook(profile, name)
    if not path.is_file():
        return None
    return _glued_runs(nbformat.read(path, as_version=4)) or None


def _glued_runs(nb) -> dict:
    from rtsseg.glue import glued_json
    from rtsseg.report import RUNS_GLUE

    return glued_json(nb, RUNS_GLUE) or {}


def training_seconds(profile: str, trained: dict) -> float:
    """Seconds the runs ``trained`` (``{run key: identity}``, a training chapter's runs record) took to train: the
    last ``wall_s`` of each run's history.csv (resumes included), whether this execution trained them or found
    them finished under the same identity and loaded them."""
    import csv

    from rtsseg.experiments import run_parent

    total = 0.0
    for key, ident in trained.items():
        init, backbone, seed = key.rsplit("/", 2)
        history = run_parent(profile, init, backbone, int(seed)) / ident / "history.csv"
        if not history.is_file():
            raise FileNotFoundError(f"{history}: the run {key} has no history. Fix: train it again (rtsseg run)")
        with open(history, newline="") as f:
            rows = list(csv.DictReader(f))
        total += float(rows[-1]["wall_s"]) if rows else 0.0
    return total


def restore_trained_runs(profile: str, name: str) -> None:
    """A training chapter skipped as unchanged stands for the runs its executed notebook in the book trained:
    rewrite the profile's runs record from that notebook, so that an analysis chapter run next analyses those
    runs, whatever a papermill run of the chapter outside ``rtsseg run`` wrote into the runs folder meanwhile."""
    from rtsseg.report import read_trained_runs, write_trained_runs

    runs = (_book_runs(profile, name) or {}).get("trained")
    if runs and read_trained_runs(profile, name) != runs:
        write_trained_runs(profile, name, runs)
        print(f"[rtsseg] {profile}/{name}: runs record restored from the book's executed chapter", flush=True)


def run_mismatches(profile: str) -> list[tuple[str, str, str]]:
    """``(analysis chapter, training chapter, why)`` for every run an executed analysis chapter analysed that is
    not the run the book's training chapter trained for the same initialisation, backbone and seed (e.g. chapter
    2 run again by papermill with other parameters into the same runs folder, then chapter 5 rerun)."""
    from rtsseg.experiments import TRAINED

    trained_by = {init: step for init, (_, step) in TRAINED.items()}
    runs = {s.name: _book_runs(profile, s.name) for s in STEPS if executed_notebook(profile, s.name).is_file()}
    out = []
    for name, mine in runs.items():
        for key, ident in sorted(((mine or {}).get("analysed") or {}).items()):
            init = key.split("/", 1)[0]
            source = trained_by.get(init)
            theirs = ((runs.get(source) or {}).get("trained") or {}).get(key)
            if theirs != ident:
                told = f"trained {theirs}" if theirs else "trained no such run"
                out.append((name, source or "?", f"{name} analysed {key} run {ident}; the book's {source} {told}"))
    return out


def _with_editions(text: str, profiles: list[str]) -> str:
    """Insert, before the part that follows the cpu chapters, one part per profile listing the same chapters."""
    lines = text.splitlines()
    chapters = [line for line in lines if "file: book/cpu/" in line]
    last = max(i for i, line in enumerate(lines) if "file: book/cpu/" in line)
    parts = []
    for p in profiles:
        parts += [f"  - caption: {json.dumps(EXTRA_EDITIONS[p])}", "    chapters:"]
        parts.append(chapters[0].split("file: ")[0] + f"file: book/{p}/index")
        parts += [line.replace("book/cpu/", f"book/{p}/") for line in chapters
                  if executed_notebook(p, line.split("book/cpu/")[-1].strip()).is_file()]
    return "\n".join(lines[: last + 1] + parts + lines[last + 1:]) + "\n"


def build_book(profile: str, partial: bool = False) -> Path:
    """Build the HTML book of ``profile`` from its executed notebooks (never executing them).

    Refuses, naming the rerun command, when a chapter is missing (unless ``partial``: then the book holds the
    executed chapters and its landing page names the missing ones) or older than a chapter it depends on.
    """
    missing = [s.name for s in STEPS if not executed_notebook(profile, s.name).is_file()]
    if missing and not partial:
        raise RunRefused(
            f"profile {profile!r} has no executed notebook for {missing} under {BOOK / profile}. "
            f"Fix: rtsseg run --profile {profile} {' '.join('--step ' + m.split('_', 1)[0] for m in missing)}"
        )
    stale = stale_chapters(profile)
    if stale:
        names = sorted({c for c, _, _ in stale})
        steps = " ".join(f"--step {n.split('_', 1)[0]}" for n in names)
        raise RunRefused(
            f"chapter(s) {names} of profile {profile!r} are older than what they depend on "
            f"({'; '.join(f'{c}: {why}' for c, _, why in stale)}). Fix: rtsseg run --profile {profile} {steps}"
        )
    mismatched = run_mismatches(profile)
    if mismatched:
        names = sorted({c for c, _, _ in mismatched} | {t for _, t, _ in mismatched if t != "?"})
        steps = " ".join(f"--step {n.split('_', 1)[0]}" for n in names)
        raise RunRefused(
            f"chapter(s) {sorted({c for c, _, _ in mismatched})} of profile {profile!r} analysed other runs than the "
            f"book's training chapters trained ({'; '.join(why for _, _, why in mismatched[:3])}"
            f"{'; ...' if len(mismatched) > 3 else ''}). Fix: rtsseg run --profile {profile} {steps} "
            f"(an unchanged training chapter is skipped and restores its runs record from the book; the analysis "
            f"chapters then rerun on those runs)"
        )
    out = book_output(profile)
    check_writable(out)
    others = tuple(extra_editions()) if profile == "cpu" else ()
    write_index(profile, others=others)  # book/<profile>/index.md: the landing page, glued from the executed notebooks
    for p in others:  # their landing pages, part of this build
        write_index(p, title=EXTRA_EDITIONS[p])
    write_performance()  # book/performance.md: the benchmark results, from benchmarks/results/
    write_reproduce()  # book/reproduce.md: the measured costs, from the run records of book/<profile>/
    cmd = [
        sys.executable, "-m", "jupyter_book", "build", str(REPO_ROOT), "--path-output", str(out),
        "--toc", str(toc_for(profile, partial)), "--config", str(REPO_ROOT / "_config.yml"),
    ]
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent))
    if jb:
        cmd = [jb, *cmd[3:]]
    subprocess.run(cmd, check=True)
    index = out / "_build" / "html" / "index.html"
    print(f"[rtsseg] book: {index}")
    return index
