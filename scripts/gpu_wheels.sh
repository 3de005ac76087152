#!/usr/bin/env bash
# Download the wheels of scripts/gpu-wheels.txt for the GPU machine (CPython 3.12, manylinux x86-64) into .whl/
# and check that they install together with the papermill / jupytext / ipykernel entry points.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
grep -q '^/.whl/' "$(git rev-parse --git-common-dir)/info/exclude" 2>/dev/null \
  || echo /.whl/ >> "$(git rev-parse --git-common-dir)/info/exclude"
PLATS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_26_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_5_x86_64 manylinux1_x86_64; do
  PLATS+=(--platform "$p")
done
grep -v '^#' scripts/gpu-wheels.txt | xargs python3 -m pip download -q --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp "${PLATS[@]}" -d .whl
echo "wheels: $(ls .whl/*.whl | wc -l) files, $(du -sh .whl | cut -f1)"
python3 scripts/check_wheels.py .whl
