"""W&B for every run users watch, through one helper (offline without an API key).

`wandb_run(project, job_type, config)` is used by `lte eval` (and `lte eval --serve`),
`lte bench serve` and tools/bench_memory.py; alignment logs through the HF Trainer's W&B
callback, set up by `lte.align.tracking.setup_wandb` with the same key check (`has_wandb_key`).
With no project, or W&B disabled or not installed, the context yields None and nothing is
logged, so callers write `if run:` around what they log.
"""

from __future__ import annotations

import netrc
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from lte.availability import wandb_enabled


def has_wandb_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc(Path.home() / ".netrc").authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_mode() -> str:
    """WANDB_MODE when set, else online with a key and offline without one."""
    return os.environ.get("WANDB_MODE") or ("online" if has_wandb_key() else "offline")


@contextmanager
def wandb_run(project: str | None, job_type: str, config: dict | None = None,
              name: str | None = None, folder: str | Path | None = None,
              entity: str | None = None, tags: Sequence[str] = ()) -> Iterator:
    """A W&B run for one command (None when W&B is off); `folder` holds its `wandb/` files."""
    if not project or not wandb_enabled():
        yield None
        return
    import wandb

    if folder is not None:
        Path(folder).mkdir(parents=True, exist_ok=True)
    run = wandb.init(project=project, entity=entity, job_type=job_type, config=config or {},
                     name=name, dir=str(folder) if folder is not None else None,
                     tags=list(tags) or None, mode=wandb_mode(), reinit="create_new")
    try:
        yield run
    finally:
        run.finish()


def table(columns: Sequence[str], rows: Sequence[Sequence]):
    import wandb

    out = wandb.Table(columns=list(columns))
    for row in rows:
        out.add_data(*row)
    return out
