# shellcheck shell=bash
# Environment of the serving tier, sourced by launch/serve.sh (the driver) and slurm/serve.sh
# (before `ray start`, so replicas on every node inherit it): offline hub, no Ray auth prompt.
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
export TRANSFORMERS_OFFLINE=${TRANSFORMERS_OFFLINE:-1}
export TOKENIZERS_PARALLELISM=false
export RAY_SERVE_THROUGHPUT_OPTIMIZED=${RAY_SERVE_THROUGHPUT_OPTIMIZED:-1}  # as lte serve (server.py)
