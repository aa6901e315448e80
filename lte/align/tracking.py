"""Throughput, MFU and W&B for the alignment run (the Trainer's W&B callback; key check shared
with every other command's W&B run, lte.tracking).

Tokens/s counts non-padding tokens over all ranks (the Trainer gathers them). MFU uses the
PaLM estimate of training FLOPs per token, 6 N + 12 L H S (weights plus attention), against the
device's dense bf16 peak; it is logged on GPU only, where a peak is known.
"""

from __future__ import annotations

import os
import statistics

from lte.availability import wandb_enabled
from lte.config import AlignConfig
from lte.tracking import has_wandb_key

# Dense bf16 peak TFLOPS per device, keyed by a name fragment of torch.cuda.get_device_name().
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0,
               "L4": 121.0, "V100": 125.0}


def peak_tflops(cfg: AlignConfig) -> float | None:
    if cfg.peak_tflops:
        return cfg.peak_tflops
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def flops_per_token(model_config, n_params: int, seq_len: float) -> float:
    layers = getattr(model_config, "num_hidden_layers", 0)
    hidden = getattr(model_config, "hidden_size", 0)
    return 6.0 * n_params + 12.0 * layers * hidden * seq_len


class Throughput:
    """Tokens/s and MFU between two log calls."""

    def __init__(self, flops_per_token: float, peak_tflops: float | None, world_size: int):
        self.flops_per_token = flops_per_token
        self.peak = peak_tflops
        self.world = world_size
        self.last_tokens = 0
        self.last_time: float | None = None

    def update(self, tokens_seen: int, now: float) -> dict:
        out = {}
        if self.last_time is not None and now > self.last_time and tokens_seen > self.last_tokens:
            rate = (tokens_seen - self.last_tokens) / (now - self.last_time)
            out["tokens_per_s"] = round(rate, 1)
            if self.peak:
                out["mfu"] = round(rate * self.flops_per_token / (self.peak * 1e12 * self.world), 4)
        self.last_tokens, self.last_time = tokens_seen, now
        return out


def peak_memory() -> dict:
    """This rank's peak GPU memory so far (what a micro batch / checkpointing setting costs)."""
    import torch

    if not torch.cuda.is_available():
        return {}
    return {"peak_gpu_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}


class ComputedTokens:
    """Tokens the model computed, padding included, per second over all ranks: beside the useful
    (non-padding) tokens/s it shows what padding costs. Every rank calls `update` (a collective)."""

    def __init__(self, world_size: int):
        self.local = 0
        self.rate = Throughput(0.0, None, world_size)

    def count(self, inputs: dict) -> None:
        self.local += int(inputs["input_ids"].numel())

    def update(self, now: float) -> dict:
        from lte.align.distributed import sum_over_ranks

        out = self.rate.update(sum_over_ranks(self.local), now)
        return {"computed_tokens_per_s": out["tokens_per_s"]} if out else {}


def training_log(log_history: list[dict]) -> dict:
    """The Trainer's per-step log and a throughput summary, for lte_meta.json (a resumed run's
    history includes the steps before the resume, restored from the checkpoint)."""
    keys = ("step", "loss", "grad_norm", "learning_rate", "tokens_per_s", "computed_tokens_per_s",
            "num_input_tokens_seen", "mfu", "peak_gpu_mem_gib")
    steps = [{k: h[k] for k in keys if k in h} for h in log_history if "loss" in h]
    summary = next((h for h in log_history if "train_runtime" in h), {})

    def median(key: str) -> float | None:
        values = [h[key] for h in steps if key in h]
        return statistics.median(values) if values else None

    return {"loss_history": steps,
            "throughput": {"tokens_per_s_median": median("tokens_per_s"),
                           "mfu_median": median("mfu"),
                           "train_runtime_s": summary.get("train_runtime")}}


def setup_wandb(cfg: AlignConfig, run_name: str) -> list[str]:
    """The Trainer's `report_to`: W&B when a project is configured (offline without a key)."""
    if not cfg.wandb.project or not wandb_enabled():
        return []
    os.environ["WANDB_PROJECT"] = cfg.wandb.project
    if cfg.wandb.entity:
        os.environ["WANDB_ENTITY"] = cfg.wandb.entity
    if cfg.wandb.tags:
        os.environ["WANDB_TAGS"] = ",".join(cfg.wandb.tags)
    if not has_wandb_key():
        os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_NAME", run_name)
    return ["wandb"]


def log_run_config(extra: dict) -> None:
    """Adds the corpus manifest and the resolved config to the active W&B run, if any."""
    import wandb

    if wandb.run is not None:
        wandb.config.update(extra, allow_val_change=True)
