"""Load test of a running `lte serve` (also `lte bench serve --url URL`, tools/loadtest.py).

N concurrent HTTP clients work through one fixed, seeded list of operations: edits (POST
/v1/edits) and queries (POST /v1/query, a paraphrase of an edit stored earlier, answered by the
model). Reported: edits/s, queries/s, p50/p99 latency per kind, errors, and edits lost (an
acknowledged id that GET no longer returns with its text). The baseline, in the same run, is the
same list of operations through an in-process `LTEEditor` on one memory, one operation at a time
(what one process does without a server); the wall-time ratio is the serving overhead.
"""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from lte.data.record import EditRecord
from lte.data.synth import synth_records

PRELOAD_BATCH = 64


@dataclass
class Op:
    kind: str  # edit | query
    records: list[EditRecord] = field(default_factory=list)
    question: str = ""


@dataclass
class Workload:
    preload: list[EditRecord]
    ops: list[Op]

    @property
    def n_edits(self) -> int:
        return sum(len(op.records) for op in self.ops)

    @property
    def n_queries(self) -> int:
        return sum(op.kind == "query" for op in self.ops)


@dataclass
class RunStats:
    name: str
    wall_s: float
    edits: int
    queries: int
    errors: int
    latencies: dict[str, list[float]]
    lost_edits: int | None = None
    error_samples: list[str] = field(default_factory=list)
    timeline: list[tuple[float, str, float]] = field(default_factory=list)  # (end s, kind, s)

    def summary(self) -> dict:
        out = {"name": self.name, "wall_s": round(self.wall_s, 3),
               "edits_per_s": round(self.edits / self.wall_s, 2) if self.wall_s else None,
               "queries_per_s": round(self.queries / self.wall_s, 2) if self.wall_s else None,
               "errors": self.errors, "lost_edits": self.lost_edits}
        for kind, values in self.latencies.items():
            out[f"{kind}_p50_ms"] = round(1000 * percentile(values, 50), 1) if values else None
            out[f"{kind}_p99_ms"] = round(1000 * percentile(values, 99), 1) if values else None
        return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[idx]


def build_workload(n_ops: int, edit_share: float, edits_per_op: int, preload: int,
                   seed: int) -> Workload:
    """A seeded list of operations; each query asks about an edit stored before it in the list."""
    rng = random.Random(seed)
    n_edit_ops = round(n_ops * edit_share)
    world = synth_records(preload + n_edit_ops * edits_per_op, seed)
    stored = world[:preload]
    pending = iter(world[preload:])
    kinds = ["edit"] * n_edit_ops + ["query"] * (n_ops - n_edit_ops)
    rng.shuffle(kinds)
    ops = []
    for kind in kinds:
        if kind == "edit" or not stored:
            batch = [next(pending) for _ in range(edits_per_op)]
            stored.extend(batch)
            ops.append(Op("edit", records=batch))
        else:
            r = rng.choice(stored)
            ops.append(Op("query", question=rng.choice(r.rephrase_prompts or [r.prompt])))
    return Workload(preload=world[:preload], ops=ops)


def _edit_json(r: EditRecord) -> dict:
    return {"case_id": r.case_id, "subject": r.subject, "prompt": r.prompt,
            "target_new": r.target_new}


# ---- through the server --------------------------------------------------------------------

