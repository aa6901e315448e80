"""Every DeepSpeed and torch.distributed call of the alignment stage lives here.

The rest of `lte.align` asks this module for the rank, the world size, the DeepSpeed config and
the partitioning of a parameter, so it never branches on ZeRO stage or on how it was launched
(torchrun, the deepspeed launcher, srun, or a plain `python` call).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path

from lte.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]
_LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def world_size() -> int:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def launched() -> bool:
    """True under a launcher (torchrun, deepspeed, srun wrapper) that set the rendezvous vars."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup_single_process() -> bool:
    """Let DeepSpeed run in a plain `python` process (it always wants a process group).

    True when this call set the rendezvous up, so the caller also owns the group's teardown.
    """
    if launched():
        return False
    os.environ.update({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())})
    return True


def clear_single_process() -> None:
    for var in _LAUNCH_VARS:
        os.environ.pop(var, None)


def skip_cpu_shm_kernel() -> None:
    """On CPU, DeepSpeed compiles a shared-memory all-reduce kernel (~2 min, once per machine).

    gloo does the same reductions for the model sizes that train on CPU, so the build is skipped;
    GPU runs use NCCL and never build it.
    """
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def init_deepspeed_comm(use_cpu: bool) -> None:
    """Bring up DeepSpeed's communicator before the model is built.

    Under ZeRO-3 transformers builds the model inside `deepspeed.zero.Init`, which reads the world
    size from DeepSpeed's communicator; left uninitialised it sees one process and rejects the
    batch arithmetic. It adopts the process group the Trainer's arguments already created.
    """
    import deepspeed

    deepspeed.init_distributed(dist_backend="gloo" if use_cpu else "nccl")


def resolve_path(path: str) -> Path:
    """A config path as given, else relative to the repository (presets name configs/...)."""
    p = Path(path)
    if p.is_file() or p.is_absolute():
        return p
    return REPO_ROOT / p if (REPO_ROOT / p).is_file() else p


def load_deepspeed_config(path: str) -> dict:
    p = resolve_path(path)
    if not p.is_file():
        shipped = sorted(x.name for x in (REPO_ROOT / "configs" / "deepspeed").glob("*.json"))
        raise UserError(f"DeepSpeed config not found; shipped: {', '.join(shipped) or 'none'}",
                        file=str(path), field="deepspeed")
    try:
        cfg = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"not valid JSON ({e.msg}, line {e.lineno})", file=str(p)) from None
    stage = cfg.get("zero_optimization", {}).get("stage", 0)
    if stage not in (0, 1, 2, 3):
        raise UserError(f"zero_optimization.stage={stage!r} is not one of 0, 1, 2, 3",
                        file=str(p), field="zero_optimization.stage")
    return cfg


def zero_stage(ds_config: dict | None) -> int:
    return int((ds_config or {}).get("zero_optimization", {}).get("stage", 0))


def partition_summary(model) -> dict:
    """How much of the model this rank holds: under ZeRO-3 `local_numel` ~ `full_numel / world`."""
    full = local = 0
    partitioned = False
    for p in model.parameters():
        if hasattr(p, "ds_numel"):  # ZeRO-3: p is an empty placeholder, p.ds_tensor the shard
            partitioned = True
            full += p.ds_numel
            local += p.ds_tensor.numel()
        else:
            full += p.numel()
            local += p.numel()
    return {"rank": rank(), "world_size": world_size(), "partitioned": partitioned,
            "full_numel": full, "local_numel": local}


@contextlib.contextmanager
def outside_zero3():
    """Load a model as a plain one, on one rank, while a ZeRO-3 run is live.

    transformers builds every model inside `deepspeed.zero.Init` while a ZeRO-3 config is
    registered; done on one rank only, that partitioning is a collective its peers never join.
    """
    from transformers.integrations import deepspeed as hf_ds

    saved = hf_ds._hf_deepspeed_config_weak_ref
    hf_ds._hf_deepspeed_config_weak_ref = None
    try:
        yield
    finally:
        hf_ds._hf_deepspeed_config_weak_ref = saved


def broadcast_object(obj):
    """`obj` from rank 0 on every rank (no-op single process)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def any_rank(flag: bool) -> bool:
    """True on every rank when `flag` is true on at least one (itself, single process)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    on_gpu = dist.get_backend() == "nccl"  # NCCL reduces GPU tensors only
    box = torch.tensor([int(flag)], device=torch.cuda.current_device() if on_gpu else "cpu")
    dist.all_reduce(box, op=dist.ReduceOp.MAX)
    return bool(box.item())


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    """Leave the process group in step: without the barrier, a rank exiting early aborts peers."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
