#!/usr/bin/env bash
# The gpu-short edition of the book on one GPU machine, in one command (see /work/coord/gpu-call.md and README):
#
#   scripts/gpu_run.sh [gpu_run.py options]       on the GPU machine: wheels from .whl/, data packs from .gpu/
#   scripts/gpu_run.sh --dry-run                  on a CPU: the same script at smoke scale (tests/test_gpu_run.py)
#
# 1. installs the carried wheels (.whl/*.whl: papermill, jupytext, ipykernel, ... built for Python 3.12) into
#    /tmp/site, 2. registers a Jupyter kernel for this python, 3. prints the GPU and torch version and checks
#    CUDA, 4. runs the profile's steps one at a time with papermill under a wall-clock budget, writing to $OUT
#    after each step (timings.json, notebooks.tar.gz), 5. runs benchmarks/bench_mfu.py --suite gpu if present.
# Everything printed also goes to $OUT/log.txt. Options after the script name go to scripts/gpu_run.py
# (--budget-s, --bench-s, --steps, --set STEP:key=value, --calibrate STEP=SECONDS, ...). The run records name
# the commit from $RTSSEG_COMMIT: the machine's copy of the tree has no up-to-date .git, so call it as
#   RTSSEG_COMMIT=$(git rev-parse --short=12 HEAD) bash scripts/gpu_run.sh ...   (from a clean tree)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
REPO=$PWD
DRY=0
for a in "$@"; do [ "$a" = "--dry-run" ] && DRY=1; done
export OUT=${OUT:-$REPO/runs/gpu-out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
unset MPLBACKEND  # the kernel then shows figures inline (ipykernel sets matplotlib_inline)
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=10 PIP_DISABLE_PIP_VERSION_CHECK=1
T0=$(date +%s)

if [ "$DRY" = 0 ]; then
  PY=${PYTHON:-python3}
  ls .whl/*.whl >/dev/null 2>&1 || { echo "gpu_run: no wheels in .whl/ (carry .whl; see scripts/gpu_wheels.sh)"; exit 2; }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "gpu_run: installing .whl/*.whl failed"; exit 2; }
  export PYTHONPATH=/tmp/site:$REPO
  export RTSSEG_DATA=${RTSSEG_DATA:-$REPO/.gpu}
  [ -f "$RTSSEG_DATA/tinyimagenet.pack" ] || { echo "gpu_run: no packs in $RTSSEG_DATA (carry .gpu; rtsseg pack .gpu)"; exit 2; }
  ARGS=(--profile gpu-short)
else
  # CPU smoke check: this python (the project's venv), data packed small from $RTSSEG_DATA, the smoke profile
  PY=${PYTHON:-python3}
  export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
  export RTSSEG_RUNS=${RTSSEG_RUNS:-$REPO/runs}
  PACKS=$RTSSEG_RUNS/dry-run-packs
  if [ ! -f "$PACKS/camvid.pack" ]; then
    "$PY" -m rtsseg.cli pack "$PACKS" --train-per-class 4 --val-per-class 2 --camvid-max-images 8 || exit 2
  fi
  export RTSSEG_DATA=$PACKS
  ARGS=(--profile smoke --bench-args "--suite cpu --quick")
fi

# a kernel named python3 that runs this python (papermill starts notebooks with it)
"$PY" -m ipykernel install --prefix /tmp/rtsseg-jupyter --name python3 --display-name "Python 3 (rtsseg)" >/dev/null \
  || { echo "gpu_run: ipykernel install failed"; exit 2; }
export JUPYTER_PATH=/tmp/rtsseg-jupyter/share/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}
echo "gpu_run: set-up took $(( $(date +%s) - T0 )) s; python $("$PY" -c 'import sys; print(sys.version.split()[0])'), data $RTSSEG_DATA"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv

"$PY" scripts/gpu_run.py "${ARGS[@]}" "$@"
rc=$?
echo "gpu_run: finished with rc $rc after $(( $(date +%s) - T0 )) s"
exit $rc
