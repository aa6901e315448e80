#!/usr/bin/env bash
# One-node alignment run: one process per device, arguments after the config passed to `lte align`.
#
#   launch/align.sh configs/align/tiny.yaml --out runs/align-tiny          # CPU: 2 processes
#   NPROC=8 launch/align.sh configs/align/llama2-7b-chat.yaml max_steps=10
#   LAUNCHER=deepspeed launch/align.sh configs/align/llama2-7b-chat.yaml --resume
#
# Environment: NPROC (default: GPUs visible, else 2 CPU processes over gloo), LAUNCHER
# (torchrun | deepspeed), MASTER_ADDR / MASTER_PORT (default: localhost and a free port),
# PYTHON (default: the repository's .venv, else python3). Multi-node runs go through
# slurm/align.sh, which calls this script once per node with NNODES / NODE_RANK set.
set -euo pipefail

# ---------------------------------------------------------------- variables
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
if [[ $# -lt 1 || "$1" == -* ]]; then
  echo "usage: $0 CONFIG.yaml [lte align flags and key=value overrides]" >&2
  exit 2
fi
CONFIG="$1"
shift
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
if [[ -z "${NPROC:-}" ]]; then
  GPUS=0
  if command -v nvidia-smi >/dev/null 2>&1; then GPUS="$(nvidia-smi -L 2>/dev/null | wc -l)"; fi
  if [[ "$GPUS" -gt 0 ]]; then NPROC="$GPUS"; else NPROC=2; fi
fi
LAUNCHER="${LAUNCHER:-torchrun}"
NNODES="${NNODES:-1}"
NODE_RANK="${NODE_RANK:-0}"
MASTER_ADDR="${MASTER_ADDR:-127.0.0.1}"
if [[ -z "${MASTER_PORT:-}" ]]; then
  MASTER_PORT="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
fi

# ---------------------------------------------------------------- environment
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-false}"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
export TRANSFORMERS_OFFLINE="${TRANSFORMERS_OFFLINE:-1}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

# ---------------------------------------------------------------- launch
case "$LAUNCHER" in
  torchrun)
    CMD=("$PYTHON" -m torch.distributed.run --nnodes "$NNODES" --node_rank "$NODE_RANK"
         --nproc_per_node "$NPROC" --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT"
         -m lte align --config "$CONFIG" "$@")
    ;;
  deepspeed)
    CMD=("$PYTHON" -m deepspeed.launcher.runner --num_nodes "$NNODES" --num_gpus "$NPROC"
         --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" --no_ssh --node_rank "$NODE_RANK"
         --no_local_rank
         --module lte align --config "$CONFIG" "$@")
    ;;
  *)
    echo "LAUNCHER=$LAUNCHER is not one of torchrun, deepspeed" >&2
    exit 2
    ;;
esac
echo "+ ${CMD[*]}" >&2
exec "${CMD[@]}"
