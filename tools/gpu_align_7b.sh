#!/usr/bin/env bash
# The 7B-shape alignment check on one GPU, in one command (tools/gpu_align_7b.py says what runs):
#
#   tools/gpu_align_7b.sh OUTDIR                                  # the whole plan
#   SETTINGS="zero3:packed:16:ckpt zero3:padded:16:ckpt" tools/gpu_align_7b.sh OUTDIR --steps 6
#   DRY_RUN=1 tools/gpu_align_7b.sh OUTDIR                        # tiny shape on CPU (tests)
#
# The GPU image has torch, transformers and accelerate but not DeepSpeed: when `import deepspeed`
# fails, the wheels in WHEELS (default: .whl/ in the repository, made here by
# tools/gpu_wheels.sh and carried to the machine) are installed into a private folder first.
# Writes OUTDIR/gpu_align_7b.json and OUTDIR/gpu_align_7b.log.
set -uo pipefail

# ---------------------------------------------------------------- variables
OUTDIR="${1:?usage: tools/gpu_align_7b.sh OUTDIR [tools/gpu_align_7b.py flags]}"
shift
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON=python3
WHEELS="${WHEELS:-$REPO/.whl}"
SITE="${SITE:-/tmp/lte-gpu-site}"
WORK="${WORK:-$(mktemp -d -t gpu-align-7b-XXXXXX)}"
DRY=()
if [[ "${DRY_RUN:-0}" == 1 ]]; then DRY=(--dry-run); fi

# ---------------------------------------------------------------- environment
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
export WANDB_MODE="${WANDB_MODE:-disabled}"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUTDIR"
if ! "$PYTHON" -c "import deepspeed" 2>/dev/null; then
  shopt -s nullglob
  wheels=("$WHEELS"/*.whl)
  if ((${#wheels[@]} == 0)); then
    echo "DeepSpeed is not importable and $WHEELS holds no wheels (make them with tools/gpu_wheels.sh)" >&2
    exit 2
  fi
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "${wheels[@]}" || exit 2
  export PYTHONPATH="$PYTHONPATH:$SITE"   # the wheels hold only what the image lacks
fi
export PYTHON                             # launch/align.sh starts the workers with it
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv \
  | tee "$OUTDIR/gpu_align_7b.log"
"$PYTHON" -c 'import torch, transformers, deepspeed; print("torch", torch.__version__, "transformers", transformers.__version__, "deepspeed", deepspeed.__version__)' \
  | tee -a "$OUTDIR/gpu_align_7b.log"

# ---------------------------------------------------------------- run
cd "$REPO" || exit 1
"$PYTHON" tools/gpu_align_7b.py "${DRY[@]}" --work "$WORK" --out "$OUTDIR" "$@" 2>&1 \
  | tee -a "$OUTDIR/gpu_align_7b.log"
