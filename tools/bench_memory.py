"""Benchmark the edit memory on synthetic-world edits, against the reference approach.

    nice -n 10 .venv/bin/python tools/bench_memory.py --sizes 10000,100000,1000000 --json F
    .venv/bin/python tools/bench_memory.py --sizes 1000000 --perturb-from 100000 --json F

Per size: ingest edits/s (embed + log + index) and the embedder's share of that time; search
latency p50/p99 (ms) for k=1 and k=3, one query at a time and in batches, through
`EditMemory.search_vectors` (index + log lookup) and end to end from text; recall@1/@3 against
exact search; bytes per edit on disk and in RAM. Baseline in the same run: the reference code's
approach (numpy array grown by `np.concatenate` per edit, exact dot product, retriever loaded for
every query), reported as ratios.

Sizes above `--embed-limit` are not embedded (on 2 shared cores MiniLM runs at ~100-500
sentences/s, so 1M questions take an hour or more): their key vectors are the embedded set's
vectors repeated with small Gaussian perturbations (re-normalised), labelled
`vectors: "perturbed"` in the output; their ingest figures then exclude the embedder, and their
search and recall figures are those of the index over that distribution.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
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


# ---------------------------------------------------------------------------------------------
# Data: the synthetic world (helper "world"), cached as plain JSON lines
# ---------------------------------------------------------------------------------------------
def world_edits(n: int, seed: int, cache: Path) -> list[dict]:
    """subject, question, answer and one rephrase per edit, for the first n edits of the world."""
    path = cache / f"world-{seed}-{n}.jsonl"
    if not path.exists():
        from lte.data.synth import generate_world

        rows = []
        for raw in generate_world(n, seed):
            reph = raw.get("rephrase_prompt") or raw["prompt"]
            reph = reph[0] if isinstance(reph, list) else reph
            rows.append({"s": raw["subject"], "q": raw["prompt"], "a": raw["target_new"],
                         "r": reph})
        tmp = path.with_suffix(".tmp")
        tmp.write_text("\n".join(json.dumps(r) for r in rows))
        tmp.replace(path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    if len(rows) != n:
        raise SystemExit(f"cache {path} has {len(rows)} rows, wanted {n}")
    return rows


def to_records(rows: list[dict], tag: str = "") -> list[EditRecord]:
    return [EditRecord(str(i), r["s"] + tag, r["q"] + tag, r["a"]) for i, r in enumerate(rows)]


def perturbed(base: np.ndarray, n: int, sigma: float, seed: int) -> np.ndarray:
    """n unit vectors: `base` first, then its rows repeated with Gaussian noise."""
    rng = np.random.default_rng(seed)
    reps = -(-n // len(base))
    out = np.tile(base, (reps, 1))[:n].copy()
    noise = rng.standard_normal((n - len(base), base.shape[1]), dtype=np.float32)
    out[len(base):] += sigma / np.sqrt(base.shape[1]) * noise
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


# ---------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------
class TimedEmbedder:
    """Wraps an embedder to add up the time spent embedding inside `EditMemory.add`."""

    def __init__(self, inner):
        self.inner, self.dim, self.name, self.seconds = inner, inner.dim, inner.name, 0.0

    cpu_seconds = 0.0

    def encode(self, texts, show_progress=False):
        with Clock() as c:
            out = self.inner.encode(texts)
        self.seconds += c.wall
        self.cpu_seconds += c.cpu
        return out


class Clock:
    """Wall-clock and this thread's CPU time of one measured call. On a shared, loaded machine
    wall-clock includes waiting for a core; with one compute thread (the default here), CPU time
    is what the call costs on an idle core."""

    def __enter__(self):
        self.w, self.c = time.perf_counter(), time.thread_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.w, time.thread_time() - self.c


def pct2(clocks: list[Clock]) -> dict:
    return {"wall": pct([c.wall for c in clocks]), "cpu": pct([c.cpu for c in clocks])}


def pct(values: list[float]) -> dict:
    a = np.asarray(values) * 1000
    return {"p50_ms": round(float(np.percentile(a, 50)), 3),
            "p99_ms": round(float(np.percentile(a, 99)), 3), "n": len(a)}


def exact_topk(queries: np.ndarray, base: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k (scores, row numbers) by blocked matrix products."""
    best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), k), dtype=np.int64)
    for start in range(0, len(base), 200_000):
        s = queries @ base[start:start + 200_000].T
        part = np.argpartition(-s, min(k, s.shape[1] - 1), axis=1)[:, :k]
        cand_s = np.concatenate([best_s, np.take_along_axis(s, part, axis=1)], axis=1)
        cand_i = np.concatenate([best_i, part + start], axis=1)
        order = np.argsort(-cand_s, axis=1)[:, :k]
        best_s = np.take_along_axis(cand_s, order, axis=1)
        best_i = np.take_along_axis(cand_i, order, axis=1)
    return best_s, best_i


