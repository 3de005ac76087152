"""The pages the book build writes, never a notebook: the landing page of each edition (``book/<profile>/index.md``
from ``book/index.template.md``), the performance appendix (``book/performance.md`` from ``benchmarks/results/``)
and the measured costs of the reproduce page (``book/reproduce.md`` from ``book/reproduce.template.md``).

Nothing here runs while a notebook executes, so it is not an input of any step (``rtsseg.pipeline.NOT_INPUTS``):
a change to how the pages are written rebuilds the book in seconds (``rtsseg book --profile cpu``) without
re-executing a chapter. What a notebook calls lives in :mod:`rtsseg.book` and :mod:`rtsseg.glue`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from rtsseg.book import NOT_RUN, run_records
from rtsseg.config import REPO_ROOT

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


_PLACEHOLDER = re.compile(r"\{\{\s*(glue|figure|status|editions|answer)(?::([A-Za-z0-9_]+))?\s*\}\}")

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

#: Glue names whose meaning changed between editions: name -> (the finding an edition saves when its glue is the
#: current measure, what the glue is in an edition without that finding). An edition executed before chapter 5 saved
#: the object-specific excess glued the AUROC against the image's own box under the same names, and the table of
#: editions must not put the two side by side as one measure.
EDITION_MEASURES: dict[str, tuple[str, str]] = {
    "attn_auroc_bt": ("attention.excess.barlow_twins.tinyimagenet", "AUROC against the own box, not the excess"),
    "attn_auroc_dino": ("attention.excess.dino.tinyimagenet", "AUROC against the own box, not the excess"),
    "attn_auroc_control": ("attention.excess.attention-supervised.tinyimagenet",
                           "AUROC against the own box, not the excess"),
}


# ---- the answers of an edition (landing page) ---------------------------------------------------------------

NOT_ANSWERED = "Not answered in this edition"


def edition_findings(profile: str, book: Path | None = None) -> dict | None:
    """key -> :class:`rtsseg.findings.Finding` of an edition, from the results chapter 8 exported
    (``book/<profile>/results/results.json``); None when the edition has no such file (executed before findings
    were saved). The verdicts are recomputed from the intervals on reading, never taken from the file."""
    from rtsseg.findings import Finding

    path = (book or REPO_ROOT / "book") / profile / "results" / "results.json"
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text())["results"]
    except (json.JSONDecodeError, KeyError) as e:
        raise ValueError(f"{path}: not a results file of chapter 8 ({e}). Fix: rtsseg run --profile {profile} "
                         "--step 08") from e
    return {d["key"]: Finding.from_dict(d) for name, rows in sorted(results.items()) if name.startswith("findings_")
            for d in rows}


def _against(f, what: str = "0") -> str:
    """The verdict of a finding against its null, as words that name the null."""
    return {"above": f"above {what}", "below": f"below {what}"}.get(f.verdict, f"no measurable difference from {what}")


def _how(f) -> str:
    """How a finding's interval was made, e.g. "95 % interval: hierarchical bootstrap, n=3"; "no interval (n=1)"."""
    iv = f.interval
    if not iv.has_interval:
        return f"no interval (n={iv.n})"
    return f"{100 * iv.level:.0f} % interval: {iv.method}, n={iv.n}"


def _detects(f, effect: float) -> bool:
    """Whether a difference as large as ``effect`` would have been declared by the design of ``f`` (never without
    an interval: its detectable effect is NaN then, and every comparison with NaN is False)."""
    return abs(f.detectable) < effect


def answer_word(effect, control=None) -> str:
    """"Yes" (the effect lies above 0), "No" (below 0, or no measurable difference where the design would have
    detected an effect as large as the passing positive ``control``'s), else "Not at this scale"."""
    if effect.verdict == "above":
        return "Yes"
    if effect.verdict == "below":
        return "No"
    if control is not None and control.verdict == "above" and _detects(effect, control.interval.mean):
        return "No"
    return "Not at this scale"


