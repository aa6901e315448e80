#!/usr/bin/env bash
# The wheels tools/gpu_align_7b.sh installs on a GPU image that has torch and transformers but
# not DeepSpeed (run here, where PyPI is reachable; the versions are constraints.txt's):
#
#   tools/gpu_wheels.sh          # -> .whl/ ; keep it out of git: echo /.whl/ >> .git/info/exclude
#
# then carry .whl to the GPU machine (device tool: carry [".whl"]) and run tools/gpu_align_7b.sh.
set -euo pipefail

# ---------------------------------------------------------------- variables
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-$REPO/.whl}"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON=python3
# DeepSpeed's own needs that the image lacks (its other ones, ninja, psutil, py-cpuinfo,
# msgpack, einops, nvidia-ml-py, are there)
NEEDS="hjson|pydantic|pydantic_core|annotated-types|typing-inspection"
pins() { grep -iE "^($1)==" "$REPO/constraints.txt"; }

# ---------------------------------------------------------------- build
mkdir -p "$DEST"
# DeepSpeed is an sdist only: a pure-Python wheel; its ops compile just in time, where needed
DS_BUILD_OPS=0 "$PYTHON" -m pip wheel -q --no-deps --no-build-isolation -w "$DEST" "$(pins deepspeed)"
mapfile -t needs < <(pins "$NEEDS")
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$DEST" "${needs[@]}"
ls -l "$DEST"
