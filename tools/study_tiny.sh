#!/usr/bin/env bash
# Tiny-scale reproduction of the LTE study on real data (issue 6, item 6):
#   corpus from the knowedit preset (and the paper's ablation without out-of-scope data)
#   -> the tiny model aligned from scratch on CPU (or a GPU where one is at hand)
#   -> lte eval on ZsRE-test-all and counterfact-edit-1k, batch and sequential, with baselines.
#
#   tools/study_tiny.sh                          # the full study (hours on 2 CPU cores)
#   STEPS=200 SIZES=10,100 tools/study_tiny.sh   # a small version (tens of minutes)
#   RUN=runs/x BASE_MODEL=DIR tools/study_tiny.sh # another folder; a base model for prompt-only
#   ALIGN_ARGS="torch_threads=2" tools/study_tiny.sh   # extra `lte align` overrides
#
# Every stage skips its work when its output is already there, so a stopped study resumes.
# A tiny model has no world knowledge: portability (reasoning over facts it never knew) and
# prompt-only on a base model (it answers nothing) are not meaningful here; edit success,
# locality, retrieval and the protocol/ablation contrasts are.
set -euo pipefail

# ---- variables ------------------------------------------------------------------------------
RUN=${RUN:-runs/study-tiny}
STEPS=${STEPS:-3000}            # alignment optimizer steps per model (-1: whole epochs)
SIZES=${SIZES:-100,1000}        # numbers of edits N evaluated
PROTOCOLS=${PROTOCOLS:-batch,sequential}
BASE_MODEL=${BASE_MODEL:-}      # model before alignment, for prompt-only (empty: skipped)
ALIGN_ARGS=${ALIGN_ARGS:-}      # more `lte align` overrides, e.g. "lr=5e-4 model.name_or_path=DIR"
LTE=${LTE:-.venv/bin/lte}
NICE=${NICE:-nice -n 10}
export RAY_AUTH_MODE=disabled WANDB_MODE=${WANDB_MODE:-offline} HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

# ---- 1. corpora -----------------------------------------------------------------------------
for variant in full no-oos; do
  extra=()
  [[ $variant == no-oos ]] && extra=(out_of_scope=false)
  if [[ ! -f $RUN/corpus-$variant/manifest.json ]]; then
    $NICE $LTE corpus build --config configs/corpus/knowedit.yaml --out "$RUN/corpus-$variant" \
      --engine local "${extra[@]}"
  fi
done

# ---- 2. alignment (single process, no DeepSpeed on CPU; launch/align.sh on GPUs) -------------
for variant in full no-oos; do
  if [[ ! -f $RUN/align-$variant/final/config.json ]]; then
    $NICE $LTE align --config configs/align/tiny.yaml --out "$RUN/align-$variant" \
      corpus="$RUN/corpus-$variant" deepspeed=null max_steps="$STEPS" save_steps=1000 $ALIGN_ARGS
  fi
done

# ---- 3. evaluation --------------------------------------------------------------------------
base=()
[[ -n $BASE_MODEL ]] && base=(--base-model "$BASE_MODEL")
$NICE $LTE eval --config configs/eval/knowedit-tiny.yaml --model "$RUN/align-full/final" \
  "${base[@]}" --protocol "$PROTOCOLS" --sizes "$SIZES" --out "$RUN/eval-full"
# The ablation: LTE only, aligned without out-of-scope data.
$NICE $LTE eval --config configs/eval/knowedit-tiny.yaml --model "$RUN/align-no-oos/final" \
  --methods lte --protocol "$PROTOCOLS" --sizes "$SIZES" --out "$RUN/eval-no-oos"

echo "study: tables in $RUN/eval-full/results.md and $RUN/eval-no-oos/results.md"