def answer_attention(found: dict | None, gt: str = "tinyimagenet") -> tuple[str, str]:
    """Question 1 in one sentence (and its two supporting clauses): yes / no / not at this scale, from Barlow Twins'
    object-specific AUROC excess, its difference from the same backbone at random init (the deciding number), the
    image-independent null and the learned positive control that shows what the measure can see."""
    found = found or {}
    bt, diff = found.get(f"attention.excess.barlow_twins.{gt}"), found.get(f"attention.diff.barlow_twins_minus_random.{gt}")
    ctrl, dino = found.get(f"attention.excess.attention-supervised.{gt}"), found.get(f"attention.excess.dino.{gt}")
    if bt is None or diff is None:
        return NOT_ANSWERED, (f"*{NOT_ANSWERED}*: it saved no object-specific attention score (its chapter 5 was "
                              "executed before that score existed, or not at all); an AUROC against 0.5 does not "
                              "answer the question, because a map that ignores the image already scores well above "
                              "0.5 on these boxes.")
    word = answer_word(diff, ctrl)
    text = (f"**{word}.** Against the same backbone at random initialisation, Barlow Twins changes the "
            f"object-specific AUROC excess by {diff.value_text()} ({_against(diff)}, the null of no difference; "
            f"{_how(diff)})")
    if diff.interval.has_interval:
        text += f", where the design would have detected a change of about ±{abs(diff.detectable):.3f}"
    text += (f". Its own excess is {bt.value_text()} ({_against(bt)}, the score of every image-independent map, a "
             "centre blob included)")
    if dino is not None and dino_trained(found) is False:
        text += ("; DINO is not trained at this budget (its k-NN is not above its random init, chapter 3), so its "
                 "maps are not compared with Barlow Twins'.")
    else:
        text += f"; DINO's {dino.value_text()} ({_against(dino)})." if dino is not None else "."
    if ctrl is not None:
        text += (f" The positive control, trained to attend to its own image's box, reaches {ctrl.value_text()} "
                 f"({_against(ctrl)})")
        text += (": the measure does see object-specific attention where a model learned it." if ctrl.verdict == "above"
                 else ": not even a model trained for it is measurably object-specific here, so this edition cannot "
                      "tell Barlow Twins' attention from none — a limit of its scale, not a property of Barlow Twins.")
    return word, text + " All at this edition's scale (the box above): small backbones, short schedules, 64 px images."


def answer_decoder(found: dict | None) -> tuple[str, str]:
    """Question 2 in one sentence: yes / no / not at this scale, from the attention-aware decoder minus its
    same-capacity control (the deciding number, pooled as a mean of cell means) and the oracle ceiling (the
    same decoder fed attention built from the labels), which says whether a null is the attention's or the
    decoder's."""
    found = found or {}
    gain = found.get("segmentation.attn_minus_control")
    ceilings = [f for k, f in sorted(found.items()) if k.startswith("segmentation.oracle_minus_control.")]
    if gain is None:
        return NOT_ANSWERED, (f"*{NOT_ANSWERED}*: its chapter 7 saved no paired decoder comparison (not executed, "
                              "or executed before the comparison was saved).")
    ceiling = ceilings[0] if ceilings else None
    word = answer_word(gain, ceiling)
    text = (f"**{word}.** On CamVid the attention-aware decoder differs from its same-capacity control by "
            f"{gain.value_text(2)} ({_against(gain)}; the mean of the per-cell paired differences over backbone × "
            f"initialisation, {_how(gain)})")
    if ceiling is None:
        return word, text + ("; no oracle ceiling was measured, so a null cannot say whether the attention or the "
                             "decoder falls short.")
    backbone = ceiling.key.rsplit(".", 1)[-1]
    text += (f". Fed attention built from the labels, the oracle ceiling on {backbone}, the same decoder gains "
             f"{ceiling.value_text(2)} ({_against(ceiling)})")
    if ceiling.verdict == "above" and word != "Yes":
        text += ": the decoder can use attention that locates objects, so what falls short is the learned attention"
    elif ceiling.verdict == "above":
        text += ": the decoder can use attention, and learned attention gives part of it"
        share = found.get(f"segmentation.share_of_ceiling.{backbone}")
        if share is not None:
            text += f" — {share.value_text(3)} on {backbone} ({_against(share, '0, none of it')}; {_how(share)})"
        bt = found.get("attention.excess.barlow_twins.tinyimagenet")
        if bt is not None and bt.verdict != "above":
            text += (". That gain is not evidence of semantic maps: chapter 5 finds Barlow Twins' attention no more "
                     f"object-specific than an image-independent map ({bt.value_text()}, {_against(bt)})")
    else:
        text += (": even attention taken from the labels gives no measurable gain, so this decoder, at this "
                 "resolution, cannot answer the question")
    return word, text + ". All at this edition's scale (the box above)."


