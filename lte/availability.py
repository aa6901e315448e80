"""Optional dependencies and hardware as flags, checked in one place (litgpt's constants.py)."""

from __future__ import annotations

import importlib.util
import os


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


WANDB_AVAILABLE = _has("wandb")


def faiss_gpu_available() -> bool:
    """faiss built with GPU support and at least one CUDA device visible."""
    import faiss

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def wandb_enabled() -> bool:
    """W&B logs when installed and not disabled; without an API key it runs offline."""
    return WANDB_AVAILABLE and os.environ.get("WANDB_MODE", "") != "disabled"
