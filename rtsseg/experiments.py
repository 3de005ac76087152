"""Where each experiment's runs live, and the backbone of one (profile, backbone, initialisation, seed).

Analysis layer: it may import models and trainers. Every trained initialisation has a *run parent* folder per
backbone and seed; the trainers put one run folder per (config, code) identity below it
(:mod:`rtsseg.rundir`), and :func:`load_backbone` takes the one that the training chapter's runs record
(``runs/<profile>/results/trained_<step>.json``, :func:`rtsseg.report.write_trained_runs`) names — never "the
last run that finished"::

    runs/<profile>/pretrain/<backbone>_seed<seed>/<identity>/checkpoint.pt               barlow twins (step 02)
    runs/<profile>/dino/<backbone>_seed<seed>/<identity>/checkpoint.pt                   dino (step 03; teacher
                                                                                         backbone under "backbone")
    runs/<profile>/supervised/<backbone>_seed<seed>/<identity>/checkpoint.pt             supervised (step 04)
    runs/<profile>/attention_supervised/<backbone>_seed<seed>/<identity>/checkpoint.pt   positive control: the
                                                                                         supervised trainer with
                                                                                         attn_loss_weight > 0
"""

from __future__ import annotations

from pathlib import Path

from rtsseg.config import runs_root
from rtsseg.profiles import run_dir

#: The initialisations every analysis chapter compares.
INITS: list[str] = ["random", "supervised", "barlow twins", "dino"]
#: Positive controls, compared in the attention chapter only.
CONTROL_INITS: list[str] = ["attention-supervised"]
ALL_INITS: list[str] = INITS + CONTROL_INITS

#: init -> (folder under runs/<profile>/, the step that trains it)
TRAINED: dict[str, tuple[str, str]] = {
    "barlow twins": ("pretrain", "02_pretrain_barlow_twins"),
    "dino": ("dino", "03_pretrain_dino"),
    "supervised": ("supervised", "04_supervised_baseline"),
    "attention-supervised": ("attention_supervised", "04_supervised_baseline"),
}


def run_parent(profile: str, init: str, backbone: str, seed: int) -> Path:
    """The folder holding the runs (one per config identity) of a trained initialisation."""
    if init not in TRAINED:
        raise ValueError(f"unknown trained initialisation {init!r}; choose one of {list(TRAINED)}")
    return run_dir(profile, TRAINED[init][0], f"{backbone}_seed{seed}")


def pretrain_dir(profile: str, backbone: str, seed: int) -> Path:
    """Barlow Twins run parent (``PretrainConfig.run_parent``)."""
    return run_parent(profile, "barlow twins", backbone, seed)


def dino_dir(profile: str, backbone: str, seed: int) -> Path:
    """DINO run parent."""
    return run_parent(profile, "dino", backbone, seed)


def supervised_dir(profile: str, backbone: str, seed: int) -> Path:
    """Supervised baseline run parent (``SupervisedConfig.run_parent``)."""
    return run_parent(profile, "supervised", backbone, seed)


def attention_supervised_dir(profile: str, backbone: str, seed: int) -> Path:
    """Attention-supervised control run parent (``SupervisedConfig.run_parent`` with ``attn_loss_weight > 0``)."""
    return run_parent(profile, "attention-supervised", backbone, seed)


def cache_dir() -> Path:
    """Decoded-data caches are profile independent: ``runs/cache``."""
    return runs_root() / "cache"


def step_run_parents(profile: str, step: str) -> list[Path]:
    """The folders ``rtsseg run --force STEP`` clears: every run of the initialisations that ``step`` trains
    (``step`` as a full name or its number, e.g. ``"02"``); empty for steps that train nothing."""
    name = _step_name(step)
    return [run_dir(profile, folder) for folder, trained_by in dict.fromkeys(TRAINED.values()) if trained_by == name]


def _step_name(step: str) -> str:
    names = {s for _, s in TRAINED.values()}
    for n in sorted(names):
        if step == n or n.split("_", 1)[0] == step:
            return n
    return step


