#!/usr/bin/env bash
# Multi-node alignment: one launcher per node (srun), each starting one process per GPU.
#
#   sbatch --nodes 4 slurm/align.sh configs/align/llama2-7b-chat.yaml wandb.project=lte
#   bash slurm/align.sh configs/align/tiny.yaml          # the same command without Slurm
#
# Pre-emption: Slurm sends SIGUSR1 five minutes before the time limit (or on pre-emption with
# --signal); the handler passes it to every training process, which saves checkpoint-N at the end
# of its current step and exits (lte.align.preemption), then requeues the job. The requeued job
# (same job id, same output folder) passes --resume, so it continues from step N by itself.

# ---------------------------------------------------------------- SBATCH
#SBATCH --job-name=lte-align
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --mem=0
#SBATCH --time=24:00:00
#SBATCH --exclusive
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --signal=B:USR1@300
#SBATCH --output=%x-%j.out

set -euo pipefail

# ---------------------------------------------------------------- variables
if [[ $# -lt 1 || "$1" == -* ]]; then
  echo "usage: sbatch slurm/align.sh CONFIG.yaml [lte align flags and key=value overrides]" >&2
  exit 2
fi
CONFIG="$1"
shift
REPO="${REPO:-${SLURM_SUBMIT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}}"
JOB_ID="${SLURM_JOB_ID:-local-$(date +%Y%m%d-%H%M%S)}"
RUNS="${RUNS:-$REPO/runs}"
OUT="${OUT:-$RUNS/$(basename "$CONFIG" .yaml)-$JOB_ID}"   # per job: a requeued job finds its own
NNODES="${SLURM_NNODES:-1}"
GPUS_PER_NODE="${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-}}"
MASTER_PORT="${MASTER_PORT:-$((20000 + ${SLURM_JOB_ID:-0} % 20000))}"
PREEMPT_GRACE_S="${PREEMPT_GRACE_S:-240}"   # for the pre-emption checkpoint (USR1 comes 300 s early)
if [[ -n "${SLURM_JOB_NODELIST:-}" ]]; then
  # first host of the allocation (no `| head`: under pipefail its early exit fails the script)
  HOSTS="$(scontrol show hostnames "$SLURM_JOB_NODELIST")"
  MASTER_ADDR="${MASTER_ADDR:-${HOSTS%%$'\n'*}}"
else
  MASTER_ADDR="${MASTER_ADDR:-127.0.0.1}"
fi

# ---------------------------------------------------------------- environment
export NCCL_DEBUG="${NCCL_DEBUG:-WARN}"
export NCCL_ASYNC_ERROR_HANDLING=1        # a dead peer fails the job instead of hanging it
export TORCH_NCCL_ASYNC_ERROR_HANDLING=1
export NCCL_IB_DISABLE="${NCCL_IB_DISABLE:-0}"
export NCCL_SOCKET_IFNAME="${NCCL_SOCKET_IFNAME:-^lo,docker}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-8}"
export WANDB_RUN_ID="${WANDB_RUN_ID:-lte-align-$JOB_ID}"   # a requeued job logs to the same run
export WANDB_RESUME="${WANDB_RESUME:-allow}"
export MASTER_ADDR MASTER_PORT
mkdir -p "$OUT"
echo "job $JOB_ID: $NNODES node(s), master $MASTER_ADDR:$MASTER_PORT, output $OUT" >&2

# ---------------------------------------------------------------- pre-emption
requeue() {
  echo "job $JOB_ID: time is nearly up: checkpointing, then requeueing; the next start resumes from $OUT" >&2
  # The training processes (python -u -m lte align, started by torchrun or deepspeed) save and
  # stop; the launchers themselves must not get SIGUSR1, whose default action kills them.
  # ("[-]u": a regex that matches the workers but not the command lines that carry it)
  local workers="[-]u -m lte align --config $CONFIG --out $OUT "
  if [[ -n "${SLURM_JOB_ID:-}" ]]; then
    srun --overlap --nodes="$NNODES" --ntasks-per-node=1 pkill -USR1 -f -- "$workers" || true
  else
    pkill -USR1 -f -- "$workers" || true
  fi
  local waited=0
  while kill -0 "$LAUNCH_PID" 2>/dev/null && ((waited < PREEMPT_GRACE_S)); do
    sleep 1
    waited=$((waited + 1))
  done
  if [[ -n "${SLURM_JOB_ID:-}" ]]; then scontrol requeue "$SLURM_JOB_ID"; fi
  stop
}
stop() {
  if [[ -n "${LAUNCH_PID:-}" ]]; then kill -TERM "$LAUNCH_PID" 2>/dev/null || true; fi
  exit 0
}
trap requeue USR1
trap stop TERM   # scancel: stop without requeueing

# ---------------------------------------------------------------- launch
LAUNCH=(env NNODES="$NNODES" MASTER_ADDR="$MASTER_ADDR" MASTER_PORT="$MASTER_PORT")
if [[ -n "$GPUS_PER_NODE" ]]; then LAUNCH+=(NPROC="${GPUS_PER_NODE##*:}"); fi
ALIGN=("$REPO/launch/align.sh" "$CONFIG" --out "$OUT" --resume "$@")
if [[ -n "${SLURM_JOB_ID:-}" ]]; then
  # srun starts one task per node; each task learns its node rank from SLURM_NODEID, which
  # exists only inside the task, hence the single quotes.
  # shellcheck disable=SC2016
  srun --nodes="$NNODES" --ntasks-per-node=1 --kill-on-bad-exit=1 \
    bash -c 'NODE_RANK="$SLURM_NODEID" exec "$@"' bash "${LAUNCH[@]}" "${ALIGN[@]}" &
else
  "${LAUNCH[@]}" NODE_RANK=0 "${ALIGN[@]}" &
fi
LAUNCH_PID=$!
# wait returns early when a trapped signal arrives, so the handler runs while training goes on.
wait "$LAUNCH_PID"
