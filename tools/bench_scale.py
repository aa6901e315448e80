"""The scaling study (issue 18, item 3): quality and cost of the edit memory as it grows.

    nice -n 15 python tools/bench_scale.py --sizes 1000,10000,100000 --out runs/scale
    python tools/bench_scale.py --report runs/scale   # table + plots from results.json only

The evaluation edits (counterfact-edit-1k, ZsRE-test: 2,304) are stored after N distractor edits
(the rest of counterfact-edit, then the synthetic world), every key a real MiniLM embedding of a
real question (tools/scale_corpus.py caches them as float16, one file per chunk). For each N and
index (Flat, IVF at the tuned nprobe, HNSW at the tuned efSearch):
- retrieval: hit@1 / hit@3 of the rewrite questions (the stored keys) and their rephrases, top-1
  similarity of locality questions, recall@1 of the rephrases against Flat (exact);
- search through `EditMemory.search_vectors` (index + log lookup): p50/p99 of one query on one
  faiss thread, and queries/s of batches of 64 on one and on all cores;
- ingest edits/s of log + index (vectors given; the embedder's own rate is the cache's), RAM
  held by an open memory (a fresh process opens it: RSS growth over the edits, also after
  malloc_trim) against the index's own bytes, disk per edit;
- once per N (the IVF memory): Edit Succ / rephrase / Locality of the shipped model through
  `lte.eval.evaluate` on a sample of the evaluation edits, with the relevance gate (threshold
  calibrated on counterfact-val, as `lte memory calibrate`) and without.
Resumable: vectors come from the cache, and every finished (N, index) row is kept in
--out/results.json and skipped by a re-run.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

import scale_corpus as sc  # noqa: E402

INDEXES = ("flat", "ivf", "hnsw")  # lte.config.index_spec presets: Flat, IVFauto,Flat, HNSW32
BATCH = 64
GATE_DEV_EDITS = 600  # counterfact-val edits the gate is calibrated on (embedding time)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000", help="distractor counts N")
    ap.add_argument("--indexes", default=",".join(INDEXES), help="index presets, comma-separated")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--cache", default=str(REPO / "runs" / "scale-cache"))
    ap.add_argument("--out", default=str(REPO / "runs" / "scale"))
    ap.add_argument("--embedder", default=None,
                    help="embedder name (default: the shipped MiniLM; `hashing` for a smoke run)")
    ap.add_argument("--backend", default="torch", choices=("torch", "onnx-int8"),
                    help="embedder backend of the whole study (keys, questions, memories); "
                         "onnx-int8 embeds ~5x faster on 2 cores (README, embedder backends)")
    ap.add_argument("--threads", type=int, default=1,
                    help="embedding threads, either backend (1: on a shared box 2 threads wait "
                         "on each other)")
    ap.add_argument("--conflict", choices=("embedding", "exact", "keep_all"),
                    help="memory.conflict of every memory (default: MemoryConfig's); the "
                         "evaluation edits include repeated facts that `embedding` supersedes")
    ap.add_argument("--target-recall", type=float, default=0.99)
    ap.add_argument("--eval-cases", type=int, default=200)
    ap.add_argument("--single-queries", type=int, default=500)
    ap.add_argument("--embed-only", action="store_true", help="fill the vector cache and stop")
    ap.add_argument("--report", metavar="DIR", help="write table + plots of DIR/results.json")
    ap.add_argument("--keep", action="store_true", help="keep the memory folders")
    return ap.parse_args(argv)


# ---------------------------------------------------------------------------------------------
def pct(values) -> dict:
    a = np.asarray(values) * 1000
    return {"p50_ms": round(float(np.percentile(a, 50)), 3),
            "p99_ms": round(float(np.percentile(a, 99)), 3)}


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


_RSS_PROBE = r"""
import ctypes, gc, json, sys
import numpy as np
from lte.memory import EditMemory
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
q = np.load(sys.argv[2])
EditMemory  # imports faiss and the store before the baseline
import faiss
gc.collect(); before = rss()
mem = EditMemory.open(sys.argv[1], readonly=True, target_recall=float(sys.argv[3]))
mem.search_vectors(q, k=1, threshold=None)
gc.collect(); held = rss()
ctypes.CDLL("libc.so.6").malloc_trim(0)
trimmed = rss()
print(json.dumps({"before": before, "held": held, "trimmed": trimmed, "tuning": mem.index.tuning,
                  "index_bytes": mem.index.memory_bytes(), "live": len(mem)}))