async def _run_http(url: str, token: str, work: Workload, concurrency: int,
                    timeout_s: float) -> RunStats:
    import httpx

    auth = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=timeout_s,
                                 limits=limits) as client:
        for start in range(0, len(work.preload), PRELOAD_BATCH):
            chunk = work.preload[start:start + PRELOAD_BATCH]
            r = await client.post("/v1/edits", json={"edits": [_edit_json(e) for e in chunk]},
                                  headers=auth)
            r.raise_for_status()

        latencies: dict[str, list[float]] = {"edit": [], "query": []}
        acked: list[tuple[int, EditRecord]] = []
        answered = 0
        errors: list[str] = []
        timeline: list[tuple[float, str, float]] = []
        next_op = iter(work.ops)
        t_start = time.perf_counter()

        async def client_loop():
            nonlocal answered
            for op in next_op:  # shared iterator: each op is taken by exactly one client
                t0 = time.perf_counter()
                try:
                    if op.kind == "edit":
                        r = await client.post(
                            "/v1/edits", json={"edits": [_edit_json(e) for e in op.records]},
                            headers=auth)
                    else:
                        r = await client.post("/v1/query", json={"question": op.question})
                except httpx.HTTPError as e:
                    errors.append(f"{op.kind}: {type(e).__name__}: {e}")
                    continue
                latencies[op.kind].append(time.perf_counter() - t0)
                timeline.append((time.perf_counter() - t_start, op.kind, latencies[op.kind][-1]))
                if r.status_code != 200:
                    errors.append(f"{op.kind}: HTTP {r.status_code}: {r.text[:200]}")
                elif op.kind == "edit":
                    acked.extend(zip(r.json()["ids"], op.records, strict=True))
                else:
                    answered += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        wall = time.perf_counter() - t0

        sem = asyncio.Semaphore(concurrency)

        async def lost(edit_id: int, record: EditRecord) -> bool:
            async with sem:
                r = await client.get(f"/v1/edits/{edit_id}")
            if r.status_code != 200:
                return True
            body = r.json()
            return body["prompt"] != record.prompt or body["target_new"] != record.target_new

        n_lost = sum(await asyncio.gather(*(lost(i, rec) for i, rec in acked)))
    return RunStats("serve", wall, edits=len(acked), queries=answered, errors=len(errors),
                    latencies=latencies, lost_edits=n_lost, error_samples=errors[:5],
                    timeline=timeline)


# ---- the baseline: one process, no server ----------------------------------------------------

class Baseline:
    """The same operations through an in-process LTEEditor on a fresh memory, one at a time."""

    def __init__(self, cfg):
        import torch

        from lte.modeling.load import load_model_and_tokenizer

        torch.set_num_threads(cfg.torch_threads)  # as each server replica
        self.cfg = cfg
        self.model, self.tokenizer = load_model_and_tokenizer(cfg.model)

    def run(self, work: Workload) -> RunStats:
        from lte.editor import LTEEditor
        from lte.memory import EditMemory

        cfg = self.cfg
        with tempfile.TemporaryDirectory(prefix="lte-loadtest-") as tmp:
            memory = EditMemory.create(f"{tmp}/memory", replace(cfg.memory, shards=1))
            editor = LTEEditor(self.model, self.tokenizer, memory, top_k=cfg.memory.top_k,
                               batch_size=cfg.batch_size, max_new_tokens=cfg.model.max_new_tokens)
            for start in range(0, len(work.preload), PRELOAD_BATCH):
                editor.edit(work.preload[start:start + PRELOAD_BATCH])
            latencies: dict[str, list[float]] = {"edit": [], "query": []}
            t0 = time.perf_counter()
            for op in work.ops:
                t = time.perf_counter()
                if op.kind == "edit":
                    editor.edit(op.records)
                else:
                    editor.answer([op.question])
                latencies[op.kind].append(time.perf_counter() - t)
            wall = time.perf_counter() - t0
            memory.close()
        return RunStats("in-process LTEEditor", wall, edits=work.n_edits,
                        queries=work.n_queries, errors=0, latencies=latencies)


# ---- entry point ---------------------------------------------------------------------------

def format_row(s: dict) -> str:
    return (f"{s['name']:<22} wall {s['wall_s']:>8.2f} s  edits/s {s['edits_per_s']:>8}  "
            f"queries/s {s['queries_per_s']:>8}  edit p50/p99 {s.get('edit_p50_ms')}/"
            f"{s.get('edit_p99_ms')} ms  query p50/p99 {s.get('query_p50_ms')}/"
            f"{s.get('query_p99_ms')} ms  errors {s['errors']}  lost {s['lost_edits']}")


def _merge(name: str, runs: list[RunStats]) -> RunStats:
    lost = [r.lost_edits for r in runs if r.lost_edits is not None]
    return RunStats(name, sum(r.wall_s for r in runs), sum(r.edits for r in runs),
                    sum(r.queries for r in runs), sum(r.errors for r in runs),
                    {k: [v for r in runs for v in r.latencies[k]] for k in ("edit", "query")},
                    lost_edits=sum(lost) if lost else None,
                    error_samples=[e for r in runs for e in r.error_samples][:5])