def answer_features(found: dict | None) -> str:
    """The features rather than the maps: chapter 2's k-NN monitor, Barlow Twins (and DINO) minus random init,
    as an interval over seeds (never a std)."""
    found = found or {}
    bt, dino = found.get("pretrain.bt_knn_minus_random"), found.get("pretrain.dino_knn_minus_random")
    if bt is None:
        return f"*{NOT_ANSWERED}*: no k-NN comparison with random init was saved."
    text = (f"For the features rather than the maps: Barlow Twins moves the k-NN top-1 of chapter 2's monitor by "
            f"{bt.value_text(1)} ({_against(bt)}; {_how(bt)}) over a random initialisation of the "
            "same backbone")
    if dino is None:
        return text + "."
    text += f", DINO by {dino.value_text(1)} ({_against(dino)})"
    return text + (": DINO is not trained at this budget, so no DINO − Barlow Twins comparison is drawn."
                   if dino_trained(found) is False else ".")


def dino_trained(found: dict | None) -> bool | None:
    """Whether the edition trained DINO at its budget: its teacher's k-NN above its random init (the interval of
    chapter 3's finding above 0, the rule of ``rtsseg.ssl.chapter.dino_trained``); ``None`` when it saved no such
    finding."""
    from rtsseg.ssl.chapter import dino_trained as trained

    f = (found or {}).get("pretrain.dino_knn_minus_random")
    return None if f is None else trained(f)


def edition_answers(profile: str, book: Path | None = None, others: tuple[str, ...] = (),
                    records: dict[str, list[dict]] | None = None) -> dict[str, str]:
    """The landing page's ``{{ answer:... }}`` texts of ``profile`` from its saved findings: ``attention``,
    ``decoder``, ``features`` and ``editions`` (the paragraph of :func:`reconcile_editions` over ``profile`` and
    ``others``; empty without others). ``records``: each edition's run records where the caller read them
    already (else read here)."""
    found = edition_findings(profile, book)
    (w1, attention), (w2, decoder) = answer_attention(found), answer_decoder(found)
    words = {profile: (w1, w2)}
    for p in others:
        theirs = edition_findings(p, book)
        words[p] = (answer_attention(theirs)[0], answer_decoder(theirs)[0])
    records = records or {p: run_records(p, book) for p in words}
    return {"attention": attention, "decoder": decoder, "features": answer_features(found),
            "editions": reconcile_editions(words, records)}


#: The chapter whose saved finding answers question 1 and question 2.
ANSWERING_CHAPTERS = ("05_attention_maps", "07_segmentation")


def reconcile_editions(answers: dict[str, tuple[str, str]], records: dict[str, list[dict]]) -> str:
    """One paragraph over the editions' answers (``profile -> (question-1 word, question-2 word)``, a word being
    "Yes" / "No" / "Not at this scale" / :data:`NOT_ANSWERED`): where they agree, where they differ, and why an
    edition does not answer a question (its answering chapter, :data:`ANSWERING_CHAPTERS`, was not executed, or was
    executed before it saved the score that answers it; ``records``: each edition's run records, with "step")."""
    if len(answers) < 2:
        return ""
    def where(p: str) -> str:
        mine = records.get(p, [])
        return f"`{p}` ({_distinct(mine, 'device', 'not run')}; commit {_distinct(mine, 'commit', 'none')})"
    parts = []
    for i, q in enumerate(("question 1", "question 2")):
        words = {p: w[i] for p, w in answers.items()}
        answered = {p: w for p, w in words.items() if w != NOT_ANSWERED}
        if len(answered) == 1:
            (p, w), = answered.items()
            parts.append(f"Only {where(p)} answers {q} ({w})")
        elif len(set(answered.values())) == 1:
            parts.append(f"On {q} the editions that answer it agree ({next(iter(answered.values()))!s}: "
                         f"{', '.join(where(p) for p in answered)})")
        elif answered:
            parts.append(f"On {q} they differ: " + "; ".join(f"{where(p)} {w}" for p, w in answered.items())
                         + " — each answer holds at its own scale, and the one with the narrower interval and a "
                           "passing positive control is the better-powered")
        silent = [p for p, w in words.items() if w == NOT_ANSWERED]
        chapter = ANSWERING_CHAPTERS[i]
        unrun = [p for p in silent if not any(r.get("step") == chapter for r in records.get(p, []))]
        before = [p for p in silent if p not in unrun]
        if unrun:
            parts.append(f"{', '.join(where(p) for p in unrun)} does not answer {q}: its chapter "
                         f"{int(chapter[:2])} was not executed in that edition")
        if before:
            parts.append(f"{', '.join(where(p) for p in before)} does not answer {q}: it was executed before its "
                         "chapter saved the score that answers it, so its numbers there are not the same measure")
    return ". ".join(parts) + "."


