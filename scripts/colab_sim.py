#!/usr/bin/env python3
"""Open an executed book notebook as Colab would and run it: a fresh environment where ``import rtsseg`` fails.

    python scripts/colab_sim.py book/smoke/01_data.ipynb -p profile smoke [--keep]
    python scripts/colab_sim.py book/cpu/01_data.ipynb --run-all --profile smoke [--install worktree] [--output X]

What it does, offline: makes a venv whose only extra packages are this interpreter's third-party ones (torch &
co. play Colab's preinstalled stack; ``rtsseg`` itself is not importable there, checked), points the first
(Colab) cell's ``git+<repository>`` at this checkout (``git+file://…``, same pinned commit), executes the notebook
with papermill in that venv's kernel with the given parameters, and checks that the first cell installed
``rtsseg`` at that commit. Exit status 0 when the notebook ran.

``--run-all`` executes the notebook as it is, injected cell included (Colab's "Run all"; no ``-p``); ``--profile P``
selects the profile as a Colab user does, in the first cell (its ``RTSSEG_PROFILE = "..."`` line; a first cell of
an older book without that line gets ``os.environ["RTSSEG_PROFILE"] = P`` appended). ``--install worktree`` makes
the first cell install a copy of this checkout's working tree (tracked and untracked files, uncommitted changes
included) instead of the pinned commit: how a change is tried before it is committed.
"""

from __future__ import annotations

import argparse
import json
import os
import site
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _literal(text: str):
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebook")
    ap.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    ap.add_argument("--keep", action="store_true", help="keep the temporary venv and the executed copy")
    ap.add_argument("--run-all", action="store_true", help="execute as is, injected cell included (no -p)")
    ap.add_argument("--profile", default=None, help="select this profile in the first (Colab) cell")
    ap.add_argument("--install", choices=("commit", "worktree"), default="commit",
                    help="what the first cell installs: the pinned commit (default) or this working tree")
    ap.add_argument("--output", default=None, help="also write the executed notebook here")
    args = ap.parse_args(argv)

    import nbformat
    import papermill

    sys.path.insert(0, str(REPO))
    from rtsseg.book import repo_url

    work = Path(tempfile.mkdtemp(prefix="rtsseg-colab-"))
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # this interpreter's packages (torch, numpy, ipykernel...) stand for Colab's preinstalled stack;
    # a plain path line does not run the editable-install hooks found there, so rtsseg stays unimportable
    host = [p for p in {sysconfig.get_paths()["purelib"], *site.getsitepackages()} if Path(p).is_dir()]
    (Path(purelib) / "colab_stack.pth").write_text("\n".join(host) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_BUILD_ISOLATION="0")
    probe = subprocess.run([str(py), "-c", "import importlib.util as u; print(u.find_spec('rtsseg'))"],
                           capture_output=True, text=True, env=env, cwd=work)
    if probe.stdout.strip() != "None":
        print(f"rtsseg is importable in the fresh venv ({probe.stdout.strip()}): not a Colab-like start", file=sys.stderr)
        return 2

    nb = nbformat.read(args.notebook, as_version=4)
    first = nb.cells[0]
    if "colab-setup" not in first.metadata.get("tags", []):
        print(f"{args.notebook}: the first cell is not the Colab cell (rtsseg.book.prepare_for_book adds it)", file=sys.stderr)
        return 2
    # pip's requirement parser refuses "name @ git+file:///…": the bare URL form installs the same commit
    first.source = first.source.replace(f"rtsseg @ git+{repo_url()}@", f"git+file://{REPO}@")
    commit = first.source.split(f"git+file://{REPO}@", 1)[1].split('"', 1)[0]
    if args.install == "worktree":
        tree = _copy_worktree(work / "rtsseg-src")
        first.source = first.source.replace(f"git+file://{REPO}@{commit}", str(tree))
    if args.profile:
        first.source = _select_profile(first.source, args.profile)
    if args.run_all and args.param:
        print("--run-all executes the notebook as it is: drop the -p values", file=sys.stderr)
        return 2
    src = work / "notebook.ipynb"
    nbformat.write(nb, src)

    subprocess.run([str(py), "-m", "ipykernel", "install", "--prefix", str(venv), "--name", "colabsim"],
                   check=True, env=env, capture_output=True)
    os.environ.update({"JUPYTER_PATH": str(venv / "share" / "jupyter"), "PIP_NO_INDEX": "1",
                       "PIP_NO_BUILD_ISOLATION": "0", "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"})
    os.environ.pop("PYTHONPATH", None)
    params = {k: _literal(v) for k, v in args.param}
    out = work / "executed.ipynb"
    # without parameters papermill injects nothing: the notebook's own injected cell runs, as under "Run all"
    papermill.execute_notebook(str(src), str(out), parameters=params or None, kernel_name="colabsim",
                               cwd=str(work), progress_bar=False)
    if args.output:
        import shutil

        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out, args.output)
    shown = subprocess.run([str(py), "-m", "pip", "show", "-f", "rtsseg"], capture_output=True, text=True, env=env)
    direct = list(Path(purelib).glob("rtsseg-*.dist-info/direct_url.json"))
    installed = json.loads(direct[0].read_text()).get("vcs_info", {}).get("commit_id") if direct else None
    print(shown.stdout.splitlines()[:3])
    if args.install == "worktree":
        url = json.loads(direct[0].read_text()).get("url", "") if direct else ""
        print(f"notebook ran in a fresh venv; rtsseg installed by its first cell from the working tree ({url})")
        ok = url.endswith(str(tree))
    else:
        print(f"notebook ran in a fresh venv; rtsseg installed by its first cell at {installed} (pinned {commit})")
        ok = bool(installed and installed.startswith(commit))
    if args.keep:
        print(f"kept: {work}")
    else:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


def _copy_worktree(dest: Path) -> Path:
    """The files ``git ls-files`` lists (tracked, and untracked but not ignored) copied to ``dest``: a pip
    install from there builds outside this checkout (no build/ or egg-info written into it)."""
    import shutil

    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in listed:
        src = REPO / name
        if name and src.is_file() and not name.startswith(("book/", "runs/", "notebooks/")):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def _select_profile(source: str, profile: str) -> str:
    """The first cell with its ``RTSSEG_PROFILE = "..."`` line set to ``profile`` (what a Colab user edits)."""
    import re

    line = re.compile(r'^RTSSEG_PROFILE = ".*"$', re.M)
    if line.search(source):
        return line.sub(f"RTSSEG_PROFILE = {json.dumps(profile)}", source, count=1)
    return source.rstrip("\n") + f'\nimport os\nos.environ["RTSSEG_PROFILE"] = {json.dumps(profile)}\n'


if __name__ == "__main__":
    sys.exit(main())