def recall(hit_ids: list[list[int]], hit_scores: list[list[float]], ex_ids: np.ndarray,
           ex_scores: np.ndarray, k: int) -> float:
    """Share of the exact top-k found; an id whose score ties the k-th exact score counts."""
    found = 0
    for ids, scores, eids, escores in zip(hit_ids, hit_scores, ex_ids, ex_scores, strict=True):
        kth = escores[k - 1]
        exact = set(eids[:k].tolist())
        found += sum(1 for i, s in zip(ids[:k], scores[:k], strict=True)
                     if i in exact or s >= kth - 1e-6)
    return found / (k * len(hit_ids))


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def search_figures(mem, qvecs: np.ndarray, row_to_id: np.ndarray, base: np.ndarray,
                   batch: int) -> dict:
    ex_s, ex_rows = exact_topk(qvecs, base, 3)
    ex_ids = row_to_id[ex_rows]
    out = {}
    for k in (1, 3):
        single, hits = [], []
        mem.search_vectors(qvecs[:5], k)  # warm-up
        for q in qvecs:
            with Clock() as c:
                hits.extend(mem.search_vectors(q[None], k))
            single.append(c)
        batched = []
        for start in range(0, len(qvecs), batch):
            with Clock() as c:
                mem.search_vectors(qvecs[start:start + batch], k)
            batched.append(c)
        ids = [[h.id for h in row] for row in hits]
        scores = [[h.score for h in row] for row in hits]
        out[f"k{k}"] = {
            "single": pct2(single),
            f"batch{batch}": {**pct2(batched), "cpu_per_query_ms": round(
                1000 * float(np.mean([c.cpu for c in batched])) / batch, 4)},
            f"recall@{k}": round(recall(ids, scores, ex_ids, ex_s, k), 4),
        }
    return out


def baseline_figures(embedder_cfg: EmbedderConfig, texts: list[str], qtexts: list[str],
                     base: np.ndarray, n_ingest: int, n_queries: int) -> dict:
    """The reference approach: per-edit embed + np.concatenate; per query: load the retriever,
    embed, exact dot product over the array."""
    from sentence_transformers import SentenceTransformer

    from lte.embedding import resolve_embedder_path

    n, dim = base.shape
    path = resolve_embedder_path(embedder_cfg.name)
    model = SentenceTransformer(path, device="cpu")
    arr = np.zeros((0, dim), dtype=np.float32)
    with Clock() as c:
        for text in texts[:n_ingest]:
            v = model.encode([text], normalize_embeddings=True)
            arr = np.concatenate([arr, v.astype(np.float32)])
    per_edit_small = c.cpu / n_ingest
    # The concatenation's cost grows with the array: measure it at the full size n.
    big = np.zeros((n, dim), dtype=np.float32)
    row = np.zeros((1, dim), dtype=np.float32)
    with Clock() as c:
        for _ in range(3):
            np.concatenate([big, row])
    concat_at_n = c.cpu / 3
    del big
    lat = []
    for q in qtexts[:n_queries]:
        with Clock() as c:
            m = SentenceTransformer(path, device="cpu")  # reloaded per query, like the reference
            qv = m.encode([q], normalize_embeddings=True)[0]
            int(np.argmax(base @ qv))
        lat.append(c)
        del m
    return {"note": "CPU seconds of the measuring thread (one compute thread)",
            "ingest_edits_per_s_first": round(1 / per_edit_small, 2),
            "concat_ms_per_edit_at_n": round(1000 * concat_at_n, 3),
            "ingest_edits_per_s_at_n": round(1 / (per_edit_small + concat_at_n), 2),
            "query_end_to_end": pct2(lat), "n_ingest": n_ingest, "n_queries": len(lat)}


