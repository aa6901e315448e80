"""Reads an offline W&B run folder back: the keys of its config, history and summary.

Offline runs keep everything in `run-*.wandb`: a 7-byte header, then LevelDB's log format
(32 KiB blocks of records with a 7-byte header: crc32, length, type), each record one
`wandb.proto.wandb_internal_pb2.Record`.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _records(data: bytes):
    pos, pending = HEADER, b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk
            pending = b""


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def read_run(run_dir: Path, wait_s: float = 120.0) -> dict:
    """{"job_type", "config": set, "history": set, "summary": set} of one offline run folder.

    W&B's writer process may still be flushing when `run.finish()` has returned (seen on a
    loaded machine), so the file is read again until it holds the run's `exit` record.
    """
    deadline = time.monotonic() + wait_s
    while True:
        out = _read_once(run_dir)
        if out["exited"] or time.monotonic() > deadline:
            return out
        time.sleep(0.5)


def _read_once(run_dir: Path) -> dict:
    from wandb.proto import wandb_internal_pb2 as pb

    paths = list(Path(run_dir).glob("run-*.wandb"))
    out = {"job_type": None, "config": set(), "history": set(), "summary": set(),
           "exited": False}
    for raw in _records(paths[0].read_bytes() if paths else b""):
        rec = pb.Record()
        try:
            rec.ParseFromString(raw)
        except Exception:  # noqa: BLE001 - a record still being written: read again later
            break
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out["job_type"] = rec.run.job_type
            out["config"] |= {i.key for i in rec.run.config.update}
        elif kind == "config":
            out["config"] |= {i.key for i in rec.config.update}
        elif kind == "history":
            out["history"] |= {_key(i) for i in rec.history.item}
        elif kind == "summary":
            out["summary"] |= {_key(i) for i in rec.summary.update}
        elif kind == "exit":
            out["exited"] = True
    return out


def offline_runs(folder: Path) -> list[Path]:
    return sorted(Path(folder).rglob("offline-run-*"))
