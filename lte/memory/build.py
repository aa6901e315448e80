"""`lte memory build` of a new memory: check everything first, build aside, rename into place.

A build that fails (a record that cannot be stored, a full disk, Ctrl-C) must not leave a
half-built memory that blocks the re-run, so the memory is built in a hidden sibling folder and
renamed to `--out` only once it is complete and closed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from lte.config import MemoryConfig
from lte.data.record import EditRecord
from lte.errors import UserError


def check_out_folder(out: Path) -> None:
    """`out` is a new or empty folder that can be created: else one line saying why not."""
    if out.exists() and not out.is_dir():
        raise UserError("is a file, not a folder; pick a new or empty folder", file=str(out))
    if out.is_dir() and any(out.iterdir()):
        raise UserError("exists and holds other files; pick a new or empty folder",
                        file=str(out))
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot create it: {parent} is not a writable folder", file=str(out))


def load_embedder(cfg: MemoryConfig):
    """The config's embedder, once the index spec is known to suit its size: a missing model or
    an impossible index fails here, before any folder exists."""
    from lte.config.index_spec import check_index_for_dim
    from lte.memory.memory import make_embedder

    embedder = make_embedder(cfg.embedder)
    problem = check_index_for_dim(cfg.index, embedder.dim)
    if problem:
        raise UserError(problem, field="memory.index")
    return embedder


def build_new(out: Path, cfg: MemoryConfig, records: Sequence[EditRecord], embedder
              ) -> tuple[list, dict]:
    """Build a memory of `records` at `out` (new or empty); returns (ids, stats)."""
    from lte.memory.memory import EditMemory

    out = out.absolute()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        from lte.memory.guards import disk_error

        raise disk_error(e, out.parent, "create the folder") from e
    tmp = out.parent / f".{out.name}.building-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with EditMemory.create(tmp, cfg, embedder=embedder) as mem:
            ids = mem.add(records, show_progress=True)
            mem.tune_search()  # for the size built, not the size of the last IVF training
            mem.snapshot()
            stats = mem.stats()
        if out.is_dir():
            out.rmdir()  # empty (checked): rename(2) replaces only an empty folder anyway
        os.replace(tmp, out)
    except UserError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(str(e).replace(str(tmp), str(out))) from e  # the folder the user named
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(out.parent)
    return ids, stats


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
