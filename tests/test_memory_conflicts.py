"""Conflicting edits (`memory.conflict`): which edit supersedes which, what the log keeps, and
that deleting the newer edit brings the older one back, in the index too (live, after replay in
a follower, after reopening). Key vectors are given explicitly, so the cosines are chosen by
the test; MiniLM's own cosines are covered in tests/test_memory_cli.py."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from lte.data.record import EditRecord
from lte.memory import EditMemory
from lte.memory.conflicts import choose_conflict_threshold, normalise
from tests.test_memory import hashing_cfg

DIM = 64


def vec(*weights: float) -> np.ndarray:
    """A unit vector of DIM dimensions from its first few coordinates."""
    v = np.zeros(DIM, dtype=np.float32)
    v[:len(weights)] = weights
    return v / np.linalg.norm(v)


def edit(subject: str, question: str, answer: str) -> EditRecord:
    return EditRecord(f"{subject}/{question}/{answer}", subject, question, answer)


def add(mem: EditMemory, record: EditRecord, v: np.ndarray) -> int:
    (new_id,) = mem.add([record], vectors=v[None, :])
    return new_id


def live_hits(mem: EditMemory, v: np.ndarray, k: int = 10) -> list[int]:
    return [h.id for h in mem.search_vectors(v[None, :], k=k, threshold=None)[0]]


def test_normalise_folds_case_and_whitespace():
    assert normalise("  Oslo ") == normalise("oslo") == normalise("OSLO") == "oslo"
    assert normalise("Where is\tthe  Louvre?") == "where is the louvre?"
    assert normalise("Straße") == normalise("STRASSE")


def test_conflict_threshold_bounds_the_share_of_other_relations_merged():
    pos = np.array([0.99, 0.97, 0.95, 0.9, 0.6])
    neg = np.array([0.5, 0.7, 0.8, 0.85, 0.96])
    t, recall, merged = choose_conflict_threshold(pos, neg, max_merged=0.0)
    assert 0.96 < t < 0.97 and (recall, merged) == (0.4, 0.0)
    t, recall, merged = choose_conflict_threshold(pos, neg, max_merged=0.2)  # one of five may
    assert 0.85 < t <= 0.9 and (recall, merged) == (0.8, 0.2)


def test_exact_rule_folds_case_and_whitespace_of_subject_and_question(tmp_path):
    """Issue 18: `"Oslo "` vs `"oslo"` used to leave three contradictory edits live."""
    mem = EditMemory.create(tmp_path / "m", hashing_cfg(conflict="exact"))
    a = add(mem, edit("Oslo", "What is the capital of Oslo's country?", "Norway"), vec(1, 0))
    b = add(mem, edit("Oslo ", "what is the capital of  Oslo's country? ", "Sweden"), vec(0, 1))
    c = add(mem, edit("oslo", "WHAT IS THE CAPITAL OF OSLO'S COUNTRY?", "Denmark"), vec(1, 1))
    assert len(mem) == 1 and live_hits(mem, vec(1, 0)) == [c]
    assert mem.get(a).superseded_by == b and mem.get(b).superseded_by == c
    # exact does not look at the vectors: another wording of the same fact stays live.
    d = add(mem, edit("Oslo", "Oslo's country has which capital?", "Finland"), vec(1, 1))
    assert mem.get(c).live and mem.get(d).live
    mem.close()


def test_embedding_rule_supersedes_near_duplicate_keys_of_one_subject_only(tmp_path):
    mem = EditMemory.create(tmp_path / "m", hashing_cfg(conflict_threshold=0.9))
    born = add(mem, edit("Ada", "Where was Ada born?", "Paris"), vec(1, 0, 0))
    # cos(vec(1, .2), vec(1)) = 0.98: the same fact asked in other words -> the newer wins.
    again = add(mem, edit("ada", "Ada's birthplace is which city?", "Rome"), vec(1, 0.2, 0))
    # cos = 0.71 < 0.9: another relation of the same subject, both stay live.
    studied = add(mem, edit("Ada", "What did Ada study?", "maths"), vec(1, 1, 0))
    # The same key under another subject: not a conflict.
    other = add(mem, edit("Bob", "Where was Bob born?", "Oslo"), vec(1, 0.2, 0))
    assert mem.get(born).status == "superseded" and mem.get(born).superseded_by == again
    assert mem.get(again).supersedes == [born]
    assert all(mem.get(i).live for i in (again, studied, other))
    assert set(live_hits(mem, vec(1, 0, 0))) == {again, studied, other}
    stats = mem.stats()
    assert stats["conflict"] == "embedding" and stats["conflict_threshold"] == 0.9
    assert stats["recent_supersessions"] == [{"id": born, "superseded_by": again}]
    # Inside one batch the later of two near-duplicates wins too.
    x, y = mem.add([edit("Cy", "Cy's job?", "cook"), edit("Cy", "What is Cy's job?", "pilot")],
                   vectors=np.stack([vec(0, 0, 1), vec(0, 0.1, 1)]))
    assert mem.get(x).superseded_by == y and y in live_hits(mem, vec(0, 0, 1))
    assert x not in live_hits(mem, vec(0, 0, 1))
    mem.close()


def test_no_subject_is_compared_by_the_exact_question_only(tmp_path):
    mem = EditMemory.create(tmp_path / "m", hashing_cfg())
    a = add(mem, edit("", "Is it raining?", "yes"), vec(1))
    b = add(mem, edit("", "Is it raining now?", "no"), vec(1))  # cos 1, but no subject
    c = add(mem, edit("", "is it  raining?", "maybe"), vec(0, 1))
    assert mem.get(a).superseded_by == c and mem.get(b).live and mem.get(c).live
    mem.close()


def test_keep_all_keeps_near_duplicates(tmp_path):
    mem = EditMemory.create(tmp_path / "m", hashing_cfg(conflict="keep_all"))
    ids = [add(mem, edit("Ada", "Where was Ada born?", a), vec(1)) for a in ("x", "y")]
    assert len(mem) == 2 and set(live_hits(mem, vec(1))) == set(ids)
    mem.close()


@pytest.mark.parametrize("spec", ["Flat", "HNSW16", "IVF4,Flat", "IVF4,PQ8x4fs,RFlat"])
def test_deleting_the_newer_edit_brings_the_older_back(tmp_path, spec):
    folder = tmp_path / "m"
    mem = EditMemory.create(folder, hashing_cfg(index=spec))
    rng = np.random.default_rng(0)
    filler = rng.standard_normal((200, DIM)).astype(np.float32)  # enough to train IVF4
    filler /= np.linalg.norm(filler, axis=1, keepdims=True)
    mem.add([edit(f"s{i}", f"q{i}?", "a") for i in range(200)], vectors=filler)
    old = add(mem, edit("Ada", "Where was Ada born?", "Paris"), vec(1, 0))
    new = add(mem, edit("Ada", "Where was Ada born?", "Rome"), vec(1, 0))
    assert live_hits(mem, vec(1, 0), k=2)[0] == new and old not in live_hits(mem, vec(1, 0))
    follower = EditMemory.open(folder, readonly=True)  # follows the writer by replaying its log

    assert mem.delete([new]) == 1
    assert mem.get(old).live and mem.get(old).superseded_by is None
    assert mem.get(new).status == "deleted" and len(mem) == 201
    for m in (mem, follower):
        hits = live_hits(m, vec(1, 0), k=3)
        assert hits[0] == old and hits.count(old) == 1 and new not in hits
    # A newer edit of the same fact supersedes the restored one again.
    newest = add(mem, edit("ADA", "where was ada born?", "Oslo"), vec(1, 0))
    assert mem.get(old).superseded_by == newest
    assert live_hits(follower, vec(1, 0), k=3).count(old) == 0
    follower.close()
    mem.close()
    with EditMemory.open(folder) as again:  # snapshot + replay agree with the log
        assert len(again) == 201 and live_hits(again, vec(1, 0))[0] == newest
        assert again.delete([newest]) == 1 and live_hits(again, vec(1, 0))[0] == old


def test_a_restore_replays_onto_a_snapshot_that_still_holds_the_edit(tmp_path):
    """The snapshot has `old` live; the log after it supersedes and restores it: the replayed
    index holds it once."""
    folder = tmp_path / "m"
    mem = EditMemory.create(folder, hashing_cfg())
    old = add(mem, edit("Ada", "Where was Ada born?", "Paris"), vec(1))
    mem.snapshot()
    follower = EditMemory.open(folder, readonly=True)  # loads that snapshot
    new = add(mem, edit("Ada", "Where was Ada born?", "Rome"), vec(1))
    mem.delete([new])
    assert live_hits(follower, vec(1), k=5) == [old]
    follower.close()
    mem.close()


def test_a_log_from_before_conflict_detection_is_migrated(tmp_path):
    """Older memories: no normalised columns, `conflict: supersede` (today's `exact`)."""
    folder = tmp_path / "m"
    mem = EditMemory.create(folder, hashing_cfg(conflict="exact"))
    old = add(mem, edit("Oslo", "Capital of Oslo's country?", "Norway"), vec(1))
    config = mem.store.get_meta("config")
    mem.close()
    db = sqlite3.connect(folder / "edits.sqlite")
    db.execute("DROP INDEX edits_live_subject")
    db.execute("ALTER TABLE edits DROP COLUMN subject_norm")
    db.execute("ALTER TABLE edits DROP COLUMN question_norm")
    db.execute("UPDATE meta SET value = ? WHERE key = 'config'",
               (__import__("json").dumps({**config, "conflict": "supersede"}),))
    db.commit()
    db.close()
    with EditMemory.open(folder) as mem:
        assert mem.cfg.conflict == "exact"
        new = add(mem, edit("oslo ", "capital of oslo's country?", "Sweden"), vec(0, 1))
        assert mem.get(old).superseded_by == new and len(mem) == 1