"""


def open_rss(folder: Path, query: np.ndarray, target: float) -> dict:
    """RSS that opening the memory adds to a fresh process (what a server holds per edit)."""
    qpath = folder.parent / "rss-query.npy"
    np.save(qpath, query[:1])
    out = subprocess.run([sys.executable, "-c", _RSS_PROBE, str(folder), str(qpath), str(target)],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    r = json.loads(out.stdout.strip().splitlines()[-1])
    n = max(r["live"], 1)
    return {"rss_per_edit_bytes": round((r["held"] - r["before"]) / n, 1),
            "rss_per_edit_after_trim_bytes": round((r["trimmed"] - r["before"]) / n, 1),
            "index_bytes_per_edit": round(r["index_bytes"] / n, 1),
            "reopened_tuning_kept": r["tuning"] is not None or "Flat" == folder.name[-4:]}


# ---------------------------------------------------------------------------------------------
def build(folder: Path, spec: str, records, vecs, embedder, target: float, tune_q: np.ndarray,
          conflict: str | None = None):
    """The memory of `records` with their cached vectors; the search setting is tuned once, at
    the end, on cached paraphrase vectors (a build without them tunes at each IVF retraining on
    its edits' paraphrases, embedded then: minutes on this loaded box)."""
    from lte.config import MemoryConfig
    from lte.memory import EditMemory

    cfg = MemoryConfig(embedder=embedder.cfg, index=spec, device="cpu", target_recall=None,
                       snapshot_every=10**9, add_chunk=4096)
    if conflict:
        cfg.conflict = conflict
    shutil.rmtree(folder, ignore_errors=True)
    mem = EditMemory.create(folder, cfg, embedder=embedder)
    t0 = time.perf_counter()
    ids = mem.add(records, vectors=vecs)
    ingest = time.perf_counter() - t0
    t0 = time.perf_counter()
    mem.index.target_recall = target
    mem.tune_search(tune_q)
    tune = time.perf_counter() - t0
    mem.snapshot()
    return mem, ids, {"ingest_edits_per_s": round(len(records) / ingest, 1),
                      "ingest_s": round(ingest, 1), "tune_s": round(tune, 2)}


def hit_rate(hits, rows, ev, k: int) -> float:
    """Share of questions whose own edit (ev.records[row]) is among their first k hits."""
    descs = [r.descriptor for r in ev.records]
    return round(float(np.mean([any(x.descriptor == descs[r] for x in h[:k])
                                for h, r in zip(hits, rows, strict=True)])), 4)


def retrieval(mem, ev, evec, owner_ids) -> tuple[dict, dict]:
    out, top = {}, {}
    for kind, rows in (("rewrite", list(range(len(ev.records)))),
                       ("rephrase", [i for i, _ in ev.rephrases])):
        vecs = evec["keys"] if kind == "rewrite" else evec["rephrase"]
        hits = mem.search_vectors(vecs, k=3, threshold=None)
        out[f"{kind}_hit1"] = hit_rate(hits, rows, ev, 1)
        out[f"{kind}_hit3"] = hit_rate(hits, rows, ev, 3)
        top[kind] = np.array([h[0].score if h else -np.inf for h in hits], dtype=np.float32)
    loc = mem.search_vectors(evec["locality"], k=1, threshold=None)
    top["locality"] = np.array([h[0].score if h else -np.inf for h in loc], dtype=np.float32)
    out["locality_top1_sim_mean"] = round(float(np.mean(top["locality"])), 4)
    return out, top


def latency(mem, queries: np.ndarray, n_single: int) -> dict:
    """Search through `EditMemory.search_vectors`. Wall-clock and CPU time: on a shared, loaded
    box the wall-clock includes waiting for a core; one thread's CPU time is what a query costs
    on an idle core, and a batch's CPU time over all threads is what it costs the machine."""
    import faiss

    faiss.omp_set_num_threads(1)
    mem.search_vectors(queries[:BATCH], k=1, threshold=None)  # warm
    wall, cpu, raw = [], [], []
    for q in queries[:n_single]:
        q = q[None, :]
        t0, c0 = time.perf_counter(), time.thread_time()
        mem.search_vectors(q, k=1, threshold=None)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
        c0 = time.thread_time()
        mem.index.search(q, 1)
        raw.append(time.thread_time() - c0)
    out = {"single_wall": pct(wall), "single_cpu": pct(cpu), "single_index_only_cpu": pct(raw),
           "single_qps_1thread_wall": round(len(wall) / sum(wall), 1),
           "single_qps_1thread_cpu": round(len(cpu) / sum(cpu), 1)}
    cores = os.cpu_count() or 1
    for threads in sorted({1, cores}):
        faiss.omp_set_num_threads(threads)
        t0, c0 = time.perf_counter(), time.process_time()
        for start in range(0, len(queries), BATCH):
            mem.search_vectors(queries[start:start + BATCH], k=1, threshold=None)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        out[f"batch{BATCH}_{threads}thread"] = {
            "qps_wall": round(len(queries) / dt, 1),
            "cpu_ms_per_query": round(1000 * dc / len(queries), 4)}
    faiss.omp_set_num_threads(1)
    b = out[f"batch{BATCH}_{cores}thread"]
    out["batch_vs_single_wall"] = round(b["qps_wall"] / out["single_qps_1thread_wall"], 2)
    # What the batch gives on idle cores: its CPU per query spread over `cores` threads.
    out["batch_vs_single_idle_cores"] = round(
        cores * (1000 / out["single_qps_1thread_cpu"]) / b["cpu_ms_per_query"], 2)
    return out


def along_sweep(mem, ev, evec, n_single: int) -> dict:
    """Rephrase hit@1 and one query's CPU p50 at every setting the tuner swept: what each step
    of recall against exact search costs and buys in retrieval of the right edit."""
    import faiss

    t = mem.index.tuning
    rows = [i for i, _ in ev.rephrases]
    out = {}
    for value in t["sweep"]:
        mem.index.set_param(t["param"], int(value))
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        hits = mem.search_vectors(evec["rephrase"], k=1, threshold=None)
        faiss.omp_set_num_threads(1)
        cpu = []
        for q in evec["rephrase"][:n_single]:
            c0 = time.thread_time()
            mem.search_vectors(q[None, :], k=1, threshold=None)
            cpu.append(time.thread_time() - c0)
        out[value] = {"recall_at_1": t["sweep"][value], "single_cpu_p50_ms": pct(cpu)["p50_ms"],
                      "rephrase_hit1": hit_rate(hits, rows, ev, 1)}
    mem.index.set_param(t["param"], t["value"])
    return out


def gate_threshold(cache, data: Path) -> dict:
    """The relevance gate as `lte memory calibrate` chooses it on counterfact-val (exact top-1
    over the dev edits' keys; vectors from the cache)."""
    from lte.data.readers import read_records
    from lte.memory.calibrate import choose_threshold

    recs = read_records(data / "counterfact" / "counterfact-val.json")[:GATE_DEV_EDITS]
    keys = cache.get("val-keys", [r.prompt for r in recs])
    reph = [(i, q) for i, r in enumerate(recs) for q in r.rephrase_prompts]
    loc = [qa.prompt for r in recs for qas in r.locality.values() for qa in qas]
    rv = cache.get("val-rephrase", [q for _, q in reph])
    lv = cache.get("val-locality", loc)
    descs = [r.descriptor for r in recs]
    s = rv @ keys.T
    best = s.argmax(axis=1)
    pos = np.array([s[j, b] if descs[b] == descs[i] else -np.inf
                    for j, ((i, _), b) in enumerate(zip(reph, best, strict=True))])
    neg = (lv @ keys.T).max(axis=1)
    t, keep, reject = choose_threshold(pos, neg)
    return {"threshold": round(t, 4), "keep_rate": round(keep, 4), "reject_rate": round(reject, 4)}


def edit_quality(mem, ev, owner_ids, n_cases: int, threshold: float) -> dict:
    """lte.eval's metrics of the shipped model on a sample of the evaluation edits, retrieved
    among everything else in `mem` (the sample is taken out first, then inserted by the
    protocol, as `lte eval` does)."""
    from lte.config import ModelConfig
    from lte.editor import LTEEditor
    from lte.eval.run import evaluate, sample_records
    from lte.modeling.load import load_model_and_tokenizer

    rows = sample_records(list(range(len(ev.records))), seed=0)[:n_cases]
    sample = [ev.records[i] for i in rows]
    mem.delete([owner_ids[i] for i in rows])
    model, tok = load_model_and_tokenizer(ModelConfig(name_or_path="lte:tiny"))
    editor = LTEEditor(model, tok, mem, top_k=1, batch_size=32, max_new_tokens=16)
    out = {}
    gates = (("gate", threshold), ("no_gate", None)) if np.isfinite(threshold) else \
        (("no_gate", None),)
    for name, gate in gates:
        mem.threshold = gate
        m = evaluate(editor, sample)
        out[name] = {k: round(float(v), 4) for k, v in m.items()
                     if isinstance(v, (int, float)) and not k.endswith("_ms")}
    mem.threshold = None
    return out


# ---------------------------------------------------------------------------------------------
def run(args) -> None:
    import faiss
    import torch

    from lte.config import EmbedderConfig
    from lte.config.index_spec import resolve_index_spec
    from lte.embedding import make_embedder

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(1)
    data, out_dir = Path(args.data), Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    emb_cfg = EmbedderConfig(backend=args.backend, threads=args.threads)
    if args.embedder:
        emb_cfg.name = args.embedder
    embedder = make_embedder(emb_cfg)
    cache = sc.VectorCache(Path(args.cache), embedder)
    ev = sc.eval_set(data)
    t0 = time.perf_counter()
    evec = sc.eval_vectors(cache, ev)
    gate = gate_threshold(cache, data)
    sc.key_vectors(cache, data, ev, max(sizes))
    print(f"vectors ready in {time.perf_counter() - t0:.0f} s; gate {gate}", flush=True)
    if args.embed_only:
        return
    res_path = out_dir / "results.json"
    results = json.loads(res_path.read_text()) if res_path.exists() else {"rows": {}}
    results["gate"] = gate
    results["embedding_cache"] = cache.one_time_seconds()
    results["embedder_backend"] = args.backend
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "faiss": faiss.__version__, "load_avg_start": os.getloadavg()[0]}
    for n in sizes:
        recs, vecs = sc.key_vectors(cache, data, ev, n)
        records = recs + ev.records
        allvecs = np.concatenate([vecs, evec["keys"]])
        exact_top = None
        for spec in [resolve_index_spec(s) for s in args.indexes.split(",")]:
            key = f"{n}|{spec}"
            if key in results["rows"]:
                print(f"{key}: done before, skipped")
                continue
            folder = out_dir / f"mem-{n}-{spec.replace(',', '_')}"
            print(f"{key}: building ({len(records)} edits)", flush=True)
            mem, ids, row = build(folder, spec, records, allvecs, embedder, args.target_recall,
                                  evec["rephrase"][0::2], args.conflict)
            owner_ids = ids[len(recs):]
            row.update({"n_distractors": n, "edits": len(records), "index": spec,
                        "search_tuning": mem.index.tuning,
                        "ivf_lists": mem.index.nlist if mem.index.is_ivf else None,
                        "conflict": mem.cfg.conflict, "superseded": mem.stats()["superseded"]})
            quality, top = retrieval(mem, ev, evec, owner_ids)
            row.update(quality)
            if spec == "Flat":
                exact_top = top
                np.save(out_dir / f"exact-top1-{n}.npy", top["rephrase"])
            elif exact_top is None and (out_dir / f"exact-top1-{n}.npy").exists():
                exact_top = {"rephrase": np.load(out_dir / f"exact-top1-{n}.npy")}
            if exact_top is None:  # no Flat row at this N: the index's own exhaustive search
                q = np.ascontiguousarray(evec["rephrase"])
                exact_top = {"rephrase": mem.index.exhaustive(q, 1)[0][:, 0]}
                np.save(out_dir / f"exact-top1-{n}.npy", exact_top["rephrase"])
            found = top["rephrase"] >= exact_top["rephrase"] - 1e-5
            row["rephrase_recall1_vs_exact"] = round(float(np.mean(found)), 4)
            # the odd rows: paraphrases the tuner did not see
            row["rephrase_recall1_vs_exact_not_tuned_on"] = round(float(np.mean(found[1::2])), 4)
            row["latency"] = latency(mem, evec["rephrase"], args.single_queries)
            if mem.index.tuning:
                row["along_sweep"] = along_sweep(mem, ev, evec, min(200, args.single_queries))
            mem.close()
            row["disk_per_edit_bytes"] = round(folder_bytes(folder) / len(records), 1)
            row.update(open_rss(folder, evec["rephrase"], args.target_recall))
            if spec.startswith("IVF"):
                mem = sc_open(folder, args.target_recall)
                t0 = time.perf_counter()
                row["edit_quality"] = edit_quality(mem, ev, owner_ids, args.eval_cases,
                                                   gate["threshold"])
                row["edit_quality"]["seconds"] = round(time.perf_counter() - t0, 1)
                mem.close()
            row["load_avg"] = os.getloadavg()[0]
            results["rows"][key] = row
            res_path.write_text(json.dumps(results, indent=1))
            print(f"{key}: {json.dumps(row)}", flush=True)
            if not args.keep:
                shutil.rmtree(folder, ignore_errors=True)
            gc.collect()
    report(out_dir)


