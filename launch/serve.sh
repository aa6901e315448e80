#!/usr/bin/env bash
# Serve LTE on this machine (local Ray instance, foreground; Ctrl-C stops it).
#   launch/serve.sh [CONFIG] [lte serve flags...]
#   LTE_API_TOKEN=secret launch/serve.sh configs/serve/tiny.yaml --port 8765
# Multi-node: slurm/serve.sh starts a Ray cluster and runs this same command with ray_address=auto.
set -euo pipefail

CONFIG=${1:-configs/serve/tiny.yaml}
shift || true
LTE=${LTE:-lte}

# serve_env.sh is shellchecked on its own (tests/test_align_scripts.py)
# shellcheck disable=SC1091
source "$(dirname "${BASH_SOURCE[0]}")/serve_env.sh"

exec "$LTE" serve --config "$CONFIG" "$@"
