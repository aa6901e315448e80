"""EditMemory, VectorIndex and EditStore: search against brute force, delete and supersede,
reopen and replay, damaged snapshots. The `hashing` embedder keeps these fast; the MiniLM path is
covered by tests/test_memory_cli.py."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from lte.config import EmbedderConfig, MemoryConfig
from lte.data.record import EditRecord
from lte.errors import UserError
from lte.memory import EditMemory, Hit, IndexRebuildWarning
from lte.memory.index import VectorIndex, auto_nlist

# PQ8x4: 16 codes per sub-quantizer, so a few hundred vectors train it.
INDEX_SPECS = ["Flat", "HNSW16", "IVF16,Flat", "IVF16,PQ8x4", "IVF16,PQ16x4fs,RFlat", "IVFauto,Flat"]


pytestmark = pytest.mark.usefixtures("one_faiss_thread")


def hashing_cfg(**kw) -> MemoryConfig:
    return MemoryConfig(embedder=EmbedderConfig(name="hashing", hashing_dim=64), **kw)


def records(n: int, start: int = 0, seed: int = 0) -> list[EditRecord]:
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(300)]
    out = []
    for i in range(start, start + n):
        q = " ".join(rng.choice(words, size=6)) + f" item{i}?"
        out.append(EditRecord(str(i), f"subject {i}", q, f"answer {i}"))
    return out


def unit(rng, n, d) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def assert_same_hits(after, before, atol=1e-5):
    """Same scores, and the same ids above the last score (ids tied with it may differ)."""
    for a, b in zip(after, before, strict=True):
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=atol)
        last = b[-1].score
        assert ({h.id for h in a if h.score > last + atol}
                == {h.id for h in b if h.score > last + atol}), (a, b)


def assert_matches_brute_force(scores, ids, queries, base_ids, base_vecs, k, atol=1e-4):
    """Returned scores equal the exact top-k scores, and each id carries its exact score; ids of
    equal scores may come in any order (ties tolerated)."""
    exact = queries @ base_vecs.T
    pos = {int(i): n for n, i in enumerate(base_ids)}
    for q in range(len(queries)):
        top = np.sort(exact[q])[::-1][:k]
        np.testing.assert_allclose(scores[q][:len(top)], top, atol=atol)
        for s, i in zip(scores[q][:len(top)], ids[q][:len(top)], strict=True):
            assert abs(exact[q, pos[int(i)]] - s) <= atol


@pytest.mark.parametrize("spec", INDEX_SPECS)
def test_index_top_k_equals_brute_force(spec):
    rng = np.random.default_rng(1)
    d, n = 32, 1500
    x, q = unit(rng, n, d), unit(rng, 40, d)
    ids = np.arange(1000, 1000 + n, dtype=np.int64)
    index = VectorIndex.from_config(d, MemoryConfig(index=spec, nprobe=4096, ef_search=512, target_recall=None, device="cpu"))
    index.rebuild(lambda: [(ids[:700], x[:700]), (ids[700:], x[700:])], n)
    if spec.startswith("IVF"):
        assert index.is_ivf and index.nlist >= 16
    base = x
    if "PQ" in spec and "RFlat" not in spec:  # PQ scores are inner products with the decoded
        # vectors; a refined index re-ranks its shortlist on the exact ones
        base = np.stack([index.index.reconstruct(int(i)) for i in ids])
    for k in (1, 3, 10):
        scores, got = index.search(q, k)
        assert_matches_brute_force(scores, got, q, ids, base, k)


@pytest.mark.parametrize("spec", INDEX_SPECS)
def test_index_remove_then_search_skips_removed(spec):
    rng = np.random.default_rng(2)
    d, n = 32, 1000
    x = unit(rng, n, d)
    ids = np.arange(n, dtype=np.int64)
    index = VectorIndex.from_config(d, MemoryConfig(index=spec, nprobe=4096, ef_search=512, target_recall=None, device="cpu"))
    index.rebuild(lambda: [(ids, x)], n)
    gone = ids[::3]
    index.remove(gone.tolist())
    assert index.n_live == n - len(gone)
    keep = np.setdiff1d(ids, gone)
    scores, got = index.search(x[gone[:20]], 5)
    assert not np.isin(got, gone).any()
    if "PQ" not in spec or "RFlat" in spec:
        assert_matches_brute_force(scores, got, x[gone[:20]], keep, x[keep], 5)


def test_auto_nlist_grows_and_keeps_enough_points_per_list():
    assert auto_nlist(100_000) == 1024 and auto_nlist(1_000_000) == 4096
    assert auto_nlist(1000) == 25  # capped: 39 training points per list
    assert all(auto_nlist(n) * 39 <= n for n in (10_000, 100_000, 1_000_000))


def test_bad_index_spec_is_a_user_error():
    with pytest.raises(UserError, match="IVF<nlist"):
        MemoryConfig(index="IVF,Flat")
    with pytest.raises(UserError, match="multiple of 7"):
        VectorIndex.from_config(64, MemoryConfig(index="IVF16,PQ7"))


@pytest.mark.parametrize("spec", INDEX_SPECS)
def test_memory_search_equals_brute_force_over_live_edits(tmp_path, spec):
    recs = records(800)
    mem = EditMemory.create(tmp_path / "m", hashing_cfg(index=spec, nprobe=4096, ef_search=512, target_recall=None,
                                                        add_chunk=300))
    ids = mem.add(recs)
    assert ids == sorted(ids) and len(set(ids)) == 800 and len(mem) == 800
    mem.delete(ids[:100])
    questions = [r.prompt for r in recs[90:130]]
    live = mem.store.live_ids()
    base = mem.store.vectors(live.tolist(), mem.dim)
    if "PQ" in spec and mem.index.is_ivf:
        base = np.stack([mem.index.index.reconstruct(int(i)) for i in live])
    hits = mem.search(questions, k=3)
    scores = np.array([[h.score for h in row] for row in hits])
    got = np.array([[h.id for h in row] for row in hits])
    assert_matches_brute_force(scores, got, mem.embedder.encode(questions), live, base, 3)
    assert not np.isin(got, ids[:100]).any()
    by_id = {i: r for i, r in zip(ids, recs, strict=True)}
    for row in hits:
        for h in row:
            assert isinstance(h, Hit)
            assert h.descriptor == by_id[h.id].descriptor and h.subject == by_id[h.id].subject
    mem.close()


def test_supersede_hides_the_older_edit_and_keeps_it_in_the_log(tmp_path):
    mem = EditMemory.create(tmp_path / "m", hashing_cfg())
    first = records(1)[0]
    (old,) = mem.add([first])
    newer = EditRecord("x", first.subject, first.prompt, "a newer answer")
    (new,) = mem.add([newer])
    assert len(mem) == 1
    (hit,) = mem.search([first.prompt], k=5)[0]
    assert hit.id == new and hit.descriptor == f"{first.prompt} a newer answer"
    stored = mem.get(old)
    assert stored.status == "superseded" and stored.superseded_by == new
    assert mem.stats()["superseded"] == 1 and mem.stats()["live"] == 1
    # Same question, other subject: both stay live.
    mem.add([EditRecord("y", "another subject", first.prompt, "other")])
    assert len(mem) == 2
    # Duplicates inside one batch: the last one wins.
    a, b = mem.add([EditRecord("p", "s", "q one?", "1"), EditRecord("p", "s", "q one?", "2")])
    assert mem.get(a).status == "superseded" and mem.get(b).live
    assert [h.id for h in mem.search(["q one?"], k=5)[0]].count(a) == 0
    mem.close()


def test_keep_all_keeps_both(tmp_path):
    mem = EditMemory.create(tmp_path / "m", hashing_cfg(conflict="keep_all"))
    r = records(1)[0]
    ids = mem.add([r, EditRecord("x", r.subject, r.prompt, "b")])
    assert len(mem) == 2
    assert {h.id for h in mem.search([r.prompt], k=2)[0]} == set(ids)
    mem.close()


def test_delete_get_and_threshold(tmp_path):
    mem = EditMemory.create(tmp_path / "m", hashing_cfg())
    recs = records(50)
    ids = mem.add(recs)
    assert mem.delete([ids[0], ids[0], 999_999]) == 1
    assert mem.delete([ids[0]]) == 0
    assert mem.get(ids[0]).status == "deleted" and mem.get(999_999) is None
    assert all(h.id != ids[0] for h in mem.search([recs[0].prompt], k=50)[0])
    assert len(mem) == 49
    assert mem.get(ids[1]).record["target_new"] == "answer 1"
    # Relevance gate: an unrelated question gets nothing above a high threshold.
    assert mem.search(["zzz qqq unrelated"], k=3, threshold=0.9) == [[]]
    mem.set_threshold(0.9)
    assert [h.id for h in mem.search([recs[5].prompt])[0]] == [ids[5]]
    assert mem.search(["zzz qqq unrelated"]) == [[]]
    mem.close()
    assert EditMemory.open(tmp_path / "m").threshold == 0.9


def test_bad_records_are_user_errors_and_store_nothing(tmp_path):
    mem = EditMemory.create(tmp_path / "m", hashing_cfg())
    bad = records(3)
    bad[2] = EditRecord("2", "s", "  ", "t")
    with pytest.raises(UserError, match="record 2.*prompt"):
        mem.add(bad)
    assert len(mem) == 0 and mem.store.last_seq() == 0
    with pytest.raises(TypeError):
        mem.search("one string")
    mem.close()


@pytest.mark.parametrize("spec", ["Flat", "HNSW16", "IVF16,Flat", "IVF16,PQ16x4fs,RFlat"])
def test_reopen_replays_the_log_after_the_snapshot(tmp_path, spec):
    cfg = hashing_cfg(index=spec, nprobe=4096, ef_search=512, target_recall=None)
    recs = records(1200)
    mem = EditMemory.create(tmp_path / "m", cfg)
    ids = mem.add(recs[:700])
    mem.delete(ids[:50])
    mem.snapshot()
    snap_seq = json.loads((tmp_path / "m" / "index.json").read_text())["last_seq"]
    ids += mem.add(recs[700:])
    mem.delete(ids[650:750])  # some from before the snapshot, some after
    questions = [r.prompt for r in recs[::37]]
    before = mem.search(questions, k=3)
    mem.store.close()  # no snapshot on the way out: as if the process died
    with warnings.catch_warnings():
        warnings.simplefilter("error", IndexRebuildWarning)
        again = EditMemory.open(tmp_path / "m")
    assert again.store.last_seq() > snap_seq
    assert len(again) == 1200 - 50 - 100
    assert_same_hits(again.search(questions, k=3), before)
    again.close()


@pytest.mark.parametrize("damage", ["corrupt", "missing", "wrong_meta", "truncated"])
def test_damaged_snapshot_is_rebuilt_from_the_log_with_a_warning(tmp_path, damage):
    folder = tmp_path / "m"
    mem = EditMemory.create(folder, hashing_cfg(index="IVF16,Flat", nprobe=16))
    recs = records(900)
    mem.add(recs)
    questions = [r.prompt for r in recs[:30]]
    before = mem.search(questions, k=2)
    mem.close()
    index = folder / "index.faiss"
    if damage == "corrupt":
        data = bytearray(index.read_bytes())
        data[len(data) // 2: len(data) // 2 + 64] = b"\xff" * 64
        index.write_bytes(bytes(data))
    elif damage == "missing":
        index.unlink()
    elif damage == "truncated":
        index.write_bytes(index.read_bytes()[:100])
    else:
        meta = json.loads((folder / "index.json").read_text())
        meta["dim"] = 7
        (folder / "index.json").write_text(json.dumps(meta))
    with pytest.warns(IndexRebuildWarning, match="rebuilding the index from the edit log"):
        again = EditMemory.open(folder)
    assert_same_hits(again.search(questions, k=2), before)
    again.close()
    with warnings.catch_warnings():  # the rebuilt snapshot is good again
        warnings.simplefilter("error", IndexRebuildWarning)
        EditMemory.open(folder).close()


def test_ivf_trains_when_big_enough_and_retrains_past_the_factor(tmp_path):
    mem = EditMemory.create(tmp_path / "m", hashing_cfg(index="IVFauto,Flat", retrain_factor=2.0,
                                                        add_chunk=500))
    mem.add(records(500))
    assert not mem.index.is_ivf  # too few to train: exact stand-in
    mem.add(records(500, start=500))
    assert mem.index.is_ivf and mem.index.trained_at == 1000
    first_nlist = mem.index.nlist
    mem.add(records(1500, start=1000))
    assert mem.index.trained_at == 2000 and mem.index.nlist >= first_nlist
    assert mem.stats()["ivf_lists"] == mem.index.nlist
    mem.close()
    again = EditMemory.open(tmp_path / "m")
    assert again.index.is_ivf and again.index.trained_at == 2000 and len(again) == 2500
    again.close()


@pytest.mark.parametrize("spec,n", [("HNSW16", 300), ("IVF16,PQ16x4fs,RFlat", 1000)])
def test_tombstones_are_cleared_by_a_rebuild(tmp_path, spec, n):
    """HNSW graphs and fast-scan lists keep removed vectors until the structure is rebuilt."""
    mem = EditMemory.create(tmp_path / "m", hashing_cfg(index=spec, target_recall=None))
    ids = mem.add(records(n))
    assert mem.index.keeps_removed
    first = n // 8
    mem.delete(ids[:first])
    assert len(mem.index.tombstones) == first and mem.index.ntotal == n
    assert not set(ids[:first]) & {h.id for hits in mem.search(
        [r.prompt for r in records(first)], k=3) for h in hits}
    mem.delete(ids[first:2 * first])  # past 20% of the structure: rebuilt without them
    assert not mem.index.tombstones and mem.index.ntotal == n - 2 * first
    mem.close()


def test_create_open_errors(tmp_path):
    EditMemory.create(tmp_path / "m", hashing_cfg()).close()
    with pytest.raises(UserError, match="already holds"):
        EditMemory.create(tmp_path / "m", hashing_cfg())
    with pytest.raises(UserError, match="no edit memory"):
        EditMemory.open(tmp_path / "none")
    with pytest.raises(UserError, match="cannot change"):
        EditMemory.open(tmp_path / "m", index="HNSW32")
    mem = EditMemory.open(tmp_path / "m", top_k=4)
    assert mem.top_k == 4
    stats = mem.stats()
    assert stats["embedder"] == "hashing" and stats["index"] == "Flat" and stats["live"] == 0
    mem.close()
    folder_files = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"edits.sqlite", "index.faiss", "index.json", "config.yaml"} <= folder_files


def test_gpu_path_is_off_without_cuda(tmp_path):
    from lte.availability import faiss_gpu_available

    index = VectorIndex.from_config(16, MemoryConfig(index="Flat"))
    assert index.uses_gpu() == faiss_gpu_available()
    assert not VectorIndex.from_config(16, MemoryConfig(index="HNSW16")).uses_gpu()


@pytest.mark.gpu
def test_gpu_sharded_search_equals_cpu():
    from lte.availability import faiss_gpu_available

    if not faiss_gpu_available():
        pytest.skip("needs faiss-gpu and a CUDA device (faiss-cpu is installed or no GPU)")
    rng = np.random.default_rng(3)
    x, q = unit(rng, 5000, 64), unit(rng, 50, 64)
    ids = np.arange(5000, dtype=np.int64) * 7
    for spec in ("Flat", "IVF32,Flat"):
        gpu = VectorIndex.from_config(64, MemoryConfig(index=spec, nprobe=32, device="auto"))
        cpu = VectorIndex.from_config(64, MemoryConfig(index=spec, nprobe=32, device="cpu"))
        for index in (gpu, cpu):
            index.rebuild(lambda: [(ids, x)], 5000)
        assert gpu.uses_gpu()
        gs, gi = gpu.search(q, 5)
        cs, ci = cpu.search(q, 5)
        np.testing.assert_allclose(gs, cs, atol=1e-4)
        assert_matches_brute_force(gs, gi, q, ids, x, 5)
