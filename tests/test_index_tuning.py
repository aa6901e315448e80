"""Search-setting tuning (nprobe / efSearch for a recall target) and batched search, against
brute force on seeded clustered vectors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lte.config import EmbedderConfig, MemoryConfig
from lte.memory import EditMemory
from lte.memory.index import VectorIndex

pytestmark = pytest.mark.usefixtures("one_faiss_thread")


def clustered(rng, n: int, d: int, centers: int, spread: float) -> np.ndarray:
    c = rng.standard_normal((centers, d)).astype(np.float32)
    x = c[rng.integers(0, centers, n)] + spread * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def recall_at_1(index: VectorIndex, queries: np.ndarray, base: np.ndarray,
                ids: np.ndarray) -> float:
    """Share of queries whose top-1 has the exact top-1 score (ties count as found)."""
    exact = (queries @ base.T).max(axis=1)
    scores, got = index.search(queries, 1)
    assert (got[:, 0] >= 0).all() and np.isin(got[:, 0], ids).all()
    return float(np.mean(scores[:, 0] >= exact - 1e-5))


def near(rng, x: np.ndarray, n: int, noise: float) -> np.ndarray:
    """n unit queries near stored vectors (as paraphrases are near their edit's key)."""
    q = x[rng.integers(0, len(x), n)] + noise * rng.standard_normal((n, x.shape[1])).astype(np.float32)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


@pytest.mark.parametrize("queries", ["held-out keys", "paraphrases"])
@pytest.mark.parametrize("spec", ["IVF64,Flat", "HNSW16", "IVF64,PQ16x4fs,RFlat"])
def test_tuner_meets_its_target_on_held_out_queries_and_records_the_value(spec, queries):
    rng = np.random.default_rng(7)
    d, n, target = 32, 6000, 0.95
    x = clustered(rng, n, d, centers=60, spread=0.6)
    ids = np.arange(5, 5 + n, dtype=np.int64)
    index = VectorIndex.from_config(d, MemoryConfig(index=spec, target_recall=target,
                                                    tune_queries=400, device="cpu"))
    index.rebuild(lambda: [(ids[:2500], x[:2500]), (ids[2500:], x[2500:])], n)
    assert index.tuning is None  # the memory tunes after a rebuild, with its queries
    t = index.tune(near(rng, x, 400, 0.25) if queries == "paraphrases" else None)
    param = "nprobe" if spec.startswith("IVF") else "ef_search"
    assert t == index.tuning and t["query_source"] == queries
    assert t["param"] == param and t["target"] == target and t["queries"] == 400
    assert getattr(index, param) == t["value"]
    assert t["recall_at_1"] >= target
    swept = [int(v) for v in t["sweep"]]
    assert swept[-1] == t["value"]
    assert all(r < target for v, r in t["sweep"].items() if int(v) != t["value"]), t
    if spec.startswith("IVF"):
        assert t["value"] < index.nlist  # clustered data: far fewer lists than all of them
    # Queries the tuner never saw (perturbed stored vectors) reach the target too, within the
    # sampling error of 400 tuning queries.
    fresh = near(rng, x, 500, 0.25 if queries == "paraphrases" else 0.1)
    assert recall_at_1(index, fresh, x, ids) >= target - 0.04


def test_a_higher_target_never_chooses_a_smaller_setting():
    rng = np.random.default_rng(3)
    d, n = 32, 4000
    x = clustered(rng, n, d, centers=40, spread=0.7)
    ids = np.arange(n, dtype=np.int64)
    chosen = []
    for target in (0.8, 0.95, 1.0):
        index = VectorIndex.from_config(d, MemoryConfig(index="IVF64,Flat", target_recall=target,
                                                        device="cpu"))
        index.rebuild(lambda: [(ids, x)], n)
        chosen.append(index.tune()["value"])
    assert chosen == sorted(chosen)
    assert index.tuning["recall_at_1"] == 1.0 or chosen[-1] == index.nlist


def test_no_target_keeps_the_configured_setting():
    rng = np.random.default_rng(4)
    x = clustered(rng, 3000, 32, centers=30, spread=0.6)
    ids = np.arange(3000, dtype=np.int64)
    index = VectorIndex.from_config(32, MemoryConfig(index="IVF32,Flat", nprobe=5,
                                                     target_recall=None, device="cpu"))
    index.rebuild(lambda: [(ids, x)], 3000)
    assert index.tune() is None and index.tuning is None and index.nprobe == 5


def test_memory_build_records_the_tuning_in_meta_and_stats_and_keeps_it_on_reopen(tmp_path,
                                                                                   capsys):
    from lte.cli import main
    from lte.data.synth import write_world

    edits = write_world(tmp_path / "edits.json", 1500, seed=5)
    out = tmp_path / "mem"
    assert main(["memory", "build", "--edits", str(edits), "--out", str(out), "--index",
                 "IVF32,Flat", "embedder.name=hashing", "target_recall=0.97"]) == 0
    meta = json.loads((out / "index.json").read_text())["search_tuning"]
    assert meta["param"] == "nprobe" and meta["target"] == 0.97
    assert meta["query_source"] == "paraphrases"  # the world's edits carry rephrased questions
    assert meta["recall_at_1"] >= 0.97 and meta["at_vectors"] == 1500
    with EditMemory.open(out, readonly=True) as mem:
        assert mem.index.nprobe == meta["value"]
        assert mem.stats()["search_tuning"] == meta
    capsys.readouterr()
    assert main(["memory", "stats", str(out)]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed[printed.index("{"):])["search_tuning"] == meta


@pytest.mark.parametrize("spec", ["Flat", "IVF32,Flat", "HNSW16", "IVF32,PQ16x4fs,RFlat"])
def test_batched_search_returns_the_ids_of_one_at_a_time_search(tmp_path, spec):
    rng = np.random.default_rng(11)
    d, n = 32, 3000
    x = clustered(rng, n, d, centers=30, spread=0.6)
    cfg = MemoryConfig(embedder=EmbedderConfig(name="hashing", hashing_dim=d), index=spec,
                       device="cpu")
    q = x[rng.integers(0, n, 64)] + 0.2 * rng.standard_normal((64, d)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    index = VectorIndex.from_config(d, cfg)
    index.rebuild(lambda: [(np.arange(n, dtype=np.int64), x)], n)
    batch_s, batch_i = index.search(q, 5)
    for row in range(len(q)):
        one_s, one_i = index.search(q[row:row + 1], 5)
        np.testing.assert_allclose(one_s[0], batch_s[row], atol=1e-5)
        above = one_s[0] > one_s[0, -1] + 1e-5  # ids tied with the 5th may differ
        assert set(one_i[0][above]) == set(batch_i[row][above])
    # ... and through the memory (index + log lookup of the hits' texts)
    from lte.data.record import EditRecord

    mem = EditMemory.create(tmp_path / "m", cfg)
    ids = mem.add([EditRecord(str(i), f"s{i}", f"q{i}?", f"a{i}") for i in range(n)], vectors=x)
    batch = mem.search_vectors(q, k=3)
    for row in range(len(q)):
        one = mem.search_vectors(q[row:row + 1], k=3)[0]
        assert [h.id for h in one] == [h.id for h in batch[row]]
        assert [h.descriptor for h in one] == [f"q{ids.index(h.id)}? a{ids.index(h.id)}"
                                               for h in one]
    mem.close()