def run_loadtest(url: str, token: str, cfg, *, concurrency: int = 16, ops: int = 320,
                 edit_share: float = 0.5, edits_per_op: int = 1, preload: int = 256,
                 seed: int = 0, repeats: int = 1, baseline: bool = True,
                 timeout_s: float = 120.0, out: str | None = None,
                 wandb_project: str | None = None) -> dict:
    """Serve and baseline alternate `repeats` times (seeds seed, seed+1, ...), so that load
    from other work on the machine falls on both; the ratio is of the summed wall times."""
    base = Baseline(cfg) if baseline else None
    serve_runs, base_runs = [], []
    for rep in range(repeats):
        work = build_workload(ops, edit_share, edits_per_op, preload, seed + rep)
        print(f"[{rep + 1}/{repeats}] workload: {len(work.ops)} ops ({work.n_edits} edits in "
              f"{len(work.ops) - work.n_queries} requests, {work.n_queries} queries), preload "
              f"{len(work.preload)} edits, concurrency {concurrency}", flush=True)
        serve_runs.append(asyncio.run(_run_http(url, token, work, concurrency, timeout_s)))
        print(format_row(serve_runs[-1].summary()), flush=True)
        if base is not None:
            base_runs.append(base.run(work))
            print(format_row(base_runs[-1].summary()), flush=True)
    served = _merge("serve", serve_runs)
    result = {"url": url, "concurrency": concurrency, "ops": ops, "repeats": repeats,
              "edits_per_op": edits_per_op, "edit_share": edit_share, "preload": preload,
              "seed": seed, "serve": served.summary(), "error_samples": served.error_samples}
    print("total:\n" + format_row(result["serve"]))
    for sample in served.error_samples:
        print(f"  error: {sample}")
    if base is not None:
        merged = _merge("in-process LTEEditor", base_runs)
        result["baseline"] = merged.summary()
        result["wall_ratio"] = round(served.wall_s / merged.wall_s, 3)
        result["overhead_pct"] = round(100 * (result["wall_ratio"] - 1), 1)
        result["wall_ratio_per_repeat"] = [round(s.wall_s / b.wall_s, 3)
                                           for s, b in zip(serve_runs, base_runs, strict=True)]
        print(format_row(result["baseline"]))
        print(f"serve / in-process wall time: {result['wall_ratio']:.3f} (per repeat "
              f"{result['wall_ratio_per_repeat']}) -> serving overhead "
              f"{result['overhead_pct']:+.1f}% (target <= +25%), errors {served.errors}, "
              f"lost edits {served.lost_edits}")
    if out:
        with open(out, "w") as f:
            json.dump(result, f, indent=2)
    if wandb_project:
        log_wandb(wandb_project, result, serve_runs,
                  folder=Path(out).resolve().parent if out else None)
    return result


def windows(timeline: list[tuple[float, str, float]], n: int = 20) -> list[dict]:
    """Throughput and latency percentiles over time: `n` equal windows of the run's wall time."""
    if not timeline:
        return []
    end = max(t for t, _, _ in timeline)
    width = end / n or 1.0
    out = []
    for w in range(n):
        lo, hi = w * width, (w + 1) * width
        inside = [(k, lat) for t, k, lat in timeline if lo <= t < hi or (w == n - 1 and t == end)]
        row = {"time_s": round(hi, 3), "ops_per_s": round(len(inside) / width, 2)}
        for kind in ("edit", "query"):
            lats = [lat for k, lat in inside if k == kind]
            if lats:
                row[f"{kind}_p50_ms"] = round(1000 * percentile(lats, 50), 1)
                row[f"{kind}_p99_ms"] = round(1000 * percentile(lats, 99), 1)
        out.append(row)
    return out


def log_wandb(project: str, result: dict, serve_runs: list[RunStats],
              folder: Path | None = None) -> None:
    """The load test's W&B run: latency percentiles and throughput over time per repeat (one
    x axis: seconds since the repeat started), the totals and the ratio in the summary."""
    from lte.tracking import wandb_run

    config = {k: v for k, v in result.items() if not isinstance(v, (dict, list))}
    with wandb_run(project, "bench-serve", config=config, folder=folder) as run:
        if run is None:
            return
        run.define_metric("time_s")
        run.define_metric("serve/*", step_metric="time_s")
        for rep, stats in enumerate(serve_runs):
            for row in windows(stats.timeline):
                run.log({"time_s": row.pop("time_s"), "repeat": rep,
                         **{f"serve/{k}": v for k, v in row.items()}})
        for side in ("serve", "baseline"):
            for k, v in (result.get(side) or {}).items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    run.summary[f"{side}/{k}"] = v
        for k in ("wall_ratio", "overhead_pct"):
            if k in result:
                run.summary[k] = result[k]