def _distinct(records: list[dict], field: str, empty: str) -> str:
    """The distinct values of ``field`` over run records, sorted and comma-separated; ``empty`` when none."""
    return ", ".join(sorted({r[field] for r in records})) or empty


def glue_ref(profile: str, step: str, name: str) -> str:
    """The MyST role that pastes glue ``name`` of the executed chapter ``book/<profile>/<step>.ipynb`` as text
    (the role reads "path::key:format"; without a format it would split the key)."""
    return f"{{glue:text}}`/book/{profile}/{step}.ipynb::{name}:s`"


def _edition_cell(profile: str, found: dict[str, str], names: tuple[str, ...], findings: dict | None,
                  checked: bool) -> str:
    """One cell of the table of editions: the glued values of ``names`` " / "-separated ("–" for a missing one,
    :data:`NOT_RUN` when none ran), and, where ``checked`` and the edition's saved ``findings`` lack the finding
    that makes a name the current measure (:data:`EDITION_MEASURES`), what the glued number is instead."""
    if not any(n in found for n in names):
        return NOT_RUN
    cell = " / ".join(glue_ref(profile, found[n], n) if n in found else "–" for n in names)
    notes = {EDITION_MEASURES[n][1] for n in names if checked and n in found and n in EDITION_MEASURES
             and EDITION_MEASURES[n][0] not in (findings or {})}
    return cell + "".join(f" ({note})" for note in sorted(notes))


def editions_table(editions: dict[str, tuple[dict[str, str], list[dict]]], findings: dict[str, dict | None] | None = None
                   ) -> str:
    """The headline numbers of several editions side by side (``profile -> (glue name -> step, run records)``),
    each cell glued from that edition's executed notebooks; empty with fewer than two editions. ``findings``:
    each edition's saved findings (:func:`edition_findings`, None for an edition that saved none); where given, a
    cell whose glue is an older measure under the same name says so (:data:`EDITION_MEASURES`)."""
    if len(editions) < 2:
        return ""
    head = ["result"]
    for profile, (_, records) in editions.items():
        devices = _distinct(records, "device", "not run")
        head.append(f"`{profile}` ({devices})")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, names in EDITION_ROWS:
        cells = [label]
        for profile, (found, _) in editions.items():
            cells.append(_edition_cell(profile, found, names, (findings or {}).get(profile),
                                       findings is not None and profile in findings))
        lines.append("| " + " | ".join(cells) + " |")
    first = next(iter(editions))
    intro = (f"## The editions side by side\n\nThe answers above are the `{first}` edition's. Every edition runs the same"
             " notebooks under another profile (its own landing page says what it ran and on what); the table puts"
             " their headline numbers side by side, each cell glued from that edition's executed chapter"
             " (mean ± std over seeds or [95 % interval] as the chapter reports it).\n\n")
    return intro + "\n".join(lines)


