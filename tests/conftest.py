"""Shared fixtures: the benchmark data folder, and clean-up of Ray and process groups."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LTE_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    """The real benchmark files; tests marked `data` skip with a reason where they are absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"benchmark data folder {SHARED_DATA} is not present (set LTE_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_faiss_thread():
    """faiss's OpenMP threads spin while waiting; on a shared 2-core box that costs minutes."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(autouse=True)
def _cleanup_distributed_and_ray():
    # In-process DeepSpeed runs leave process-wide state behind (environment variables, HF's
    # global DeepSpeed config, accelerate's shared state) that would turn later model loads
    # and subprocesses into ZeRO-3 runs; every test starts from the state before it.
    saved_env = dict(os.environ)
    yield
    import sys

    os.environ.clear()
    os.environ.update(saved_env)
    if "transformers.integrations.deepspeed" in sys.modules:
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()
    if "torch" in sys.modules:
        import torch

        torch.set_grad_enabled(True)
    if "accelerate.state" in sys.modules:
        from accelerate.state import AcceleratorState, PartialState

        AcceleratorState._reset_state(reset_partial_state=True)
        PartialState._reset_state()

    if "torch.distributed" in sys.modules:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            ray.shutdown()
