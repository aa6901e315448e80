#!/usr/bin/env bash
# GPU check of the alignment stage: ZeRO-3 bf16 on one GPU, a ~1B-parameter LLaMA built from a
# config (fresh weights), trained on corpus shards for a few minutes; prints tokens/s and MFU.
#
#   tools/gpu_align_check.sh                          # smoke corpus with long prompts, 4 minutes
#   CORPUS=runs/corpus-tiny MODEL=lte:tiny tools/gpu_align_check.sh max_steps=300
#
# Environment: CORPUS (shards from `lte corpus build`; default: a generated smoke corpus of
# ~800-token editing prompts), MODEL (tokenizer + LLaMA config the corpus was tokenized for;
# default: the smoke model's), MINUTES (wall limit of the training, default 4), NPROC (default 1),
# WORK (scratch folder). Arguments are `lte align` key=value overrides.
set -euo pipefail

# ---------------------------------------------------------------- variables
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON=python3
WORK="${WORK:-$(mktemp -d -t gpu-align-XXXXXX)}"
MINUTES="${MINUTES:-4}"
NPROC="${NPROC:-1}"
# ~1.0B parameters: 20 layers x (4 x 2048^2 attention + 3 x 2048 x 5632 MLP) + embeddings
ARCH=(architecture.hidden_size=2048 architecture.intermediate_size=5632
      architecture.num_hidden_layers=20 architecture.num_attention_heads=16
      architecture.num_key_value_heads=16 architecture.max_position_embeddings=2048
      architecture.tie_word_embeddings=false)

# ---------------------------------------------------------------- environment
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export WANDB_MODE="${WANDB_MODE:-disabled}"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv
if [[ -z "${CORPUS:-}" ]]; then
  CORPUS="$WORK/corpus"
  MODEL="${MODEL:-$WORK/model}"
  "$PYTHON" -m lte align smoke-data --out "$WORK" --vocab-size 512 --examples 8192 --shards 4 \
    --distractors 40
fi
MODEL="${MODEL:-lte:tiny}"

# ---------------------------------------------------------------- run
LOG="$WORK/align.log"
# Training runs until the wall limit; SIGINT stops it, and the logged steps are the result.
set +e
NPROC="$NPROC" timeout --signal=INT --kill-after=60 "$((MINUTES * 60))" \
  "$REPO/launch/align.sh" "$REPO/configs/align/tiny.yaml" --out "$WORK/run" \
  --deepspeed "$REPO/configs/deepspeed/zero3.json" \
  corpus="$CORPUS" model.name_or_path="$MODEL" model.dtype=bfloat16 init=scratch "${ARCH[@]}" \
  device=cuda precision=bf16 gradient_checkpointing=true torch_threads=null \
  max_length=2048 micro_batch_size=8 global_batch_size=$((8 * NPROC)) lr=3e-4 \
  max_steps=100000 save_steps=100000 logging_steps=5 verify_save=false \
  "$@" 2>&1 | tee "$LOG"
set -e

# ---------------------------------------------------------------- report
"$PYTHON" - "$LOG" <<'PY'
import re, statistics, sys
text = open(sys.argv[1], errors="replace").read()
rate = [float(x) for x in re.findall(r"'tokens_per_s': '([0-9.e+]+)'", text)][2:]
mfu = [float(x) for x in re.findall(r"'mfu': '([0-9.e+-]+)'", text)][2:]
params = re.findall(r"([0-9.]+)M parameters", text)
print(f"parameters: {params[0] if params else '?'}M")
if not rate:
    sys.exit("no throughput logged: see the log above")
print(f"tokens/s (median of {len(rate)} logs after warm-up): {statistics.median(rate):.0f}")
print(f"MFU: {statistics.median(mfu):.3f}" if mfu else "MFU: not logged (unknown GPU peak; "
      "pass peak_tflops=...)")
PY