def render_index(template: str, profile: str, found: dict[str, str], records: list[dict], figure_caption=None,
                 editions: dict[str, tuple[dict[str, str], list[dict]]] | None = None,
                 answers: dict[str, str] | None = None, findings: dict[str, dict | None] | None = None) -> str:
    """Fill ``{{ glue:NAME }}``, ``{{ figure:NAME }}``, ``{{ status }}``, ``{{ editions }}`` (the table of
    :func:`editions_table` over ``editions``; nothing when there is one edition) and ``{{ answer:NAME }}`` (the
    texts of :func:`edition_answers`; an empty string where ``answers`` lacks the name) in the landing-page template.
    ``findings``: each edition's saved findings, for :func:`editions_table`.

    A name no executed notebook defines becomes "not run in this edition", so the book always builds.
    """
    captions = figure_caption or {}

    def sub(m: re.Match) -> str:
        kind, name = m.group(1), m.group(2)
        if kind == "status":
            return _PLACEHOLDER.sub(sub, status_box(profile, records, found))
        if kind == "editions":
            return editions_table(editions or {}, findings)
        if kind == "answer":
            return (answers or {}).get(name, "")
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
    training = [r["training (min)"] for r in records if r.get("training (min)") is not None]
    trained = (f"; its training runs took {sum(training):.0f} min to train (a run whose identity is unchanged is "
               "loaded, not trained again)" if training else
               "; their training time is not recorded apart in this execution (a training chapter that finds a "
               "run finished under the same identity loads it instead of training it again)")
    backbones = sorted({b.strip() for r in records for b in r.get("backbones", "").split(",") if b.strip()})
    expected = sorted(set(GLUE_NAMES) - set(found))
    lines = [
        "```{admonition} This edition",
        ":class: note",
        f"- **Profile** `{profile}`: {len(ran)} of {len(STEPS)} chapters executed in {total:.0f} min{trained}",
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
    answers = edition_answers(profile, book, others, records={p: rec for p, (_, rec) in editions.items()})
    text = render_index(template, profile, editions[profile][0], editions[profile][1], editions=editions,
                        answers=answers, findings={p: edition_findings(p, book) for p in editions})
    out = book / profile / "index.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    header = "<!-- Generated by rtsseg.bookpages.write_index from book/index.template.md: edit the template. -->\n"
    out.write_text(header + text)
    return out


# ---- the performance appendix -----------------------------------------------------------------------------

EMULATED_NOTE = ("bf16 ran slower than fp32 here (no fast bf16 path on this CPU): its peak is no ceiling, so no "
                 "share of it is shown (–).")


def _bf16_emulated(peaks: dict) -> bool:
    """Whether a machine's measured bf16 matrix-product peak is below its fp32 one: bf16 is emulated there (no
    AVX512-BF16 / AMX), a share of that "peak" measures the emulation, not the step (it ran to 7198 % on one CPU)."""
    b, f = peaks.get("bf16_tflops"), peaks.get("fp32_tflops")
    return b is not None and f is not None and b < f


def _bf16_share(value, emulated: bool) -> str:
    return "–" if emulated else f"{100 * value:.1f}"


def _performance_three_columns(meta: dict, rows: list[dict]) -> list[str]:
    """The lines of one results file of ``bench_mfu.py`` that timed ours with ``amp=auto``, ours in fp32 and the
    plain fp32 reference in one run (after the heading written by :func:`write_performance`)."""
    emulated = _bf16_emulated(meta.get("peaks", {}))

    def num(value, fmt: str) -> str:
        return "" if value is None else format(value, fmt)

    def pct(r: dict, prefix: str) -> str:
        b, f = r.get(f"{prefix}frac_bf16_peak"), r.get(f"{prefix}frac_fp32_peak")
        return "" if b is None or f is None else f"{_bf16_share(b, emulated)} / {100 * f:.1f}"

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
        "<!-- Generated by rtsseg.bookpages.write_performance from benchmarks/results/: edit the generator. -->",
        "# Performance appendix", "",
        "The Barlow Twins training step of each backbone (both views through the backbone, projector, loss, "
        "backward, optimiser step), timed by `benchmarks/bench_mfu.py` (see `benchmarks/NOTES.md`). Model FLOPs "
        "are counted with `torch.utils.flop_counter.FlopCounterMode`; the peaks are the best large matrix product "
        "measured in the same run. The official Barlow Twins figure is about 132 images/s per V100 for ResNet-50 "
        "{cite}`zbontar2021barlow`.", "",
        "**Reading the % columns.** Each share is the step's achieved TFLOP/s over the peak of *one* dtype's matrix "
        "product, both measured in the same run. A step trained in bf16 is compared with the fp32 peak too, so it can "
        "exceed 100 % of it (bf16 products run several times faster than fp32 ones). On a CPU without a fast bf16 "
        "path the measured bf16 peak lies below the fp32 one: it is the speed of an emulation, no ceiling, and its "
        "shares are left out (–). Above 100 % of its *own* dtype's peak a step cannot go in principle; where a row "
        "does, the peak was measured low (on a shared machine, or at a halved size for a slow dtype, stated with each "
        "table) and the ratios within one run are what to compare.", "",
    ]
    files = sorted(p for p in results.glob("*.json") if not p.stem.endswith("_quick"))
    loaded = [(path, json.loads(path.read_text())) for path in files]
    names = [d.get("meta", {}).get("device_name", path.stem) for path, d in loaded]
    for (path, data), name in zip(loaded, names):
        meta, rows = data.get("meta", {}), data.get("rows", [])
        if not rows:
            continue
        peaks = meta.get("peaks", {})
        emulated = _bf16_emulated(peaks)
        # several files of one device name (one CPU model, other flags or sizes): the file tells them apart
        which = f", {path.stem}" if names.count(name) > 1 else ""
        lines += [f"## {name} ({meta.get('suite', '?')} suite{which})", "",
                  f"`{path.relative_to(REPO_ROOT).as_posix() if path.is_relative_to(REPO_ROOT) else path.name}`, "
                  f"{meta.get('time', '')}, torch {meta.get('torch', '?')}, "
                  f"{meta.get('threads', '?')} threads. Measured peaks: bf16 {peaks.get('bf16_tflops', float('nan')):.3g} "
                  f"TFLOP/s, fp32 {peaks.get('fp32_tflops', float('nan')):.3g} TFLOP/s."
                  + (f" {EMULATED_NOTE}" if emulated else ""), ""]
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
                    f"{_bf16_share(r['frac_bf16_peak'], emulated)} | {100 * r['frac_fp32_peak']:.1f} | "
                    f"{r['ours_images_per_s']:.0f} |"
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


