#!/usr/bin/env bash
# Everything this project checks on a lent GPU, in one run (the lease is short: one call).
#   1. the tiny-study alignments (tools/study_tiny.sh's step 2) for the full and no-out-of-scope
#      corpora, both at once on the GPU (a 2M-parameter model leaves it mostly idle);
#   2. tools/gpu_align_7b.sh: the LLaMA-2-7B shape under ZeRO-3 (+ offload), padded vs packed,
#      micro batch and checkpointing sweep (SETTINGS picks settings; CHECK_7B=0 skips it);
#   3. tools/gpu_align_check.sh (MINUTES > 0): the older ~1B-parameter ZeRO-3 check.
#
#   RUN=runs/study-tiny tools/gpu_session.sh OUTDIR
#
# Needs the corpora built here first (`lte corpus build`, as tools/study_tiny.sh does), and on
# an image without DeepSpeed, the wheels of tools/gpu_wheels.sh in .whl/ (installed by step 2;
# step 1 runs without DeepSpeed). Writes into OUTDIR: align-full.tgz and align-no-oos.tgz
# (final/ whose lte_meta.json has the loss history; logs), gpu_align_7b.json/.log and
# gpu_check.log.
set -uo pipefail

OUTDIR="${1:?usage: tools/gpu_session.sh OUTDIR}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN="${RUN:-runs/study-tiny}"
EPOCHS="${EPOCHS:-8}"           # tools/study_tiny.sh's; 8 x 58k examples in ~130 s on an H200
ALIGN_LIMIT_S="${ALIGN_LIMIT_S:-240}"
MINUTES="${MINUTES:-0}"         # > 0: also the ~1B ZeRO-3 check, this many minutes
CHECK_7B="${CHECK_7B:-1}"
ALIGN_ARGS="${ALIGN_ARGS:-lr=2e-3 global_batch_size=64 micro_batch_size=64}"  # as study_tiny.sh
PYTHON="${PYTHON:-python3}"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false WANDB_MODE=disabled PYTHONUNBUFFERED=1
cd "$REPO" || exit 1
mkdir -p "$OUTDIR"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUTDIR/gpu_check.log"
"$PYTHON" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' \
  | tee -a "$OUTDIR/gpu_check.log"

# ---------------------------------------------------------------- 1. study alignments
read -ra extra <<< "$ALIGN_ARGS"
start=$(date +%s)
for variant in full no-oos; do
  timeout --signal=INT --kill-after=30 "$ALIGN_LIMIT_S" \
    "$PYTHON" -m lte align --config configs/align/tiny.yaml --out "$RUN/align-$variant" \
      corpus="$RUN/corpus-$variant" deepspeed=null epochs="$EPOCHS" max_steps=-1 save_steps=1000 \
      device=cuda torch_threads=null logging_steps=100 "${extra[@]}" > "$RUN/align-$variant.log" 2>&1 &
done
wait
echo "study alignments: $(( $(date +%s) - start )) s" | tee -a "$OUTDIR/gpu_check.log"
for variant in full no-oos; do
  tr "\r" "\n" < "$RUN/align-$variant.log" | grep -v "it/s\]" | tail -n 4
  # optimizer states stay behind unless the run stopped before its final checkpoint
  skip=(--exclude=verify_save.safetensors)
  [[ -d $RUN/align-$variant/final ]] && skip+=(--exclude="checkpoint-*")
  tar -C "$RUN" "${skip[@]}" -czf "$OUTDIR/align-$variant.tgz" "align-$variant.log" "align-$variant"
done

# ---------------------------------------------------------------- 2. 7B-shape check
if [[ $CHECK_7B == 1 ]]; then
  PYTHON="$PYTHON" bash tools/gpu_align_7b.sh "$OUTDIR"
fi

# ---------------------------------------------------------------- 3. ~1B ZeRO-3 check
[[ $MINUTES == 0 ]] && exit 0
MINUTES="$MINUTES" WORK=/tmp/gpu-align-check PYTHON="$PYTHON" \
  bash tools/gpu_align_check.sh 2>&1 | grep -v "it/s\]$" | tail -n 60 | tee -a "$OUTDIR/gpu_check.log"
