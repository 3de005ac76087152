"""The book's headline findings: each chapter saves a few rows of numbers; chapter 8 and the landing page render them.

A finding is one answer a chapter gives, as numbers: the value and its interval (:class:`rtsseg.stats.Interval`,
saved with ``as_dict``), the null it is tested against (by name and value), the verdict
(:func:`rtsseg.stats.verdict` of that interval against that null, never typed) and the smallest effect the design
could have detected. Chapters save them with :func:`save_findings` (``runs/<profile>/results/findings_<step>.json``);
:func:`findings_markdown` renders the curated table of chapter 8 (at most :data:`MAX_ROWS` rows, each linked to its
chapter) and :func:`export_results` writes every saved result of every chapter as JSON and CSV beside the executed
book, for the reader to download. Nothing here formats a number that a chapter did not save.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from rtsseg.stats import Interval, detectable_effect, verdict

#: The curated table stays readable: a chapter that saves more rows than this in total is refused.
MAX_ROWS = 20


@dataclass
class Finding:
    """One headline answer. ``interval`` in the units of ``unit`` (already scaled: points, AUROC, %)."""

    key: str  # unique within the profile, e.g. "attention.bt_minus_random.tin"
    step: str  # the chapter that measured it, e.g. "05_attention_maps"
    what: str  # the quantity, e.g. "Barlow Twins − random init, object-specific AUROC excess (Tiny-ImageNet boxes)"
    interval: Interval
    unit: str = ""
    null: float = 0.0
    null_name: str = "0"  # what the null is, e.g. "0 (an image-independent map)"
    reference: str = ""  # a row it is read beside, e.g. "planted maps +0.34", a published anchor
    verdict: str = field(init=False)
    detectable: float = field(init=False)

    def __post_init__(self):
        if not isinstance(self.interval, Interval):
            raise TypeError(f"finding {self.key!r}: interval must be an rtsseg.stats.Interval, got "
                            f"{type(self.interval).__name__}. Fix: build it with rtsseg.stats (t_interval, "
                            "hierarchical_bootstrap, block_bootstrap)")
        self.verdict = verdict(self.interval, self.null)
        self.detectable = detectable_effect(self.interval) if self.interval.has_interval else float("nan")

    def as_dict(self) -> dict:
        return {"key": self.key, "step": self.step, "what": self.what, "interval": self.interval.as_dict(),
                "unit": self.unit, "null": self.null, "null_name": self.null_name, "reference": self.reference,
                "verdict": self.verdict,
                "detectable": None if math.isnan(self.detectable) else self.detectable}

    @classmethod
    def from_dict(cls, d: dict) -> Finding:
        f = cls(d["key"], d["step"], d["what"], Interval.from_dict(d["interval"]), d.get("unit", ""),
                float(d.get("null", 0.0)), d.get("null_name", "0"), d.get("reference", ""))
        if d.get("verdict") not in (None, f.verdict):  # a saved verdict is recomputed, never trusted
            raise ValueError(f"finding {f.key!r}: saved verdict {d['verdict']!r} does not follow from its interval "
                             f"({f.verdict!r}). Fix: re-run chapter {f.step}; verdicts are never edited by hand")
        return f

    def value_text(self, decimals: int = 3) -> str:
        u = f" {self.unit}" if self.unit else ""
        return self.interval.text(decimals, signed=self.null == 0.0) + u

    def sentence(self, decimals: int = 3) -> str:
        """"<what>: <value> [<lo>, <hi>] <unit>, <verdict> <null> (smallest detectable effect ±h)"."""
        from rtsseg.stats import verdict_sentence

        return verdict_sentence(self.what, self.interval, self.null_name, self.unit, decimals, null=self.null)


def findings_paragraph(findings: list[Finding], decimals: int = 3, none: str | None = None) -> str:
    """The findings' sentences, one after the other; ``none`` (or a default sentence) when there is none."""
    if not findings:
        return none or ("No initialisation besides the references ran in this edition, so this chapter states no "
                        "finding yet.")
    return " ".join(f.sentence(decimals) + "." for f in findings)


def findings_path(profile: str, step: str) -> Path:
    from rtsseg.report import results_dir

    return results_dir(profile) / f"findings_{step}.json"


