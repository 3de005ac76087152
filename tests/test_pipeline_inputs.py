"""The modules left out of a step's fingerprint (``rtsseg.pipeline.NOT_INPUTS``) must never be imported by a notebook
or by a module that is an input: otherwise a change to them would change what a step computes without making the
step stale."""

import ast
from pathlib import Path

import pytest

from rtsseg.pipeline import NOT_INPUTS, PACKAGE, package_digest

REPO = PACKAGE.parent
EXCLUDED = {"rtsseg." + n.removesuffix(".py").replace("/", ".") for n in NOT_INPUTS}


def imported_modules(source: str, package: str | None = None) -> set[str]:
    """Absolute names of the modules a source file imports (``from rtsseg import x`` counts as ``rtsseg.x``)."""
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level and package:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return out


def input_sources():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel not in NOT_INPUTS:
            yield path, ".".join(("rtsseg", *path.relative_to(PACKAGE).parts[:-1]))
    for path in sorted((REPO / "notebooks").glob("*.py")):
        yield path, None


def test_imported_modules_sees_every_form():
    src = "import rtsseg.pipeline\nfrom rtsseg import bookpages\nfrom ..bookpages import x\n"
    names = imported_modules(src, "rtsseg.ssl")
    assert {"rtsseg.pipeline", "rtsseg.bookpages", "rtsseg.bookpages.x"} <= names
    assert "rtsseg.bookpages" in imported_modules("from .bookpages import write_index\n", "rtsseg")


@pytest.mark.parametrize("path,package", list(input_sources()), ids=lambda v: getattr(v, "name", str(v)))
def test_no_input_imports_a_module_left_out_of_the_fingerprint(path: Path, package):
    bad = {m for m in imported_modules(path.read_text(), package)
           if any(m == e or m.startswith(e + ".") for e in EXCLUDED)}
    assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}, left out of every step's fingerprint " \
                    f"(rtsseg.pipeline.NOT_INPUTS). Fix: move what it needs into an input module"


def test_the_digest_ignores_exactly_the_listed_modules(tmp_path, monkeypatch):
    import rtsseg.pipeline as pl

    pkg = tmp_path / "rtsseg"
    pkg.mkdir()
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "bookpages.py").write_text("y = 1\n")
    monkeypatch.setattr(pl, "PACKAGE", pkg)
    before = package_digest()
    (pkg / "bookpages.py").write_text("y = 2\n")
    assert package_digest() == before
    (pkg / "a.py").write_text("x = 2\n")
    assert package_digest() != before
