"""Faults around a memory folder: a lost or damaged WAL, two writers, a reader next to a writer,
a failing add, backups, snapshot cadence. The crash images are copies of a folder taken while its
writer still has the log open (what a kill -9 leaves on disk), so these run in one process."""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
import warnings
from pathlib import Path

import numpy as np
import pytest

from lte.cli import main
from lte.config import EmbedderConfig, MemoryConfig
from lte.data.record import EditRecord
from lte.errors import UserError
from lte.memory import EditMemory, IndexRebuildWarning
from lte.memory.memory import LostEditsError


def hashing_cfg(**kw) -> MemoryConfig:
    return MemoryConfig(embedder=EmbedderConfig(name="hashing", hashing_dim=64), **kw)


def records(n: int, start: int = 0) -> list[EditRecord]:
    return [EditRecord(str(i), f"subject {i}", f"what is item {i} of set {i % 17}?", f"answer {i}")
            for i in range(start, start + n)]


def crash_image(folder: Path, dest: Path) -> Path:
    """The files of `folder` as a kill -9 of its (still running) writer would leave them."""
    dest.mkdir()
    for name in ("edits.sqlite", "edits.sqlite-wal", "edits.acked", "index.faiss", "index.json",
                 "config.yaml"):
        if (folder / name).exists():
            shutil.copyfile(folder / name, dest / name)
    return dest


@pytest.fixture
def live_writer(tmp_path):
    """A memory with 300 acknowledged edits that live only in the WAL (snapshot at creation)."""
    mem = EditMemory.create(tmp_path / "m", hashing_cfg(add_chunk=50))
    ids = mem.add(records(300))
    assert (tmp_path / "m" / "edits.sqlite-wal").stat().st_size > 0
    yield mem, ids
    mem.close()


