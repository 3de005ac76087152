"""Run a profile's notebooks one step at a time under a wall-clock budget, shipping results as they finish.

Called by ``scripts/gpu_run.sh`` (which installs the carried wheels and registers the kernel first). For each
step: ``rtsseg run --profile P --step S --no-book`` in its own process group, killed at the step's cap or at
the overall deadline; then, at once, ``$OUT/timings.json`` (per-step status, wall time, return code) and
``$OUT/notebooks.tar.gz`` (every executed notebook so far, the partly executed notebook of a failed step as
``failed/<step>.ipynb``, and the results ``runs/<profile>/results/*.csv`` and ``*.npz``: chapter 5's per-image,
per-head scores, chapter 7's per-run rows, chapters 2-3's per-epoch histories) are rewritten atomically, so a
run stopped from outside still returns what finished. Steps that need a failed step still run (they
fail fast, or use what exists), and a failure never stops the run. Then, when present and time is left,
``benchmarks/bench_mfu.py --suite gpu`` with its own cap (JSON to ``$OUT/bench_mfu.json``).

Files under ``$OUT`` (at most 5, each well under 16 MiB): ``log.txt`` (written by gpu_run.sh), ``env.json``,
``timings.json``, ``notebooks.tar.gz``, ``bench_mfu.json``. All 8 notebooks travel in one archive (the
machine returns at most 8 files); ``notebooks.tar.gz`` larger than 15 MiB is split into ``notebooks-1.tar.gz``,
``notebooks-2.tar.gz``. Unpack locally with ``tar -xzf notebooks.tar.gz`` in the repository root.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: Seconds each step may take at most in gpu-short (the overall deadline cuts in first when it comes sooner).
STEP_CAPS_S = {
    "01_data": 60, "02_pretrain_barlow_twins": 300, "03_pretrain_dino": 240, "04_supervised_baseline": 150,
    "05_attention_maps": 90, "06_embeddings": 90, "07_segmentation": 180, "08_findings": 60,
}
MAX_TAR_BYTES = 15 * 2**20


def log(msg: str) -> None:
    print(f"[gpu-run {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def environment(dry_run: bool) -> dict:
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
           "host": platform.node(), "dry_run": dry_run}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), sms=p.multi_processor_count,
                   cuda=torch.version.cuda, bf16=torch.cuda.is_bf16_supported())
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        env["nvidia_smi"] = smi.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        env["nvidia_smi"] = None
    return env


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc), children first: the notebook kernel runs in a session of its
    own (jupyter_client starts it so), so killing the step's process group alone would leave it on the GPU."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def run_capped(cmd: list[str], cap_s: float) -> tuple[int, float, bool]:
    """Run ``cmd`` in its own process group; on timeout SIGTERM it and every descendant (the kernel too),
    then SIGKILL what is left after 15 s. Returns (return code, wall seconds, timed out)."""
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True)
    try:
        rc = proc.wait(timeout=max(cap_s, 1))
        return rc, time.time() - t0, False
    except subprocess.TimeoutExpired:
        victims = descendants(proc.pid)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in victims:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
            victims = [pid for pid in victims if Path(f"/proc/{pid}").exists()]
            if proc.poll() is not None and not victims:
                break
        return 124, time.time() - t0, True


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def ship_notebooks(profile: str, out: Path) -> list[str]:
    """Rewrite ``out/notebooks*.tar.gz`` with the executed notebooks, failed runs and results tables."""
    from rtsseg.config import runs_root
    from rtsseg.profiles import BOOK

    members = sorted((BOOK / profile).glob("*.ipynb"))
    members += sorted((runs_root() / profile / "failed").glob("*.ipynb"))
    members += sorted(p for p in (runs_root() / profile / "results").glob("*") if p.suffix in (".csv", ".npz"))
    members += sorted((runs_root() / profile / "done").glob("*.json"))
    archives: list[list[tuple[Path, str]]] = [[]]
    size = 0
    for path in members:
        arcname = (path.relative_to(REPO) if path.is_relative_to(REPO)
                   else Path("runs") / path.relative_to(runs_root())).as_posix()
        n = path.stat().st_size
        if size + n > MAX_TAR_BYTES and archives[-1]:
            archives.append([])
            size = 0
        archives[-1].append((path, arcname))
        size += n
    names = ["notebooks.tar.gz"] if len(archives) == 1 else [f"notebooks-{i + 1}.tar.gz" for i in range(len(archives))]
    for name, group in zip(names, archives):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for path, arcname in group:
                tar.add(path, arcname=arcname)
        tmp = out / f"{name}.tmp"
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, out / name)
    for stale in out.glob("notebooks*.tar.gz"):
        if stale.name not in names:
            stale.unlink()
    return names


def parse_sets(items: list[str]) -> dict[str, list[str]]:
    """``--set 03:epochs=40`` -> {"03_pretrain_dino": ["epochs=40"]}."""
    from rtsseg.profiles import step

    sets: dict[str, list[str]] = {}
    for item in items:
        name, _, kv = item.partition(":")
        if not kv or "=" not in kv:
            raise SystemExit(f"--set {item!r}: expected STEP:key=value, e.g. 03:epochs=40")
        sets.setdefault(step(name).name, []).append(kv)
    return sets


def main(argv: list[str] | None = None) -> int:
    from rtsseg.profiles import PROFILES, STEPS, step

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="gpu-short", choices=sorted(PROFILES))
    p.add_argument("--steps", nargs="+", default=None, help="steps to run (names or numbers; default: all)")
    p.add_argument("--budget-s", type=float, default=540, help="wall-clock budget of this whole run, seconds")
    p.add_argument("--bench-s", type=float, default=90, help="cap of bench_mfu.py (0: skip), kept back from the steps")
    p.add_argument("--bench-args", default="--suite gpu --device cuda --no-reference",
                   help="arguments of benchmarks/bench_mfu.py (its JSON goes to $OUT/bench_mfu.json)")
    p.add_argument("--set", action="append", default=[], help="per-step override STEP:key=value (repeatable)")
    p.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "runs" / "gpu-out"))
    p.add_argument("--dry-run", action="store_true", help="CPU smoke check: no CUDA needed, per-step caps ignored")
    p.add_argument("--calibrate", action="append", default=[], metavar="STEP=SECONDS",
                   help="size chapters 02/03/04 to these budgets from one measured epoch each "
                        "(scripts/gpu_calibrate.py; its JSON goes to $OUT/calibration.json); --set still wins")
    p.add_argument("--calibrate-cap-s", type=float, default=120, help="cap of the calibration itself")
    args = p.parse_args(argv)

    deadline = time.time() + args.budget_s
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = environment(args.dry_run)
    log(f"python {env['python']}, torch {env['torch']}, CUDA available: {env['cuda_available']}, "
        f"GPU: {env.get('gpu', 'none')} ({env.get('nvidia_smi')})")
    env.update(profile=args.profile, data_root=os.environ.get("RTSSEG_DATA"), budget_s=args.budget_s)
    write_json(out / "env.json", env)
    if not args.dry_run and not env["cuda_available"]:
        log("no CUDA device: stopping (use --dry-run on a CPU machine)")
        return 2

    wanted = [s.name for s in STEPS] if not args.steps else [step(n).name for n in args.steps]
    calibration = []
    if args.calibrate:
        cmd = [sys.executable, str(REPO / "scripts" / "gpu_calibrate.py"), "--profile", args.profile,
               "--json", str(out / "calibration.json")]
        for share in args.calibrate:
            cmd += ["--share", share]
        log(f"calibrate: start (cap {args.calibrate_cap_s:.0f} s) {' '.join(cmd[1:])}")
        rc, wall, timed_out = run_capped(cmd, args.calibrate_cap_s)
        if rc == 0 and (out / "calibration.json").is_file():
            calibration = json.loads((out / "calibration.json").read_text())["sets"]
            log(f"calibrate: ok in {wall:.1f} s -> {calibration}")
        else:
            log(f"calibrate: {'timed out' if timed_out else f'failed (rc {rc})'} in {wall:.1f} s: the profile's epochs stay")
    sets = parse_sets(calibration + args.set)  # an explicit --set wins over the calibration
    bench = REPO / "benchmarks" / "bench_mfu.py"
    reserve = args.bench_s if (args.bench_s > 0 and bench.is_file()) else 0
    timings = {"env": env, "steps": {}, "bench": None}
    for name in wanted:
        left = deadline - reserve - time.time()
        cap = left if args.dry_run else min(STEP_CAPS_S.get(name, 120), left)  # dry run: the budget alone
        if cap < 5:
            log(f"{name}: skipped, no time left in the budget")
            timings["steps"][name] = {"status": "skipped (budget)", "wall_s": 0.0}
            write_json(out / "timings.json", timings)
            continue
        cmd = [sys.executable, "-m", "rtsseg.cli", "run", "--profile", args.profile, "--step", name, "--no-book"]
        for kv in sets.get(name, []):
            cmd += ["-p", kv]
        log(f"{name}: start (cap {cap:.0f} s) {' '.join(cmd[3:])}")
        rc, wall, timed_out = run_capped(cmd, cap)
        status = "ok" if rc == 0 else ("timed out" if timed_out else f"failed (rc {rc})")
        log(f"{name}: {status} in {wall:.1f} s")
        timings["steps"][name] = {"status": status, "wall_s": round(wall, 1), "cap_s": round(cap), "rc": rc,
                                  "overrides": sets.get(name, [])}
        timings["shipped"] = ship_notebooks(args.profile, out)
        write_json(out / "timings.json", timings)

    if reserve:
        cap = max(0.0, deadline - time.time()) if not args.dry_run else args.bench_s
        source = bench.read_text()
        known = [t for t in args.bench_args.split() if not t.startswith("--") or f'"{t}"' in source]
        if len(known) != len(args.bench_args.split()):
            log(f"bench: options unknown to {bench.name} dropped: {set(args.bench_args.split()) - set(known)}")
        cmd = [sys.executable, str(bench), *known, "--json", str(out / "bench_mfu.json")]
        log(f"bench: start (cap {cap:.0f} s) {' '.join(cmd[1:])}")
        rc, wall, timed_out = run_capped(cmd, cap) if cap >= 5 else (None, 0.0, False)
        timings["bench"] = {"status": "ok" if rc == 0 else ("timed out" if timed_out else f"failed (rc {rc})"),
                            "wall_s": round(wall, 1), "args": args.bench_args}
        log(f"bench: {timings['bench']['status']} in {wall:.1f} s")
    else:
        log("bench: benchmarks/bench_mfu.py absent or --bench-s 0: skipped")
    timings["total_s"] = round(time.time() - (deadline - args.budget_s), 1)
    write_json(out / "timings.json", timings)
    failed = [n for n, t in timings["steps"].items() if t["status"] != "ok"]
    log(f"done in {timings['total_s']:.0f} s; steps not ok: {failed or 'none'}; files in {out}: "
        f"{sorted(p.name for p in out.iterdir())}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