def trained_run(profile: str, backbone: str, init: str, seed: int) -> Path:
    """The run folder of a trained initialisation that its training chapter trained, from that chapter's runs
    record (:func:`rtsseg.report.read_trained_runs`), never "the last run that finished": a papermill run of
    chapter 2 with other parameters into the same runs folder does not change what chapter 5 analyses until
    chapter 2's record names it. A clear error naming the folder and the step to run otherwise."""
    from rtsseg.errors import NoRunError
    from rtsseg.report import read_trained_runs, run_key, trained_runs_path

    parent = run_parent(profile, init, backbone, seed)
    step_name = TRAINED[init][1]
    step = step_name.split("_", 1)[0]
    hint = f"run `rtsseg run --profile {profile} --step {step}` with backbone {backbone} and seed {seed} first"
    ident = read_trained_runs(profile, step_name).get(run_key(init, backbone, seed))
    if ident is None:
        raise NoRunError(trained_runs_path(profile, step_name), f"{hint} (its runs record does not name this run)",
                         what=f"{init} run of {backbone} seed {seed}")
    folder = parent / ident
    if not (folder / "checkpoint.pt").is_file():
        raise NoRunError(folder, f"{hint} (its run {ident} has no checkpoint.pt)", what=f"{init} run")
    return folder


def checkpoint_path(profile: str, backbone: str, init: str, seed: int) -> Path:
    """``checkpoint.pt`` of the run its training chapter trained (:func:`trained_run`)."""
    return trained_run(profile, backbone, init, seed) / "checkpoint.pt"


def load_backbone(profile: str, backbone: str, init: str, seed: int, image_size: int, device="cpu", record=None):
    """The backbone of one run, in eval mode on ``device``: a random init seeded with ``seed``, or the run of the
    trained initialisation (``ALL_INITS``) for that backbone and seed that its training chapter trained.
    ``record`` (a :class:`rtsseg.report.RunRecord`) is told which run was analysed."""
    from rtsseg.config import seed_everything
    from rtsseg.models import build_backbone

    if init not in ALL_INITS:
        raise ValueError(f"unknown initialisation {init!r}; choose one of {ALL_INITS}")
    seed_everything(seed)
    weights = None if init == "random" else checkpoint_path(profile, backbone, init, seed)
    model = build_backbone(backbone, weights=weights, img_size=image_size).eval().to(device)
    if record is not None and weights is not None:
        record.analysed(init, backbone, seed, weights.parent)
    return model


__all__ = ["INITS", "CONTROL_INITS", "ALL_INITS", "TRAINED", "run_parent", "pretrain_dir", "dino_dir", "supervised_dir",
           "attention_supervised_dir", "cache_dir", "step_run_parents", "checkpoint_path", "trained_run", "load_backbone"]


def model_runs(backbones: list[str], main_backbone: str, seeds: list[int], other_seeds: list[int]) -> list[tuple[str, int]]:
    """The (backbone, seed) grid of the analysis chapters: every seed of ``seeds`` for the main backbone, the
    ``other_seeds`` for the others (fewer runs where the question is not asked)."""
    return [(b, s) for b in backbones for s in (seeds if b == main_backbone else other_seeds)]


def iter_models(profile: str, runs: list[tuple[str, int]], inits: list[str], image_size: int, missing: list,
                device="cpu", record=None):
    """Yield ``(backbone, init, seed, model)`` for every run x initialisation whose checkpoint exists (a random
    init always does), in eval mode on ``device``; append ``(backbone, init, seed, why)`` to ``missing`` for one
    whose step has not run yet, so a chapter shows what it has and names what it lacks. ``record`` (the
    chapter's :class:`rtsseg.report.RunRecord`) is told every run analysed."""
    for backbone, seed in runs:
        for init in inits:
            try:
                model = load_backbone(profile, backbone, init, seed, image_size, device, record)
            except (FileNotFoundError, ValueError) as err:
                missing.append((backbone, init, seed, _why_missing(err)))
                continue
            yield backbone, init, seed, model


def _why_missing(err: Exception) -> str:
    """The first sentence of a load error, short enough for a table cell of a book page: a missing run says what
    is missing ("no finished dino run"; the backbone and seed are the table's other columns, the folder is the
    profile's run folder); another error keeps its first sentence, the runs root written ``$RTSSEG_RUNS``."""
    from rtsseg.config import runs_root
    from rtsseg.errors import NoRunError

    if isinstance(err, NoRunError):
        return err.problem.split(" of ")[0].removesuffix(" in").strip()
    return str(err).split(". Fix")[0].replace(str(runs_root()), "$RTSSEG_RUNS")


def family_value(by_family: dict, backbone: str, parameter: str = "by_family"):
    """The value of ``{backbone name prefix: value}`` for ``backbone`` (e.g. chapter 2's ``optimizer_by_family``:
    ``{"vit": "adamw", "botnet": "lars", ...}``); a backbone no prefix matches is an error naming ``parameter``."""
    for family, value in by_family.items():
        if backbone.startswith(family):
            return value
    raise ValueError(f"{parameter} {by_family} has no family for backbone {backbone!r}. "
                     f"Fix: add its name prefix to the parameter {parameter}")