def sc_open(folder: Path, target: float):
    from lte.memory import EditMemory

    return EditMemory.open(folder, target_recall=target)


# ---------------------------------------------------------------------------------------------
def report(out_dir: Path) -> None:
    """results.md (the table) and quality.png / latency.png from results.json."""
    results = json.loads((Path(out_dir) / "results.json").read_text())
    rows = sorted(results["rows"].values(), key=lambda r: (r["n_distractors"], r["index"]))
    head = ("| N distractors | index | setting (recall@1 tuned) | rewrite hit@1 / @3 | rephrase "
            "hit@1 / @3 | recall@1 vs exact | locality top-1 sim | 1 query p50 / p99 ms (CPU) | "
            "batch 64 on 2 cores / single, q/s: idle cores (wall) | ingest edits/s | RAM / index B per edit | disk kB/edit |")
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        t = r.get("search_tuning") or {}
        setting = f"{t['param']} {t['value']} ({t['recall_at_1']:.3f})" if t else "exact"
        if r.get("ivf_lists"):
            setting = f"{r['ivf_lists']} lists, " + setting
        lat = r["latency"]
        lines.append(
            f"| {r['n_distractors']:,} | {r['index']} | {setting} | {r['rewrite_hit1']:.3f} / "
            f"{r['rewrite_hit3']:.3f} | {r['rephrase_hit1']:.3f} / {r['rephrase_hit3']:.3f} | "
            f"{r.get('rephrase_recall1_vs_exact', 1.0):.3f} | {r['locality_top1_sim_mean']:.3f} | "
            f"{lat['single_cpu']['p50_ms']:.2f} / {lat['single_cpu']['p99_ms']:.2f} | "
            f"{lat['batch_vs_single_idle_cores']:.2f} ({lat['batch_vs_single_wall']:.2f}) | "
            f"{r['ingest_edits_per_s']:,.0f} | "
            f"{r['rss_per_edit_bytes']:,.0f} / {r['index_bytes_per_edit']:,.0f} | "
            f"{r['disk_per_edit_bytes'] / 1000:.1f} |")
    q_lines = ["| N distractors | gate | Edit Succ | rephrase | Locality |", "|---|---|---|---|---|"]
    for r in rows:
        for name, m in (r.get("edit_quality") or {}).items():
            if isinstance(m, dict):
                q_lines.append(f"| {r['n_distractors']:,} | {name} | {m.get('edit_succ', 0):.3f} | "
                               f"{m.get('rephrase_succ', 0):.3f} | "
                               f"{m.get('locality', 0):.3f} |")
    s_lines = ["| N distractors | index | setting | recall@1 vs exact | rephrase hit@1 | 1 query p50 "
               "ms (CPU) |", "|---|---|---|---|---|---|"]
    for r in rows:
        param = (r.get("search_tuning") or {}).get("param")
        for value, m in (r.get("along_sweep") or {}).items():
            s_lines.append(f"| {r['n_distractors']:,} | {r['index']} | {param} {value} | "
                           f"{m['recall_at_1']:.3f} | {m['rephrase_hit1']:.3f} | "
                           f"{m['single_cpu_p50_ms']:.2f} |")
    text = "\n\n".join("\n".join(t) for t in (lines, q_lines, s_lines)
                       if len(t) > 2 or t is lines) + "\n"
    (Path(out_dir) / "results.md").write_text(text)
    print(text)
    _plots(rows, Path(out_dir))


def _plots(rows, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for spec in sorted({r["index"] for r in rows}):
        rs = [r for r in rows if r["index"] == spec]
        ns = [r["n_distractors"] for r in rs]
        axes[0].plot(ns, [r["rephrase_hit1"] for r in rs], "o-", label=f"{spec} rephrase hit@1")
        axes[0].plot(ns, [r["rewrite_hit1"] for r in rs], "s--", label=f"{spec} rewrite hit@1")
        axes[1].plot(ns, [r["latency"]["single_cpu"]["p50_ms"] for r in rs], "o-", label=spec)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("distractor edits N")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("hit@1")
    axes[1].set_ylabel("one query p50 (ms CPU, 1 thread)")
    axes[1].set_yscale("log")
    fig.tight_layout()
    fig.savefig(out_dir / "scale.png", dpi=110)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.report:
        report(Path(args.report))
    else:
        run(args)


if __name__ == "__main__":
    main()
