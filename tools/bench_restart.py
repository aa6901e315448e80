"""Restart (open) time of an edit memory, with and without a current index snapshot.

    .venv/bin/python tools/bench_restart.py --n 100000 --json F

Key vectors are random unit vectors given to `add(vectors=...)` (no embedder: open never embeds,
so the figures are those of the log, the snapshot and the index). In one run, on one memory:
- `replay_all`: the snapshot is the empty one written at creation, so open replays every edit
  from the log (what serve shards left before they wrote snapshots);
- `tail`: the snapshot is `--tail` changes behind the log (a kill -9 between two snapshots;
  the default snapshot cadence bounds the tail by `snapshot_every` changes / `snapshot_every_s`);
- `snapshot`: the snapshot is current (after close, SIGTERM, or a snapshot just written).
Each open is of a crash image (the folder's files copied while the writer still runs), best of
`--repeats`. Also reported: the time one snapshot takes to write (the pause it costs a writer).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lte.config import EmbedderConfig, MemoryConfig  # noqa: E402
from lte.data.record import EditRecord  # noqa: E402
from lte.memory import EditMemory  # noqa: E402

FILES = ("edits.sqlite", "edits.sqlite-wal", "edits.acked", "index.faiss", "index.json")


def image(folder: Path, dest: Path) -> Path:
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir()
    for name in FILES:
        if (folder / name).exists():
            shutil.copyfile(folder / name, dest / name)
    return dest


def time_open(folder: Path, dest: Path, repeats: int) -> float:
    import warnings

    best = float("inf")
    for _ in range(repeats):
        copy = image(folder, dest)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mem = EditMemory.open(copy, readonly=True)  # a reader: it writes no snapshot
        best = min(best, time.perf_counter() - t0)
        mem.close()
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--index", default="Flat")
    p.add_argument("--tail", type=int, default=10_000)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", default=None)
    p.add_argument("--workdir", default=None)
    args = p.parse_args()
    import faiss

    faiss.omp_set_num_threads(1)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="lte-bench-restart-"))
    rng = np.random.default_rng(0)
    cfg = MemoryConfig(embedder=EmbedderConfig(name="hashing", hashing_dim=args.dim),
                       index=args.index, add_chunk=8192, snapshot_every=10**12,
                       snapshot_every_s=1e12)
    folder = work / "mem"
    shutil.rmtree(folder, ignore_errors=True)
    mem = EditMemory.create(folder, cfg)
    recs = [EditRecord(str(i), f"s{i}", f"question {i}?", f"answer {i}") for i in range(args.n)]
    vecs = rng.standard_normal((args.n, args.dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    head = args.n - args.tail
    t0 = time.perf_counter()
    mem.add(recs[:head], vectors=vecs[:head])
    ingest = time.perf_counter() - t0
    out = {"n": args.n, "dim": args.dim, "index": args.index, "tail": args.tail}
    mem.add(recs[head:], vectors=vecs[head:])
    out["ingest_edits_per_s"] = round(args.n / (ingest + 1e-9) * head / args.n, 1)
    out["replay_all_s"] = round(time_open(folder, work / "img", args.repeats), 3)
    # The tail case: a snapshot at `head` edits (written by a writer reopened there).
    mem.close()  # writes the current snapshot
    t0 = time.perf_counter()
    with EditMemory.open(folder) as again:
        t_open_writer = time.perf_counter() - t0
        t0 = time.perf_counter()
        again.snapshot()
        out["snapshot_write_s"] = round(time.perf_counter() - t0, 3)
    out["snapshot_s"] = round(time_open(folder, work / "img", args.repeats), 3)
    out["writer_open_with_snapshot_s"] = round(t_open_writer, 3)
    # Tail: delete-free replay of the last `tail` edits on top of a snapshot taken before them.
    with EditMemory.open(folder) as again:
        again.delete(list(range(head + 1, args.n + 1)))
        again.snapshot()
        again.add(recs[head:], vectors=vecs[head:])
        tail_image = image(folder, work / "tail-src")
    out["tail_s"] = round(time_open(tail_image, work / "img", args.repeats), 3)
    out["speedup_replay_all_over_snapshot"] = round(out["replay_all_s"] / out["snapshot_s"], 1)
    out["disk_bytes"] = sum((folder / f).stat().st_size for f in FILES if (folder / f).exists())
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