# ---- the reproduce page -----------------------------------------------------------------------------------

_MEASURED = re.compile(r"\{\{\s*measured:([A-Za-z0-9_-]+)(?::(\d\d))?\s*\}\}")


def measured_cost(profile: str, book: Path | None = None, step: str | None = None) -> str:
    """What an edition's execution cost, from the run records of its committed notebooks (``rtsseg.wall_s``):
    "145 min on CPU x2: 01 0.2, 02 50.1, … min", naming the chapters it lacks; with ``step`` (a two-digit chapter
    number) that chapter's minutes alone. An edition without records says so rather than giving a number."""
    from rtsseg.profiles import STEPS

    records = run_records(profile, book)
    if not records:
        return f"not executed here (no `book/{profile}/*.ipynb`)"
    minutes = {r["step"][:2]: r["wall time (min)"] for r in records}
    if step is not None:
        if step not in minutes:
            return f"not run in `{profile}`"
        return f"{minutes[step]:.1f}"
    total = sum(minutes.values())
    lacking = [s.name[:2] for s in STEPS if s.name[:2] not in minutes]
    text = (f"{total:.{0 if total >= 10 else 1}f} min on {_distinct(records, 'device', 'not recorded')}: "
            + ", ".join(f"{k} {v:.1f}" for k, v in sorted(minutes.items())) + " min")
    if lacking:
        text += f" ({', '.join(lacking)} not executed in this edition)"
    return text


def write_reproduce(book: Path | None = None) -> Path:
    """Write ``book/reproduce.md`` from ``book/reproduce.template.md``: each ``{{ measured:PROFILE }}`` (and
    ``{{ measured:PROFILE:NN }}``, one chapter) becomes :func:`measured_cost` of the committed run records, so the
    page's measured costs are never typed."""
    book = book or REPO_ROOT / "book"
    template = (book / "reproduce.template.md").read_text()
    text = _MEASURED.sub(lambda m: measured_cost(m.group(1), book, m.group(2)), template)
    out = book / "reproduce.md"
    header = ("<!-- Generated by rtsseg.bookpages.write_reproduce from book/reproduce.template.md and the run records "
              "of book/<profile>/*.ipynb: edit the template. -->\n")
    out.write_text(header + text)
    return out
