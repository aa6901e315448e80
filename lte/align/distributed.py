"""Every DeepSpeed and torch.distributed call of the alignment stage lives here.

`Session` owns a run's process group and DeepSpeed state (bring-up on entry, teardown on exit,
OpenRLHF's `DeepspeedStrategy` is the model) and answers world size, ZeRO stage, parameter count
and the unwrapped model; the free functions are the rank helpers. The rest of `lte.align` never
branches on ZeRO stage or on how it was launched (torchrun, the deepspeed launcher, srun, or a
plain `python` call).
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


def sum_over_ranks(n: int) -> int:
    """`n` summed over every rank (itself, single process)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return n
    on_gpu = dist.get_backend() == "nccl"
    box = torch.tensor([n], dtype=torch.int64,
                       device=torch.cuda.current_device() if on_gpu else "cpu")
    dist.all_reduce(box)
    return int(box.item())


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


class Session:
    """The distributed side of one alignment run, as a context manager.

        with Session(cfg.deepspeed, use_cpu) as session:
            args = session.training_args(**trainer_kwargs)  # process group + DeepSpeed up
            ...
        # left in step with the peers; a group this process made for itself is gone again

    Without a DeepSpeed config and without a launcher it is a plain single process.
    """

    def __init__(self, deepspeed: str | None, use_cpu: bool):
        self.ds_config = load_deepspeed_config(deepspeed) if deepspeed else None
        self.use_cpu = use_cpu
        self.args = None
        self._own_rendezvous = False

    def __enter__(self) -> Session:
        if self.ds_config is not None:
            # DeepSpeed always wants a process group, even in a plain `python` process.
            self._own_rendezvous = setup_single_process()
            if self.use_cpu:
                skip_cpu_shm_kernel()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        import torch.distributed as dist

        if self.ds_config is not None:
            from transformers.integrations import unset_hf_deepspeed_config

            unset_hf_deepspeed_config()  # later models in this process load as plain ones
        if dist.is_available() and dist.is_initialized():
            if exc_type is None:
                dist.barrier()  # a rank exiting early would abort its peers
            dist.destroy_process_group()
        if self._own_rendezvous:
            clear_single_process()

    def training_args(self, **kwargs):
        """TrainingArguments with this session's DeepSpeed config and device, process group up.

        Made before the model, so that under ZeRO-3 transformers builds it inside
        `deepspeed.zero.Init` and every rank only ever holds its own partition.
        """
        from transformers import TrainingArguments

        self.args = TrainingArguments(deepspeed=self.ds_config, use_cpu=self.use_cpu, **kwargs)
        _ = self.args.device  # creates the process group under a launcher (gloo / NCCL)
        if self.ds_config is not None:
            init_deepspeed_comm(self.use_cpu)
        return self.args

    @property
    def world(self) -> int:
        return world_size()

    @property
    def zero_stage(self) -> int:
        return zero_stage(self.ds_config)

    @staticmethod
    def param_count(model) -> int:
        """Parameters of the whole model, also when ZeRO-3 left only a partition on this rank."""
        return sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())

    @staticmethod
    def unwrap(trainer):
        """The trained module inside the Trainer's (DeepSpeed) engine."""
        engine = trainer.model_wrapped
        return getattr(engine, "module", engine)

    @contextlib.contextmanager
    def outside_zero3(self):
        """Load a model as a plain one, on one rank, while a ZeRO-3 run is live.

        transformers builds every model inside `deepspeed.zero.Init` while a ZeRO-3 config is
        registered; done on one rank only, that partitioning is a collective its peers never
        join. transformers' public set/unset pair lifts the registration for the block.
        """
        from transformers.integrations import set_hf_deepspeed_config, unset_hf_deepspeed_config

        live = getattr(self.args, "hf_deepspeed_config", None)
        unset_hf_deepspeed_config()
        try:
            yield
        finally:
            if live is not None:
                set_hf_deepspeed_config(live)