# ---------------------------------------------------------------------------------------------
def run_size(n: int, args, cache: Path, emb_cfg: EmbedderConfig, real: dict) -> dict:
    from lte.memory import EditMemory

    embedded = n <= args.embed_limit
    work = Path(tempfile.mkdtemp(prefix=f"bench-mem-{n}-", dir=args.workdir))
    cfg = MemoryConfig(embedder=emb_cfg, index=args.index, nprobe=args.nprobe,
                       add_chunk=args.chunk)
    res: dict = {"n": n, "index": args.index, "nprobe": args.nprobe,
                 "vectors": "embedded" if embedded else "perturbed"}
    rss0 = rss_bytes()
    if embedded:
        rows = world_edits(n, args.seed, cache)
        records = to_records(rows)
        mem = EditMemory.create(work / "mem", cfg)
        timed = TimedEmbedder(mem.embedder)
        mem._embedder = timed
        with Clock() as c:
            ids = mem.add(records, show_progress=True)
        res["ingest"] = {
            "note": "embed + log + index in one add(); the embedder's share measured inside it",
            "wall": {"edits_per_s": round(n / c.wall, 2), "seconds": round(c.wall, 2),
                     "embedder_alone_edits_per_s": round(n / timed.seconds, 2),
                     "ratio_vs_embedder_alone": round(timed.seconds / c.wall, 4)},
            "cpu": {"edits_per_s": round(n / c.cpu, 2), "seconds": round(c.cpu, 2),
                    "embedder_alone_edits_per_s": round(n / timed.cpu_seconds, 2),
                    "ratio_vs_embedder_alone": round(timed.cpu_seconds / c.cpu, 4)}}
        mem._embedder = timed.inner
        vec_path = cache / f"vectors-{args.seed}-{n}.npy"
        base = mem.store.vectors(ids, mem.dim)
        np.save(vec_path, base)
        real.update(n=n, path=str(vec_path), rows=rows)
    else:
        if not real and args.perturb_from:
            # the vectors an earlier run embedded (same seed, same cache): no second embedding
            m = args.perturb_from
            vec_path = cache / f"vectors-{args.seed}-{m}.npy"
            if not vec_path.is_file():
                raise SystemExit(f"--perturb-from {m}: no {vec_path}; run --sizes {m} first")
            real.update(n=m, path=str(vec_path), rows=world_edits(m, args.seed, cache))
        if not real:
            raise SystemExit(f"size {n} is above --embed-limit and no smaller size was embedded")
        base_real = np.load(real["path"])
        base = perturbed(base_real, n, args.sigma, args.seed)
        del base_real
        rows = real["rows"]
        records = [EditRecord(str(i), rows[i % len(rows)]["s"] + f" #{i}",
                              rows[i % len(rows)]["q"], rows[i % len(rows)]["a"])
                   for i in range(n)]
        mem = EditMemory.create(work / "mem", cfg)
        with Clock() as c:
            ids = mem.add(records, show_progress=True, vectors=base)
        del records
        res["ingest"] = {"note": "vectors given (not embedded): log + index cost alone",
                         "wall": {"edits_per_s": round(n / c.wall, 2),
                                  "seconds": round(c.wall, 2)},
                         "cpu": {"edits_per_s": round(n / c.cpu, 2), "seconds": round(c.cpu, 2)}}
        res["perturbation_sigma"] = args.sigma
    gc.collect()
    mem.snapshot()
    row_to_id = np.asarray(ids, dtype=np.int64)
    rng = np.random.default_rng(args.seed + 1)
    qrows = rng.choice(len(real["rows"]), size=min(args.queries, len(real["rows"])),
                       replace=False)
    qtexts = [real["rows"][i]["r"] for i in qrows]  # rephrased questions of stored edits
    qvecs = mem.embedder.encode(qtexts)
    res["search"] = search_figures(mem, qvecs, row_to_id, base, args.batch)
    # End to end from text (query embedding included), the unit the baseline is measured in.
    lat = []
    for q in qtexts[:args.text_queries]:
        with Clock() as c:
            mem.search([q], k=1)
        lat.append(c)
    res["search"]["text_k1_single"] = pct2(lat)
    if mem.index.is_ivf and args.nprobe_sweep:
        # the latency / recall trade-off over the same index
        res["search_by_nprobe"] = {}
        for nprobe in (int(p) for p in args.nprobe_sweep.split(",")):
            mem.index.nprobe = nprobe
            res["search_by_nprobe"][nprobe] = search_figures(mem, qvecs, row_to_id, base,
                                                             args.batch)
        mem.index.nprobe = args.nprobe
    stats = mem.stats()
    res["index_state"] = {k: stats[k] for k in ("index_vectors", "ivf_lists", "index_trained_at")}
    res["bytes_per_edit"] = {
        "disk": round(folder_bytes(work / "mem") / n, 1),
        "disk_files": stats["files"],
        "index_ram": round(mem.index.memory_bytes() / n, 1),
        "process_rss_growth": round((rss_bytes() - rss0) / n, 1),
    }
    mem.close()
    # Reopen time: snapshot load + (empty) replay.
    t = time.perf_counter()
    EditMemory.open(work / "mem").close()
    res["open_seconds"] = round(time.perf_counter() - t, 3)
    if not args.no_baseline:
        b = baseline_figures(emb_cfg, [r["q"] for r in real["rows"]], qtexts, base,
                             args.baseline_ingest, args.baseline_queries)
        res["baseline"] = b
        res["ratios"] = {"note": "ours / baseline, CPU time", "search_speedup_end_to_end_p50":
                         round(b["query_end_to_end"]["cpu"]["p50_ms"]
                               / res["search"]["text_k1_single"]["cpu"]["p50_ms"], 1)}
        if embedded:
            res["ratios"]["ingest_speedup_at_n"] = round(
                res["ingest"]["cpu"]["edits_per_s"] / b["ingest_edits_per_s_at_n"], 2)
    del base
    shutil.rmtree(work, ignore_errors=True)
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--json", default=None, metavar="FILE")
    p.add_argument("--index", default="IVFauto,Flat")
    p.add_argument("--nprobe", type=int, default=64)
    p.add_argument("--nprobe-sweep", default=None, metavar="P,P",
                   help="IVF: also measure search at these nprobe values")
    p.add_argument("--embed-limit", type=int, default=100_000,
                   help="largest size whose questions are embedded; bigger sizes reuse them")
    p.add_argument("--perturb-from", type=int, default=None, metavar="M",
                   help="base the sizes above --embed-limit on the M vectors an earlier run "
                        "embedded and cached, instead of embedding a smaller size first")
    p.add_argument("--sigma", type=float, default=0.3,
                   help="norm of the perturbation of reused vectors (unit vectors)")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--text-queries", type=int, default=100)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--chunk", type=int, default=1024, help="memory.add_chunk")
    p.add_argument("--baseline-ingest", type=int, default=100)
    p.add_argument("--baseline-queries", type=int, default=3)
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--threads", type=int, default=1,
                   help="torch and faiss threads (1: CPU time equals idle-core latency)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--embedder", default=None, help="embedder name (default: the offline MiniLM)")
    p.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "lte-bench-memory"))
    p.add_argument("--workdir", default=None)
    p.add_argument("--wandb-project", default=None,
                   help="log each size's figures to W&B (offline without an API key)")
    args = p.parse_args()

    import faiss
    import torch

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    emb_cfg = EmbedderConfig(**({"name": args.embedder} if args.embedder else {}),
                             device="cpu")
    sizes = sorted(int(s) for s in args.sizes.split(","))
    out = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                       "load_avg_start": os.getloadavg(), "faiss": faiss.__version__,
                       "threads": args.threads},
           "embedder": emb_cfg.name, "sizes": []}
    real: dict = {}
    from lte.tracking import wandb_run

    with wandb_run(args.wandb_project, "bench-memory", config=vars(args)) as run:
        for n in sizes:
            print(f"== size {n}", file=sys.stderr)
            res = run_size(n, args, cache, emb_cfg, real)
            print(json.dumps(res, indent=1))
            out["sizes"].append(res)
            if run:  # one step per size: the figures against the number of edits
                run.log({k: v for k, v in _flat(res).items()
                         if isinstance(v, (int, float)) and not isinstance(v, bool)})
            if args.json:
                Path(args.json).write_text(json.dumps(out, indent=1))
    out["machine"]["load_avg_end"] = os.getloadavg()
    out["machine"]["max_rss_gb"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


if __name__ == "__main__":
    main()
