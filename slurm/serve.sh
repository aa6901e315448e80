#!/usr/bin/env bash
# Serve LTE on a Slurm allocation: a Ray head on the first node, Ray workers on the others, then
# `lte serve` joins the cluster (ray_address=auto) and deploys the memory shards and the Generator
# replicas: with the GPU preset's generator_replicas: 0, one per GPU of the whole allocation
# (counted once every node has joined, below), the shards on GPUs beside them.
#   LTE_API_TOKEN=secret sbatch slurm/serve.sh [CONFIG] [lte serve flags...]
# Without Slurm (one node): launch/serve.sh CONFIG.
#
# ============================== SBATCH ==============================
#SBATCH --job-name=lte-serve
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --time=24:00:00
#SBATCH --output=logs/%x-%j.out

set -euo pipefail

# ============================== variables ==============================
CONFIG=${1:-configs/serve/llama2-7b-chat.yaml}
shift || true
RAY_PORT=${RAY_PORT:-6379}
HTTP_PORT=${HTTP_PORT:-8000}
WAIT_TIMEOUT_S=${WAIT_TIMEOUT_S:-600}
LTE=${LTE:-lte}
RAY=${RAY:-ray}

# Ray's token authentication: every Ray process (head, workers, lte serve) reads the same secret
# from a file on storage all nodes share; without it anyone reaching a Ray port could run code.
RAY_AUTH_TOKEN_PATH=${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/lte-serve-auth-token}

# ============================== environment ==============================
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH
if [[ ! -s "$RAY_AUTH_TOKEN_PATH" ]]; then
  mkdir -p "$(dirname "$RAY_AUTH_TOKEN_PATH")"
  (umask 077 && python -c 'import secrets; print(secrets.token_hex(32))' > "$RAY_AUTH_TOKEN_PATH")
fi
REPO="${REPO:-${SLURM_SUBMIT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}}"
# serve_env.sh is shellchecked on its own (tests/test_align_scripts.py)
# shellcheck disable=SC1091
source "$REPO/launch/serve_env.sh"
if [[ -z "${LTE_API_TOKEN:-}" ]]; then
  echo "slurm/serve.sh: set LTE_API_TOKEN (the service listens beyond loopback)" >&2
  exit 2
fi

mapfile -t NODES < <(scontrol show hostnames "${SLURM_JOB_NODELIST:-$(hostname)}")
N_NODES=${#NODES[@]}
HEAD=${NODES[0]}
HEAD_IP=$(srun --nodes=1 --ntasks=1 -w "$HEAD" hostname --ip-address | awk '{print $1}')
CPUS=${SLURM_CPUS_PER_TASK:-$(nproc)}
GPUS=${SLURM_GPUS_PER_NODE:-0}
GPUS=${GPUS##*:}

cleanup() { srun --overlap --nodes="$N_NODES" --ntasks-per-node=1 "$RAY" stop --force || true; }
trap cleanup EXIT

# ============================== launch ==============================
# Ray's processes do not get the API token (lte serve hands the ingress its digest only).
srun --nodes=1 --ntasks=1 -w "$HEAD" env -u LTE_API_TOKEN \
  "$RAY" start --head --node-ip-address="$HEAD_IP" --port="$RAY_PORT" \
  --num-cpus="$CPUS" --num-gpus="$GPUS" --include-dashboard=false --block &

# Workers retry until the head answers; the head is then polled until every node has joined.
for node in "${NODES[@]:1}"; do
  srun --nodes=1 --ntasks=1 -w "$node" env -u LTE_API_TOKEN bash -c "
    until $RAY health-check --address=$HEAD_IP:$RAY_PORT >/dev/null 2>&1; do sleep 2; done
    exec $RAY start --address=$HEAD_IP:$RAY_PORT --num-cpus=$CPUS --num-gpus=$GPUS --block" &
done

deadline=$((SECONDS + WAIT_TIMEOUT_S))
until [[ "$(RAY_ADDRESS=$HEAD_IP:$RAY_PORT python -c \
      'import ray; ray.init(); print(sum(n["Alive"] for n in ray.nodes()))' 2>/dev/null)" \
      == "$N_NODES" ]]; do
  if (( SECONDS > deadline )); then
    echo "slurm/serve.sh: Ray cluster not complete after ${WAIT_TIMEOUT_S}s" >&2
    exit 1
  fi
  sleep 5
done
echo "slurm/serve.sh: Ray cluster up: $N_NODES nodes, head $HEAD_IP:$RAY_PORT"

# The head node runs the driver, the single-node command joined to the cluster; Serve's proxy
# binds the configured host on HTTP_PORT.
RAY_ADDRESS="$HEAD_IP:$RAY_PORT" LTE="$LTE" srun --overlap --nodes=1 --ntasks=1 -w "$HEAD" \
  "$REPO/launch/serve.sh" "$CONFIG" --port "$HTTP_PORT" ray_address="$HEAD_IP:$RAY_PORT" "$@"
