"""VectorIndex: FAISS inner-product search over edit ids, named by a factory string.

Index structures (`MemoryConfig.index`):
- `Flat`: `IndexIDMap2` over `IndexFlatIP`, exact.
- `HNSW32` (any M): `IndexIDMap2` over `IndexHNSWFlat`. HNSW cannot remove vectors, so a removed
  id becomes a tombstone filtered out by an `IDSelector` at search time; the graph is rebuilt
  from the log once tombstones pass `TOMBSTONE_REBUILD` of it.
- `IVF<nlist>,Flat` / `IVF<nlist>,PQ<m>` (`nlist` may be `auto`): the IVF index keeps the edit ids
  itself (with a hashtable direct map for remove/reconstruct). `IndexIDMap2` is not used here:
  its `remove_ids` compacts its id map but not the IVF's internal ids, so searches after a removal
  return wrong ids (seen on faiss 1.15).
- `IVF<nlist>,PQ<m>x4fs,RFlat`: 4-bit PQ codes scanned with SIMD lookups (fast scan, ~5x
  cheaper per list than Flat at 10^6 MiniLM keys), the shortlist of `REFINE_K_FACTOR` x k
  re-ranked on the exact vectors, held beside the codes: `IndexIDMap2` over `IndexRefineFlat`
  over `IndexIVFPQFastScan`. Fast-scan lists cannot remove entries, so removals are tombstones,
  as in HNSW (filtered by position at search time, cleared by the next rebuild); the id map is
  never compacted, so its ids stay right.

Until enough vectors exist to train an IVF index's centroids (39 per list), an exact flat index
stands in; once the memory grows past `retrain_factor` times the size it was trained at, the
centroids are trained again from the log's vectors.

Search settings are tuned (`tune`) at build and retrain time: the smallest IVF nprobe / HNSW
efSearch whose recall@1 against exhaustive search reaches `MemoryConfig.target_recall`, on
held-out edits of the memory itself (each stored key searched for its nearest *other* edit, so
the query's own vector does not make the neighbourhood look easier than a real question's).

With faiss-gpu and CUDA (`lte.availability.faiss_gpu_available()`), searches go to a copy sharded
over all GPUs, refreshed after changes; the CPU index stays the one that is changed and saved.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from lte.config import MemoryConfig
from lte.config.index_spec import INDEX_SPEC, check_index_for_dim, check_index_spec
from lte.errors import UserError

# k-means wants this many training points per centroid (faiss warns below 39).
POINTS_PER_LIST = 39
# Cap of training points per centroid: more costs time without better centroids.
TRAIN_POINTS_PER_LIST = 64
TOMBSTONE_REBUILD = 0.2
# efSearch values the tuner tries (HNSW); IVF tries nprobe = 1, 2, 4, ... nlist.
EF_SWEEP = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024, 2048)

# Exhaustive distances (Flat, IVF's coarse quantizer) go through BLAS from this many
# queries x dims on. faiss >= 1.14 waits until 128,000 (tuned for dozens of threads), so a batch
# of 64 MiniLM queries was scanned query by query: at 10^5 x 384 on one thread BLAS costs
# 1.1 ms a query against 6.7 for the scan (faiss issue #4925 / PR #5109 put the one-thread
# crossover at 640-1,280). From 4 queries of 384 dims on; a single query keeps the scan.
BLAS_FROM_WORK = 1536
# Database vectors per BLAS call (faiss: 1,024). Each call synchronises the OpenMP threads;
# on a busy 2-core box 1,024-vector calls made a 2-thread batch slower than the scan (5.7 vs
# 4.8 ms a query), 32,768 made it 1.2. Queries per call (faiss: 4,096) bound the distance
# block: 512 x 32,768 floats = 64 MB at most.
BLAS_DATABASE_BLOCK = 32768
BLAS_QUERY_BLOCK = 512
# Fast-scan candidates re-ranked exactly per result wanted. At 10^6 MiniLM keys, IVF2048,
# PQ192x4fs: 32 and 128 give recall@1 0.982 / 0.984 at nprobe 512 and 0.997 / 0.998 at 1,024,
# at 2.7 / 2.5 and 4.8 / 4.9 ms (tools/ivf_codecs.py, docs/scale/onnx/ivf-codecs/).
REFINE_K_FACTOR = 32

VectorSource = Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]


@dataclass
class _Spec:
    kind: str  # flat | hnsw | ivf
    hnsw_m: int = 32
    nlist: int | None = None  # None: auto
    coarse: str = "Flat"  # Flat | PQ<m>[x<bits>] | PQ<m>x4fs
    refine: bool = False  # exact re-ranking of the fast-scan shortlist (`,RFlat`)


def _parse(spec: str) -> _Spec:
    m = INDEX_SPEC.match(spec)
    if not m:
        raise UserError(check_index_spec(spec), field="memory.index")
    if spec == "Flat":
        return _Spec("flat")
    if m.group(2):
        return _Spec("hnsw", hnsw_m=int(m.group(2)))
    nlist = None if m.group(4) == "auto" else int(m.group(4))
    if m.group(8):
        return _Spec("ivf", nlist=nlist, coarse=f"PQ{m.group(8)}x4fs", refine=True)
    return _Spec("ivf", nlist=nlist, coarse=m.group(5))


def auto_nlist(n: int) -> int:
    """About 4*sqrt(n) lists, a power of two, with enough points per list to train."""
    target = 2 ** round(math.log2(max(4 * math.sqrt(max(n, 1)), 1)))
    return int(max(16, min(target, n // POINTS_PER_LIST)))


class VectorIndex:
    """Edit id -> key vector, searched by inner product."""

    @classmethod
    def from_config(cls, dim: int, cfg: MemoryConfig) -> VectorIndex:
        return cls(dim, cfg.index, nprobe=cfg.nprobe, ef_search=cfg.ef_search,
                   retrain_factor=cfg.retrain_factor, device=cfg.device,
                   target_recall=cfg.target_recall, tune_queries=cfg.tune_queries)

    def __init__(self, dim: int, spec: str, *, nprobe: int, ef_search: int,
                 retrain_factor: float, device: str, target_recall: float | None = None,
                 tune_queries: int = 1000):
        """The search settings are MemoryConfig's fields (defaults there only): `from_config`."""
        import faiss

        faiss.cvar.distance_compute_blas_threshold = BLAS_FROM_WORK
        faiss.cvar.distance_compute_blas_database_bs = BLAS_DATABASE_BLOCK
        faiss.cvar.distance_compute_blas_query_bs = BLAS_QUERY_BLOCK
        self.faiss = faiss
        self.dim, self.spec = dim, spec
        problem = check_index_for_dim(spec, dim)
        if problem:
            raise UserError(problem, field="memory.index")
        self.s = _parse(spec)
        self.nprobe, self.ef_search, self.retrain_factor = nprobe, ef_search, retrain_factor
        self.device = device
        self.target_recall, self.tune_queries = target_recall, tune_queries
        self.tuning: dict | None = None  # what `tune` chose and measured (None: not tuned)
        self.trained_at = 0  # live vectors when the IVF centroids were trained (0: untrained)
        self.nlist = 0
        self.tombstones: set[int] = set()
        self._gpu = None
        self._gpu_stale = True
        self._search_params = None
        self._selector = None
        self.index = self._empty()

    # -- construction ----------------------------------------------------------------------
    def _flat(self):
        return self.faiss.IndexIDMap2(self.faiss.IndexFlatIP(self.dim))

    def _empty(self):
        if self.s.kind == "hnsw":
            inner = self.faiss.IndexHNSWFlat(self.dim, self.s.hnsw_m, self.faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = max(40, 2 * self.s.hnsw_m)
            return self.faiss.IndexIDMap2(inner)
        return self._flat()  # also the stand-in of an IVF index not trained yet

    def _new_ivf(self, nlist: int):
        f = self.faiss
        if self.s.refine:
            refine = f.index_factory(self.dim, f"IVF{nlist},{self.s.coarse},RFlat",
                                     f.METRIC_INNER_PRODUCT)
            # Codes of the vectors, not of their residuals: one lookup table per query instead
            # of one per probed list (at nprobe 512 the tables cost more than the scan).
            f.extract_index_ivf(refine).by_residual = False
            return f.IndexIDMap2(refine)
        idx = f.index_factory(self.dim, f"IVF{nlist},{self.s.coarse}", f.METRIC_INNER_PRODUCT)
        idx.set_direct_map_type(f.DirectMap.Hashtable)
        return idx

    @property
    def is_ivf(self) -> bool:
        return self.s.kind == "ivf" and self.trained_at > 0

    @property
    def keeps_removed(self) -> bool:
        """Removed vectors stay in the structure as tombstones (HNSW, trained fast-scan IVF)."""
        return self.s.kind == "hnsw" or (self.s.refine and self.is_ivf)

    def min_train(self) -> int:
        need = POINTS_PER_LIST * (self.s.nlist or 16)
        pq = re.match(r"PQ\d+(?:x(\d+))?", self.s.coarse)
        if pq:  # each PQ sub-quantizer has 2**nbits centroids to train too
            need = max(need, POINTS_PER_LIST * 2 ** int(pq.group(1) or 8))
        return need

    def wants_rebuild(self, n_live: int) -> bool:
        """True when IVF centroids should be (re)trained, or tombstones cleared."""
        if self.keeps_removed and \
                len(self.tombstones) > TOMBSTONE_REBUILD * max(self.index.ntotal, 1):
            return True
        if self.s.kind != "ivf" or n_live < self.min_train():
            return False
        return self.trained_at == 0 or n_live >= self.retrain_factor * self.trained_at

    def rebuild(self, source: VectorSource, n_live: int) -> None:
        """Build the index again from every live (id, vector) of the log.

        `source()` yields batches in id order; it is read twice for IVF (sample, then add).
        """
        self.tombstones.clear()
        self._search_params = None
        self._gpu_stale = True
        if self.s.kind != "ivf" or n_live < self.min_train():
            self.trained_at = 0
            self.index = self._empty()
            for ids, vecs in source():
                self.index.add_with_ids(vecs, ids)
            return
        nlist = self.s.nlist or auto_nlist(n_live)
        idx = self._new_ivf(nlist)
        want = min(n_live, TRAIN_POINTS_PER_LIST * nlist)
        stride = max(1, n_live // want)
        sample = np.concatenate([v[::stride] for _, v in _offset_batches(source(), stride)])
        # centroids for routing, not a codebook: 10 rounds suffice
        self.faiss.extract_index_ivf(idx).cp.niter = 10
        idx.train(sample)
        for ids, vecs in source():
            idx.add_with_ids(vecs, ids)
        self.index, self.nlist, self.trained_at = idx, nlist, n_live

    # -- changes -----------------------------------------------------------------------------
    def add(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        if len(ids):
            self.index.add_with_ids(np.ascontiguousarray(vecs, dtype=np.float32),
                                    np.asarray(ids, dtype=np.int64))
            self._gpu_stale = True

    def restore(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        """Make removed ids live again (an edit whose superseding edit was deleted): a
        tombstone is lifted, since the vector never left the structure; other indexes add it."""
        ids = np.asarray(ids, dtype=np.int64)
        if self.keeps_removed and len(ids):
            held = np.fromiter((int(i) in self.tombstones for i in ids), dtype=bool,
                               count=len(ids))
            self.tombstones.difference_update(ids[held].tolist())
            self._search_params = None
            self._gpu_stale = True
            ids, vecs = ids[~held], vecs[~held]
        self.add(ids, vecs)

    def remove(self, ids: Iterable[int]) -> None:
        ids = np.fromiter((int(i) for i in ids), dtype=np.int64)
        if not len(ids):
            return
        if self.keeps_removed:
            self.tombstones.update(int(i) for i in ids)
            self._search_params = None
        else:
            self.index.remove_ids(ids)
        self._gpu_stale = True

    # -- search ------------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def n_live(self) -> int:
        return self.ntotal - len(self.tombstones)

    def ids(self) -> np.ndarray:
        """Every id held (tombstones included)."""
        f = self.faiss
        if isinstance(self.index, f.IndexIDMap2) or isinstance(self.index, f.IndexIDMap):
            return f.vector_to_array(self.index.id_map).astype(np.int64)
        invlists = self.index.invlists
        out = [f.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
               for i in range(self.index.nlist) if invlists.list_size(i)]
        return np.concatenate(out).astype(np.int64) if out else np.zeros(0, dtype=np.int64)

    def _params(self):
        f = self.faiss
        if self.s.kind == "hnsw":
            if self._search_params is None:
                params = f.SearchParametersHNSW(efSearch=self.ef_search)
                if self.tombstones:
                    params.sel, self._selector = self._excluding(
                        np.fromiter(self.tombstones, dtype=np.int64))
                self._search_params = params
            return self._search_params
        if self.is_ivf and self.s.refine:
            if self._search_params is None:
                ivf = f.SearchParametersIVF(nprobe=min(self.nprobe, self.nlist))
                # The refinement ignores a selector of its own: the IVF one filters, and it
                # sees positions, not the id map's ids.
                keep: tuple = ()
                dead = self._dead_positions()
                if dead is not None:
                    ivf.sel, keep = self._excluding(dead)
                self._search_params = f.IndexRefineSearchParameters(
                    k_factor=REFINE_K_FACTOR, base_index_params=ivf)
                self._selector = (ivf, *keep)  # the parameters do not own their base ones
            return self._search_params
        if self.is_ivf:
            return f.SearchParametersIVF(nprobe=min(self.nprobe, self.nlist))
        return None

    def _excluding(self, ids: np.ndarray):
        """An IDSelector of everything but `ids`, and what must stay alive while it is used
        (SWIG does not own the selectors a parameter object points to)."""
        batch = self.faiss.IDSelectorBatch(ids)
        sel = self.faiss.IDSelectorNot(batch)
        return sel, (batch, sel)

    def _dead_positions(self) -> np.ndarray | None:
        """Positions, in the id map, of the tombstoned ids (None: none)."""
        if not self.tombstones:
            return None
        id_map = self.faiss.vector_to_array(self.index.id_map).astype(np.int64)
        dead = np.isin(id_map, np.fromiter(self.tombstones, dtype=np.int64))
        return np.flatnonzero(dead).astype(np.int64)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) each [n, k]; id -1 where fewer than k vectors are held."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self.ntotal == 0 or len(queries) == 0:
            return (np.full((len(queries), k), -np.inf, dtype=np.float32),
                    np.full((len(queries), k), -1, dtype=np.int64))
        gpu = self._gpu_index()
        if gpu is not None:
            return gpu.search(queries, k)
        params = self._params()
        if params is None:
            return self.index.search(queries, k)
        return self.index.search(queries, k, params=params)

    # -- tuning ------------------------------------------------------------------------------
    @property
    def tunable(self) -> bool:
        return self.s.kind == "hnsw" or self.is_ivf

    def tune(self, queries: np.ndarray | None = None, seed: int = 0) -> dict | None:
        """Choose nprobe (IVF) or efSearch (HNSW) for `target_recall`; returns what was chosen.

        `queries`: questions of the memory's own edits that are not their stored keys (their
        paraphrases); each must find a hit of the exhaustive top-1 score. Without them, up to
        `tune_queries` stored keys are held out: each must find the same nearest *other* edit
        as exhaustive search (an easier test: the key's own list or graph node is reached). The
        smallest swept value that reaches the target is kept; if none does, the largest.
        """
        if self.target_recall is None or not self.tunable:
            self.tuning = None
            return None
        if queries is not None and len(queries):
            queries = np.ascontiguousarray(queries, dtype=np.float32)
            qids = np.full(len(queries), -2, dtype=np.int64)  # matches no id: nothing excluded
            source = "paraphrases"
        else:
            live = self.ids()
            if self.tombstones:
                live = live[~np.isin(live, np.fromiter(self.tombstones, dtype=np.int64))]
            n_q = min(self.tune_queries, len(live) - 1)
            if n_q < 1:
                self.tuning = None
                return None
            rng = np.random.default_rng(seed)
            qids = np.sort(rng.choice(live, size=n_q, replace=False))
            queries = np.stack([self.index.reconstruct(int(i)) for i in qids]).astype(np.float32)
            source = "held-out keys"
        want = _other_top1(qids, *self.exhaustive(queries, 2))
        if self.s.kind == "hnsw":
            values, param = list(EF_SWEEP), "ef_search"
        else:
            values, param = [], "nprobe"
            v = 1
            while v < self.nlist:
                values.append(v)
                v *= 2
            values.append(self.nlist)
        sweep = {}
        chosen = values[-1]
        for v in values:
            got = _other_top1(qids, *self._search_at(param, v, queries, 2))
            hit = (got[1] == want[1]) | (got[0] >= want[0] - 1e-5)
            sweep[v] = round(float(hit.mean()), 4)
            if sweep[v] >= self.target_recall:
                chosen = v
                break
        self.set_param(param, chosen)
        self.tuning = {"param": param, "value": int(chosen), "recall_at_1": sweep[chosen],
                       "target": self.target_recall, "queries": int(len(queries)),
                       "query_source": source, "at_vectors": int(self.n_live),
                       "sweep": {str(k): r for k, r in sweep.items()}}
        return self.tuning

    def apply_tuning(self, tuning: dict | None) -> bool:
        """Use a stored tuning (from a snapshot) if it was made for this memory's target."""
        if (tuning and self.tunable and self.target_recall is not None
                and tuning.get("target") == self.target_recall
                and tuning.get("param") == ("ef_search" if self.s.kind == "hnsw" else "nprobe")):
            self.set_param(tuning["param"], int(tuning["value"]))
            self.tuning = tuning
            return True
        self.tuning = None
        return False

    def set_param(self, param: str, value: int) -> None:
        """Search with `param` (nprobe | ef_search) at `value` from now on (what tune sets)."""
        setattr(self, param, int(value))
        self._search_params = None
        self._gpu_stale = True

    def _search_at(self, param: str, value: int, queries: np.ndarray, k: int):
        old = getattr(self, param)
        self.set_param(param, value)
        try:
            return self.index.search(queries, k, params=self._params())
        finally:
            self.set_param(param, old)

    def exhaustive(self, queries: np.ndarray, k: int):
        """Exact top-k over what the index holds: every IVF list, or the exact vectors beside
        HNSW's graph or the fast-scan codes (what `tune` measures recall against)."""
        f = self.faiss
        if not self.keeps_removed:
            return self._search_at("nprobe", self.nlist, queries, k)
        inner = f.downcast_index(self.index.index)
        storage = inner.refine_index if self.s.refine else inner.storage
        id_map = f.vector_to_array(self.index.id_map).astype(np.int64)
        params = None
        dead = self._dead_positions()
        if dead is not None:
            sel, _alive = self._excluding(dead)
            params = f.SearchParameters(sel=sel)
        scores, pos = storage.search(queries, k, params=params) if params else \
            storage.search(queries, k)
        return scores, np.where(pos >= 0, id_map[np.maximum(pos, 0)], -1)

    # -- GPU ---------------------------------------------------------------------------------
    def uses_gpu(self) -> bool:
        if self.device == "cpu" or self.s.kind == "hnsw" or self.s.refine:
            return False  # faiss has no GPU HNSW, fast scan or refinement
        from lte.availability import faiss_gpu_available

        return faiss_gpu_available()

    def _gpu_index(self):
        if not self.uses_gpu():
            return None
        if self._gpu is None or self._gpu_stale:
            f = self.faiss
            co = f.GpuMultipleClonerOptions()
            co.shard = True  # each GPU holds 1/n of the vectors: memory scales with GPUs
            co.useFloat16 = False
            self._gpu = f.index_cpu_to_all_gpus(self.index, co=co)
            if self.is_ivf:
                f.GpuParameterSpace().set_index_parameter(self._gpu, "nprobe",
                                                          min(self.nprobe, self.nlist))
            self._gpu_stale = False
        return self._gpu

    # -- persistence -------------------------------------------------------------------------
    def write(self, path: str) -> None:
        self.faiss.write_index(self.index, path)

    def read(self, path: str, trained_at: int, nlist: int, tuning: dict | None = None) -> None:
        """Load a snapshot (faiss's own format: no pickle). Raises on a damaged file."""
        f = self.faiss
        index = f.read_index(path)
        if index.d != self.dim:
            raise ValueError(f"snapshot has dimension {index.d}, memory has {self.dim}")
        if isinstance(index, f.IndexIVF):
            index.set_direct_map_type(f.DirectMap.Hashtable)
        self.index, self.trained_at, self.nlist = index, trained_at, nlist
        self.tombstones.clear()
        self._search_params = None
        self._gpu_stale = True
        self.apply_tuning(tuning)

    def memory_bytes(self) -> int:
        """Approximate RAM held by the index (vectors, codes, ids, graph)."""
        f = self.faiss
        writer = f.VectorIOWriter()
        f.write_index(self.index, writer)
        return int(writer.data.size())


def _other_top1(qids: np.ndarray, scores: np.ndarray, ids: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """(score, id) of each query's best hit that is not the query itself."""
    not_self = ids != qids[:, None]
    first = np.argmax(not_self, axis=1)
    rows = np.arange(len(qids))
    found = not_self[rows, first]
    return (np.where(found, scores[rows, first], -np.inf),
            np.where(found, ids[rows, first], -1))


def _offset_batches(batches: Iterable[tuple[np.ndarray, np.ndarray]], stride: int
                    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Re-cut batches so a fixed stride over all rows stays aligned across batch borders."""
    pos = 0
    for ids, vecs in batches:
        start = (-pos) % stride
        pos += len(ids)
        yield ids[start:], vecs[start:]
