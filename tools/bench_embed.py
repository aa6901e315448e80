"""Ingest rate of each embedder backend through the whole memory ingest path, in one run.

    nice -n 15 .venv/bin/python tools/bench_embed.py --n 2000 --json runs/bench-embed.json

Rows: torch fp32 on one thread (the ingest of before), torch on every core, onnx-int8 on one
thread and on every core. Each row creates a memory and times `EditMemory.add` of the same
counterfact-edit records (embed + log + index, `add_chunk` at a time) on wall clock; rounds are
interleaved (row 1, 2, 3, 4, row 1, ...) so that load from other processes falls on every row
alike, and the median round is reported with its ratio to row 1. Retrieval hit@1: each record's
rephrase prompt must retrieve that record's edit, with queries embedded in batches (as `lte eval`
does) and one at a time (as a served query is). Model load and the one-time export are timed
apart. The load average before and after says how quiet the machine was.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lte.config import EmbedderConfig, MemoryConfig  # noqa: E402
from lte.data.readers import read_records  # noqa: E402
from lte.embedding import make_embedder  # noqa: E402

DATA = Path(os.environ.get("LTE_SHARED_DATA", REPO.parent / "shared" / "data"))


def rows(threads: int, cache_dir: str | None) -> list[tuple[str, EmbedderConfig]]:
    onnx = {"backend": "onnx-int8", "cache_dir": cache_dir}
    return [("torch fp32, 1 thread", EmbedderConfig(threads=1)),
            (f"torch fp32, {threads} threads", EmbedderConfig(threads=threads)),
            ("onnx-int8, 1 thread", EmbedderConfig(threads=1, **onnx)),
            (f"onnx-int8, {threads} threads", EmbedderConfig(threads=threads, **onnx))]


def unique_facts(path: Path, n: int) -> list:
    """The first `n` records with a rephrase prompt and a question not seen before."""
    seen, out = set(), []
    for r in read_records(path):
        key = (r.subject.lower(), r.prompt)
        if r.rephrase_prompts and key not in seen:
            seen.add(key)
            out.append(r)
        if len(out) == n:
            break
    return out


def ingest(cfg: EmbedderConfig, records, work: Path, measure_hits: bool, singles: int) -> dict:
    from lte.memory import EditMemory

    embedder = make_embedder(cfg)  # cached model; for torch this sets the thread count
    folder = Path(tempfile.mkdtemp(prefix="bench-embed-", dir=work))
    out: dict = {}
    try:
        mem = EditMemory.create(folder / "mem", MemoryConfig(embedder=cfg, conflict="keep_all"),
                                embedder=embedder)
        start = time.perf_counter()
        ids = mem.add(records)
        out["seconds"] = time.perf_counter() - start
        if measure_hits:
            queries = [r.rephrase_prompts[0] for r in records]
            hits = mem.search(queries, k=1, threshold=None)
            out["hit@1"] = sum(bool(h) and h[0].id == i for h, i in zip(hits, ids, strict=True)
                               ) / len(ids)
            one = [mem.search([q], k=1, threshold=None)[0] for q in queries[:singles]]
            out["hit@1_single"] = sum(bool(h) and h[0].id == i for h, i in
                                      zip(one, ids[:singles], strict=True)) / len(one)
        mem.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edits", default=str(DATA / "counterfact" / "counterfact-edit.json"))
    ap.add_argument("--n", type=int, default=2000, help="edits ingested per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--singles", type=int, default=500,
                    help="rephrases also searched one at a time")
    ap.add_argument("--cache-dir", default=None, help="onnx-int8 export folder (default: its own)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    records = unique_facts(Path(args.edits), args.n)
    table = rows(args.threads, args.cache_dir)
    result: dict = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                "loadavg_before": os.getloadavg()},
                    "edits": args.edits, "n": len(records), "rounds": args.rounds, "rows": {}}
    for name, cfg in table:  # load every model (and export once) before anything is timed
        start = time.perf_counter()
        emb = make_embedder(cfg)
        result["rows"][name] = {"load_seconds": round(time.perf_counter() - start, 2),
                                "exported": getattr(emb, "exported", None), "seconds": []}
    work = Path(args.workdir or tempfile.gettempdir())
    for rnd in range(args.rounds):
        for name, cfg in table:
            got = ingest(cfg, records, work, measure_hits=rnd == 0, singles=args.singles)
            row = result["rows"][name]
            row["seconds"].append(round(got.pop("seconds"), 3))
            row.update({k: round(v, 4) for k, v in got.items()})
            print(f"round {rnd}: {name}: {len(records) / row['seconds'][-1]:.0f} edits/s",
                  flush=True)
    base = None
    for row in result["rows"].values():
        row["edits_per_s"] = round(len(records) / statistics.median(row["seconds"]), 1)
        base = base or row["edits_per_s"]
        row["ratio_vs_torch_1_thread"] = round(row["edits_per_s"] / base, 2)
    result["machine"]["loadavg_after"] = os.getloadavg()
    print(f"\n{len(records)} counterfact-edit edits through EditMemory.add, median of "
          f"{args.rounds} interleaved rounds; load average {result['machine']['loadavg_before']}"
          f" before, {result['machine']['loadavg_after']} after\n")
    print("| embedder | edits/s | vs torch 1 thread | rephrase hit@1 (batched) | "
          f"hit@1 (one at a time, first {args.singles}) |")
    print("|---|---:|---:|---:|---:|")
    for name, row in result["rows"].items():
        print(f"| {name} | {row['edits_per_s']} | {row['ratio_vs_torch_1_thread']}x | "
              f"{row['hit@1']:.3f} | {row['hit@1_single']:.3f} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
