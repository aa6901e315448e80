"""What an IVF list costs to scan, by code: raw FAISS on the scaling study's 10^6 real keys.

    python tools/ivf_codecs.py --backend onnx-int8 --cache runs/scale-cache --out F.json

The keys and rephrase questions of tools/bench_scale.py (from its vector cache: run its
`--embed-only` first), one coarse quantizer (2,048 lists, trained once), and on it: the exact
vectors (Flat, the baseline of the same run), 8-bit scalar codes and 4-bit fast-scan PQ codes,
each with its shortlist re-ranked on the exact vectors (k_factor 32 and 128; a no-op for Flat).
For each nprobe: recall@1 of the rephrase questions against exact search and the p50 of one
query on one thread. This is where the `IVF..,PQ<m>x4fs,RFlat` index (preset `ivffs`) comes
from.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CODECS = ("Flat", "SQ8", "PQ96x4fs", "PQ192x4fs")
K_FACTORS = (32, 128)
NPROBES = (16, 32, 64, 128, 256, 512, 1024)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="keys (distractors + eval edits)")
    ap.add_argument("--nlist", type=int, default=2048)
    ap.add_argument("--codecs", default=",".join(CODECS), help="Flat, SQ8 and/or PQ<m>x4fs")
    ap.add_argument("--nprobes", default=",".join(map(str, NPROBES)))
    ap.add_argument("--k-factors", default=",".join(map(str, K_FACTORS)))
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--cache", default=str(REPO / "runs" / "scale-cache"))
    ap.add_argument("--backend", default="torch", choices=("torch", "onnx-int8"))
    ap.add_argument("--single-queries", type=int, default=200)
    ap.add_argument("--out", help="write the rows as JSON here")
    args = ap.parse_args()

    import faiss
    import scale_corpus as sc

    from lte.config import EmbedderConfig
    from lte.embedding import make_embedder

    cache = sc.VectorCache(Path(args.cache), make_embedder(EmbedderConfig(backend=args.backend)))
    ev = sc.eval_set(Path(args.data))
    evec = sc.eval_vectors(cache, ev)
    _, vecs = sc.key_vectors(cache, Path(args.data), ev, args.n - len(ev.records))
    x = np.ascontiguousarray(np.concatenate([vecs, evec["keys"]]))
    q = np.ascontiguousarray(evec["rephrase"])
    d = x.shape[1]

    faiss.omp_set_num_threads(2)  # exact search and recall: batched; latency: one thread
    flat = faiss.IndexFlatIP(d)
    flat.add(x)
    exact = flat.search(q, 1)[0][:, 0]
    del flat
    n_train = min(len(x), max(150_000, 40 * args.nlist))
    train = x[np.random.default_rng(0).choice(len(x), n_train, replace=False)]
    km = faiss.Kmeans(d, args.nlist, niter=10, seed=1)  # as lte.memory.index trains
    km.train(train)

    rows = []
    for codec in args.codecs.split(","):
        quantizer = faiss.IndexFlatIP(d)
        quantizer.add(km.centroids)
        if codec == "Flat":
            ivf = faiss.IndexIVFFlat(quantizer, d, args.nlist, faiss.METRIC_INNER_PRODUCT)
        elif codec == "SQ8":
            ivf = faiss.IndexIVFScalarQuantizer(quantizer, d, args.nlist,
                                                faiss.ScalarQuantizer.QT_8bit,
                                                faiss.METRIC_INNER_PRODUCT)
        else:
            m = int(codec[2:].split("x")[0])
            ivf = faiss.IndexIVFPQFastScan(quantizer, d, args.nlist, m, 4,
                                           faiss.METRIC_INNER_PRODUCT)
            ivf.by_residual = False  # as lte.memory.index builds it
        t0 = time.perf_counter()
        ivf.train(train)
        ivf.add(x)
        built = time.perf_counter() - t0
        refine = faiss.IndexRefineFlat(ivf, faiss.swig_ptr(x))
        for kf in map(int, args.k_factors.split(",")):
            refine.k_factor = kf
            for nprobe in map(int, args.nprobes.split(",")):
                ivf.nprobe = nprobe
                faiss.omp_set_num_threads(2)
                found = refine.search(q, 1)[0][:, 0] >= exact - 1e-5
                faiss.omp_set_num_threads(1)
                times = []
                for one in q[:args.single_queries]:
                    t0 = time.perf_counter()
                    refine.search(one[None], 1)
                    times.append(time.perf_counter() - t0)
                row = {"codes": codec, "k_factor": kf, "nprobe": nprobe, "nlist": args.nlist,
                       "recall1_vs_exact": round(float(found.mean()), 4),
                       "p50_ms_one_thread": round(1e3 * float(np.median(times)), 3),
                       "build_s": round(built, 1)}
                print(json.dumps(row), flush=True)
                rows.append(row)
        del refine, ivf, quantizer
    if args.out:
        Path(args.out).write_text(json.dumps({"n": len(x), "queries": len(q),
                                              "backend": args.backend, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