@pytest.mark.parametrize("damage", ["deleted", "truncated", "bitflip"])
def test_lost_or_damaged_wal_is_refused_naming_the_file_and_the_loss(tmp_path, live_writer,
                                                                     damage):
    mem, ids = live_writer
    image = crash_image(mem.folder, tmp_path / "image")
    wal = image / "edits.sqlite-wal"
    if damage == "deleted":
        wal.unlink()
    elif damage == "truncated":
        wal.write_bytes(wal.read_bytes()[: wal.stat().st_size // 2])
    else:
        data = bytearray(wal.read_bytes())
        data[len(data) // 3] ^= 0x40
        wal.write_bytes(bytes(data))
    with pytest.raises(LostEditsError) as err:
        EditMemory.open(image)
    text = str(err.value)
    assert str(image / "edits.sqlite") in text and "edits.sqlite-wal was lost or damaged" in text
    assert "logged changes missing" in text and "--accept-loss" in text
    # The CLI says the same in one line, exit 2, for readers too.
    assert main(["memory", "stats", str(image)]) == 2

    # Accepting the loss gives a consistent, smaller memory; nothing is invented.
    EditMemory.accept_loss(image)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IndexRebuildWarning)  # rebuilt from the log: expected
        again = EditMemory.open(image)
    with again:
        assert len(again) < len(ids)
        present = again.store.live_ids().tolist()
        assert present == ids[: len(present)]  # a prefix: whole commits survive, in order


def test_undamaged_crash_image_opens_with_every_acknowledged_edit(tmp_path, live_writer):
    mem, ids = live_writer
    image = crash_image(mem.folder, tmp_path / "image")
    with EditMemory.open(image) as again:
        assert again.store.live_ids().tolist() == ids
        hits = again.search([records(300)[123].prompt], k=1)
        assert hits[0][0].id == ids[123]


def test_snapshot_ahead_of_the_log_is_refused_even_without_the_mark(tmp_path, live_writer):
    mem, _ = live_writer
    mem.snapshot()  # checkpoints: the 300 edits are now in edits.sqlite itself
    image = crash_image(mem.folder, tmp_path / "image")
    (image / "edits.acked").unlink()
    # An older edits.sqlite (say, a copy restored by hand) under the newer snapshot.
    old = tmp_path / "old"
    EditMemory.create(old, hashing_cfg()).close()
    shutil.copyfile(old / "edits.sqlite", image / "edits.sqlite")
    with pytest.raises(LostEditsError, match="per index.json"):
        EditMemory.open(image)


def test_one_writer_per_folder_and_readers_follow_its_commits(tmp_path, capsys):
    import os

    folder = tmp_path / "m"
    writer = EditMemory.create(folder, hashing_cfg())
    ids = writer.add(records(20))
    with pytest.raises(UserError, match=f"another process \\(pid {os.getpid()}\\) is writing"):
        EditMemory.open(folder)
    # `lte memory delete` on a folder that a server is writing: refused, not diverging.
    assert main(["memory", "delete", str(folder), str(ids[0])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"pid {os.getpid()}" in err[0]

    reader = EditMemory.open(folder, readonly=True)
    question = records(40)[30].prompt
    assert reader.search([question], k=1, threshold=None)[0][0].id in ids  # not there yet
    new = writer.add(records(20, start=20))
    assert reader.search([question], k=1)[0][0].id == new[10]  # saw the writer's new edits
    writer.delete([new[10]])
    assert all(h.id != new[10] for h in reader.search([question], k=3)[0])  # and its delete
    assert reader.get(new[10]).status == "deleted"
    assert reader.stats()["live"] == 39
    with pytest.raises(UserError, match="read-only"):
        reader.delete([ids[1]])
    reader.close()
    writer.close()
    EditMemory.open(folder).close()  # the lock went with the writer


def test_a_failing_add_keeps_whole_chunks_and_says_which(tmp_path, monkeypatch):
    mem = EditMemory.create(tmp_path / "m", hashing_cfg(add_chunk=100))
    real_add, calls = mem.store.add, []

    def add_then_fail(new, **rule):
        calls.append(len(new))
        if len(calls) == 3:  # the log cannot grow any more: SQLite fails with SQLITE_FULL
            pages = mem.store.db.execute("PRAGMA page_count").fetchone()[0]
            mem.store.db.execute(f"PRAGMA max_page_count = {pages}")
        return real_add(new, **rule)

    monkeypatch.setattr(mem.store, "add", add_then_fail)
    with pytest.raises(UserError) as err:
        mem.add(records(450))
    assert "disk is full" in str(err.value)
    assert "chunks 1-2 of 5 were stored: the first 200 edits, ids 1-200" in str(err.value)
    monkeypatch.undo()
    assert len(mem) == 200 and mem.index.ntotal == 200
    mem.close()
    with EditMemory.open(tmp_path / "m") as again:
        assert len(again) == 200


def test_a_full_disk_rolls_back_the_transaction_and_says_so(tmp_path, monkeypatch):
    """SQLite rolls back by itself on SQLITE_FULL: a second ROLLBACK must not hide the error."""
    mem = EditMemory.create(tmp_path / "m", hashing_cfg())
    mem.add(records(5))
    mem.store.db.execute("PRAGMA max_page_count = 1")  # the log cannot grow: SQLITE_FULL
    with pytest.raises(UserError, match="disk is full") as err:
        mem.add(records(500, start=5))
    assert "no transaction is active" not in str(err.value)
    assert len(mem) == 5 and mem.store.count_live() == 5
    mem.close()


def test_backup_of_a_folder_being_written_holds_every_acknowledged_edit(tmp_path, live_writer,
                                                                     capsys):
    mem, ids = live_writer
    assert main(["memory", "backup", str(mem.folder), str(tmp_path / "copy")]) == 0
    assert "300 edits" in capsys.readouterr().out
    with EditMemory.open(tmp_path / "copy") as copy:
        assert copy.store.live_ids().tolist() == ids
    # What copying edits.sqlite alone would have kept: none of them (they are in the WAL).
    (tmp_path / "naive").mkdir()
    shutil.copyfile(mem.folder / "edits.sqlite", tmp_path / "naive" / "edits.sqlite")
    naive = sqlite3.connect(tmp_path / "naive" / "edits.sqlite")
    assert naive.execute("SELECT COUNT(*) FROM edits").fetchone()[0] == 0
    naive.close()
    assert main(["memory", "backup", str(mem.folder), str(tmp_path / "copy")]) == 2  # not empty


def test_snapshots_follow_the_change_count_so_a_restart_replays_little(tmp_path):
    mem = EditMemory.create(tmp_path / "m", hashing_cfg(add_chunk=50, snapshot_every=100))
    mem.add(records(330))
    meta = json.loads((tmp_path / "m" / "index.json").read_text())
    assert meta["last_seq"] >= 300 and meta["vectors"] == meta["last_seq"]
    assert (tmp_path / "m" / "edits.sqlite-wal").stat().st_size < 64 * 1024  # checkpointed
    image = crash_image(mem.folder, tmp_path / "image")
    mem.close()
    with EditMemory.open(image) as again:
        assert len(again) == 330


def test_thresholds_must_be_finite_and_k_is_bounded_by_the_memory(tmp_path):
    mem = EditMemory.create(tmp_path / "m", hashing_cfg())
    mem.add(records(10))
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(UserError, match="finite"):
            mem.search(["q"], threshold=bad)
        with pytest.raises(UserError, match="finite"):
            mem.set_threshold(bad)
    with pytest.raises(UserError, match="finite"):
        EditMemory.create(tmp_path / "n", hashing_cfg(threshold=math.nan))
    assert not (tmp_path / "n").exists()
    hits = mem.search([records(10)[3].prompt], k=2**31, threshold=None)
    assert len(hits[0]) == 10
    with pytest.raises(UserError, match="k=-1"):
        mem.search_vectors(np.zeros((1, 64), np.float32), k=-1)
    mem.close()


@pytest.mark.slow  # imports Ray Serve (no cluster is started)
def test_serve_shard_snapshots_on_its_timer_and_on_shutdown(tmp_path):
    """The shard class itself (no Ray): a shard idle for IDLE_SNAPSHOT_S snapshots, and so does
    __del__ (what Serve calls on a graceful shutdown)."""
    import time

    from lte.serve.deployments import EditMemoryShard

    folder = tmp_path / "shard-000"
    shard = EditMemoryShard.func_or_class(0, 1, str(folder), hashing_cfg(), 4, 0.01, 1)

    def snapshot_seq() -> int:
        return json.loads((folder / "index.json").read_text())["last_seq"]

    shard._pool.submit(shard._memory.add, records(3)).result()
    deadline = time.monotonic() + 30
    while snapshot_seq() != 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert snapshot_seq() == 3  # the idle timer wrote it (snapshot_every_s is 300)
    shard._pool.submit(shard._memory.delete, [1]).result()
    shard.__del__()  # what Serve calls on a graceful shutdown
    assert snapshot_seq() == 4
    with EditMemory.open(folder) as again:  # the shard let go of the writer lock
        assert again.store.last_seq() == 4
