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
from rtsseg.profiles import model_runs, run_dir  # model_runs: re-exported for the chapters

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
           "attention_supervised_dir", "cache_dir", "step_run_parents", "checkpoint_path", "trained_run",
           "load_backbone", "model_runs", "iter_models", "PUBLISHED_PREFIX", "OFFICIAL_FILES", "published_entries",
           "published_inits", "published_backbones", "published_cells", "iter_published", "family_value"]


def iter_models(profile: str, runs: list[tuple[str, int]], inits: list[str], image_size: int, missing: list,
                device="cpu", record=None, published=(), published_dir=None, need_attention: bool = False):
    """Yield ``(backbone, init, seed, model)`` for every run x initialisation whose checkpoint exists (a random
    init always does), in eval mode on ``device``; append ``(backbone, init, seed, why)`` to ``missing`` for one
    whose step has not run yet, so a chapter shows what it has and names what it lacks. ``record`` (the
    chapter's :class:`rtsseg.report.RunRecord`) is told every run analysed. Then the ``published`` weights
    (:func:`iter_published`; ``inits`` may name their ``"published ..."`` inits for ordering, they are served
    there)."""
    for backbone, seed in runs:
        for init in inits:
            if init.startswith(PUBLISHED_PREFIX):
                continue
            try:
                model = load_backbone(profile, backbone, init, seed, image_size, device, record)
            except (FileNotFoundError, ValueError) as err:
                missing.append((backbone, init, seed, _why_missing(err)))
                continue
            yield backbone, init, seed, model
    yield from iter_published(profile, published_cells(published, runs, inits), image_size, missing, published_dir,
                              device, record, need_attention)


# ---- published weights as extra initialisations (issue: the Colab edition) -----------------------------------

#: Init label of published weights: "published dino", "published barlow twins" (rtsseg.models.published.PUBLISHED).
PUBLISHED_PREFIX = "published "
#: (checkpoint, backbone) -> the official file's name, looked up in the chapters' ``published_dir`` (offline:
#: a local copy in the official layout); without ``published_dir`` the weights are downloaded (Colab).
OFFICIAL_FILES = {("dino", "vit_s16"): "dino_deitsmall16_pretrain.pth",
                  ("dino", "vit_s8"): "dino_deitsmall8_pretrain.pth",
                  ("dino", "vit_s8_64"): "dino_deitsmall8_pretrain.pth",
                  ("barlow twins", "resnet50"): "resnet50.pth", ("barlow twins", "botnet50"): "resnet50.pth"}


def published_entries(published) -> list[tuple[str, str, str]]:
    """``(checkpoint, backbone, init)`` of each ``"<checkpoint>/<backbone>"`` entry of the analysis chapters'
    ``published`` parameter (e.g. ``"dino/vit_s8_64"`` -> ``("dino", "vit_s8_64", "published dino")``); an entry
    that names no published checkpoint of that backbone is one error listing the choices."""
    from rtsseg.models.published import PUBLISHED

    out = []
    for entry in published:
        checkpoint, sep, backbone = str(entry).partition("/")
        if not sep or checkpoint not in PUBLISHED or backbone not in PUBLISHED[checkpoint].backbones:
            choices = [f"{k}/{b}" for k, spec in PUBLISHED.items() for b in spec.backbones]
            raise ValueError(f"parameter published: {entry!r} is not a published checkpoint of a backbone. "
                             f"Fix: use entries of {choices}")
        out.append((checkpoint, backbone, PUBLISHED_PREFIX + checkpoint))
    return out


def published_inits(published) -> list[str]:
    """The init labels of ``published`` (chapter tables order their rows by init), once each."""
    return list(dict.fromkeys(init for _, _, init in published_entries(published)))


def published_backbones(published) -> list[str]:
    """The backbones of ``published``, once each."""
    return list(dict.fromkeys(backbone for _, backbone, _ in published_entries(published)))


def published_cells(published, runs=(), inits=("random",)) -> list[tuple[str, str]]:
    """The (backbone, init) cells :func:`iter_models` adds for ``published`` beside the trained ``runs`` x
    ``inits``: per published backbone its random init (unless ``runs`` x ``inits`` has it), then its
    checkpoints."""
    have_random = {b for b, _ in runs} if "random" in inits else set()
    cells = []
    for backbone in published_backbones(published):
        cells += [(backbone, "random")] if backbone not in have_random else []
        cells += [(b, init) for _, b, init in published_entries(published) if b == backbone]
    return cells


def _file_source(path: Path) -> str:
    """``"<name> sha256 <12 hex>"``: which published file a chapter read (chunks: the files are 0.1-0.3 GB)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    return f"{path.name} sha256 {h.hexdigest()[:12]}"


def iter_published(profile: str, cells, image_size: int, missing: list, published_dir=None, device="cpu",
                   record=None, need_attention: bool = False):
    """Yield ``(backbone, init, 0, model)`` for the ``cells`` of :func:`published_cells`, in eval mode on
    ``device``: a random init (seed 0: the null the published weights are read against), or a published
    checkpoint (:func:`rtsseg.models.published.published_backbone`: from ``published_dir`` / the official file
    name when given, else downloaded). A checkpoint that cannot be had (no network, no file) is appended to
    ``missing`` with why; with ``need_attention`` (the attention and decoder chapters) a backbone without
    attention layers is refused. ``record`` is told the source of each (a file with its sha256)."""
    from rtsseg.config import seed_everything
    from rtsseg.errors import DataError
    from rtsseg.models import build_backbone
    from rtsseg.models.published import published_backbone

    for backbone in dict.fromkeys(b for b, init in cells if need_attention and init != "random"):
        if not build_backbone(backbone).attention_layers():  # before any download
            checkpoint = next(i for b, i in cells if b == backbone and i != "random").removeprefix(PUBLISHED_PREFIX)
            raise ValueError(f"parameter published: {backbone} has no attention layers, and this chapter measures "
                             f"attention. Fix: drop '{checkpoint}/{backbone}' here (chapter 6 takes it), or use "
                             f"botnet50 (the same weights, MHSA in layer4)")
    for backbone, init in cells:
        if init == "random":
            yield backbone, init, 0, load_backbone(profile, backbone, "random", 0, image_size, device)
            continue
        checkpoint = init.removeprefix(PUBLISHED_PREFIX)
        path = Path(published_dir) / OFFICIAL_FILES[checkpoint, backbone] if published_dir else None
        try:
            seed_everything(0)  # what the weights leave at init (BoTNet's MHSA) is seed 0's
            model, report = published_backbone(checkpoint, backbone, path, img_size=image_size)
        except DataError as err:  # a table cell: the problem and the file's name (no absolute path)
            missing.append((backbone, init, 0, f"{err.problem}: {Path(str(err.path)).name}"))
            continue
        if record is not None:
            record.published(init, backbone, _file_source(path) if path else report.source)
        yield backbone, init, 0, model.eval().to(device)


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