def save_findings(profile: str, step: str, findings: list[Finding]) -> Path:
    """Write ``step``'s findings (replacing what the step saved before). Keys must be unique and name the step."""
    keys = [f.key for f in findings]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ValueError(f"{step}: findings {dup} saved twice. Fix: give each finding its own key")
    other = [f.key for f in findings if f.step != step]
    if other:
        raise ValueError(f"{step}: findings {other} name another step. Fix: save each finding from its own chapter")
    path = findings_path(profile, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps([f.as_dict() for f in findings], indent=1))
    tmp.replace(path)
    return path


def read_findings(profile: str, steps: list[str] | None = None) -> list[Finding]:
    """Every saved finding of ``profile`` in chapter order (the step names sort in chapter order)."""
    from rtsseg.report import results_dir

    out: list[Finding] = []
    for path in sorted(results_dir(profile).glob("findings_*.json")):
        step = path.stem.removeprefix("findings_")
        if steps is not None and step not in steps:
            continue
        try:
            rows = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not readable JSON ({e}). Fix: re-run chapter {step}") from e
        out += [Finding.from_dict(d) for d in rows]
    return out


def chapter_link(step: str, suffix: str = ".html") -> str:
    """A link to the chapter's page from a page in the same folder: ``.html`` from a rendered output (chapter 8's
    table is a displayed Markdown output, which the book does not resolve as a document link), ``.ipynb`` /
    ``.md`` from a markdown page (the landing page), where MyST resolves it."""
    number = step.split("_", 1)[0].lstrip("0") or "0"
    return f"[{number}]({step}{suffix})"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def findings_markdown(findings: list[Finding], decimals: int = 3, max_rows: int = MAX_ROWS,
                      link_suffix: str = ".html") -> str:
    """The curated findings table (MyST markdown): finding, value [95 % interval], null / reference, verdict,
    smallest detectable effect, chapter. Refuses more than ``max_rows`` rows (a table nobody reads)."""
    if not findings:
        return "*No chapter of this edition saved a finding yet.*"
    if len(findings) > max_rows:
        raise ValueError(f"{len(findings)} findings, more than the table's {max_rows} rows. Fix: keep each "
                         "chapter's headline rows only (the full results are in the downloadable files)")
    lines = ["| finding | value [interval] | null / reference | verdict | smallest detectable | chapter |",
             "|---|---|---|---|---|---|"]
    for f in findings:
        ref = f.null_name + (f"; {f.reference}" if f.reference else "")
        det = "–" if math.isnan(f.detectable) else f"±{abs(f.detectable):.{decimals}f}"
        how = f"{f.interval.method}, n={f.interval.n}"
        lines.append(f"| {_cell(f.what)} | {_cell(f.value_text(decimals))} ({how}) | {_cell(ref)} | {f.verdict} "
                     f"| {det} | {chapter_link(f.step, link_suffix)} |")
    return "\n".join(lines)


def export_results(profile: str, dest: Path) -> list[Path]:
    """Every saved result of ``profile`` (the chapters' tables and findings) as ``results.json`` (one object) and
    ``findings.csv`` (one row per finding, numbers only) under ``dest``, for the book's download links."""
    from rtsseg.report import results_dir

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    bundle = {}
    for path in sorted(results_dir(profile).glob("*.json")):
        try:
            bundle[path.stem] = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not readable JSON ({e}). Fix: re-run the chapter that wrote it") from e
    out_json = dest / "results.json"
    out_json.write_text(json.dumps({"profile": profile, "results": bundle}, indent=1, default=str))
    out_csv = dest / "findings.csv"
    with out_csv.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["key", "step", "what", "mean", "lo", "hi", "n", "level", "method", "unit", "null", "null_name",
                    "verdict", "detectable"])
        for f in read_findings(profile):
            d, iv = f.as_dict(), f.as_dict()["interval"]
            w.writerow([f.key, f.step, f.what, iv["mean"], iv["lo"], iv["hi"], iv["n"], iv["level"], iv["method"],
                        f.unit, f.null, f.null_name, f.verdict, d["detectable"]])
    return [out_json, out_csv]
