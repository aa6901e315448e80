"""EditStore: the edit log in SQLite (WAL), the memory's source of truth.

Every change is a row in `log` with a sequence number and a timestamp; `edits` holds one row per
edit with its current status. The key vector is stored with the edit, so the FAISS index can be
replayed or rebuilt without re-running the embedder. A change is committed (and synced, with
`synchronous=FULL`) before the call that made it returns, so an acknowledged edit survives a kill.

Two guards around the log (lte/memory/guards.py): the writing process holds an advisory lock on
the folder, and after every commit it records the log position it acknowledged in `edits.acked`,
outside the WAL, so a lost or damaged `edits.sqlite-wal` is detected on open instead of silently
dropping the edits it held. SQLite errors users can cause (a full disk, a damaged or read-only
file) come out as one-line `UserError`s naming the file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lte.errors import UserError
from lte.memory.conflicts import EXACT, KEEP_ALL, normalise, supersedes
from lte.memory.guards import AckMark, WriterLock

LIVE, SUPERSEDED, DELETED = "live", "superseded", "deleted"
# Log operations. `add` and `restore` (an edit superseded by one deleted since) make a vector
# live; `delete` and `supersede` take it out of the index; `update` changes text only.
OP_ADD, OP_DELETE, OP_SUPERSEDE, OP_UPDATE = "add", "delete", "supersede", "update"
OP_RESTORE = "restore"
ADDING_OPS = (OP_ADD, OP_RESTORE)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS edits (
    id INTEGER PRIMARY KEY,
    case_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    question TEXT NOT NULL,
    target_new TEXT NOT NULL,
    key_text TEXT NOT NULL,
    descriptor TEXT NOT NULL,
    record_json TEXT NOT NULL,
    vector BLOB NOT NULL,
    status TEXT NOT NULL,
    superseded_by INTEGER,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    subject_norm TEXT,
    question_norm TEXT
);
CREATE TABLE IF NOT EXISTS log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    op TEXT NOT NULL,
    edit_id INTEGER NOT NULL,
    ts REAL NOT NULL
);
"""
# After _migrate: a log from before the normalised columns gets them first.
_INDEXES = """
DROP INDEX IF EXISTS edits_live_key;
CREATE INDEX IF NOT EXISTS edits_live_subject ON edits (subject_norm) WHERE status = 'live';
CREATE INDEX IF NOT EXISTS edits_superseded_by ON edits (superseded_by)
    WHERE superseded_by IS NOT NULL;
"""


@dataclass
class StoredEdit:
    """One edit as the log holds it."""

    id: int
    case_id: str
    subject: str
    question: str
    target_new: str
    key_text: str
    descriptor: str
    status: str
    superseded_by: int | None
    created: float
    updated: float
    record: dict
    supersedes: list[int] = field(default_factory=list)  # the edits this one superseded

    @property
    def live(self) -> bool:
        return self.status == LIVE


@dataclass
class NewEdit:
    """What `EditStore.add` needs for one edit; the vector is its retrieval key's embedding."""

    case_id: str
    subject: str
    question: str
    target_new: str
    key_text: str
    descriptor: str
    record: dict
    vector: np.ndarray


_COLS = ("id, case_id, subject, question, target_new, key_text, descriptor, status, "
         "superseded_by, created, updated, record_json")


def _row_to_edit(row) -> StoredEdit:
    (id_, case_id, subject, question, target_new, key_text, descriptor, status, sup, created,
     updated, record_json) = row
    return StoredEdit(id_, case_id, subject, question, target_new, key_text, descriptor, status,
                      sup, created, updated, json.loads(record_json))


class EditStore:
    """The SQLite edit log of one memory folder.

    A writer (the default) takes the folder's writer lock and records acknowledged positions; a
    reader (`readonly=True`) does neither and can follow another process's writes
    (`changed_since_last_look`).
    """

    def __init__(self, path: str | Path, *, readonly: bool = False, lock_wait_s: float = 0.0):
        self.path = Path(path)
        self.readonly = readonly
        self.lock = None if readonly else WriterLock(self.path.parent, wait_s=lock_wait_s)
        self.ack = AckMark(self.path.parent)
        try:
            if readonly:
                self.db = self._connect_readonly()
            else:
                # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
                self.db = sqlite3.connect(str(self.path), isolation_level=None,
                                          check_same_thread=False)
                with self._errors("open"):
                    self.db.execute("PRAGMA journal_mode=WAL")
                    self.db.execute("PRAGMA synchronous=FULL")
                    self.db.executescript(_SCHEMA)
                    self._migrate()
                    self.db.executescript(_INDEXES)
        except BaseException:
            if self.lock is not None:
                self.lock.release()
            raise
        self._data_version = self._version()

    def _connect_readonly(self) -> sqlite3.Connection:
        # A WAL reader needs to create edits.sqlite-shm; in a folder it cannot write to (a
        # read-only copy) the log is opened immutable, which needs no -shm and sees no WAL.
        for query in ("mode=ro", "immutable=1"):
            db = sqlite3.connect(f"file:{self.path}?{query}", uri=True, isolation_level=None,
                                 check_same_thread=False)
            try:
                with self._errors("read"):
                    db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
                return db
            except UserError:
                db.close()
                if query == "immutable=1" or os.access(self.path.parent, os.W_OK):
                    raise
        raise AssertionError("unreachable")

    def _migrate(self) -> None:
        """Give a log from before conflict detection its normalised subject and question."""
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(edits)")}
        if "subject_norm" in columns:
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute("ALTER TABLE edits ADD COLUMN subject_norm TEXT")
            self.db.execute("ALTER TABLE edits ADD COLUMN question_norm TEXT")
            rows = self.db.execute("SELECT id, subject, question FROM edits").fetchall()
            self.db.executemany("UPDATE edits SET subject_norm = ?, question_norm = ? WHERE id = ?",
                                [(normalise(s), normalise(q), i) for i, s, q in rows])
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    @contextmanager
    def _errors(self, doing: str):
        """SQLite failures a user can cause, as one line naming the file."""
        try:
            yield
        except sqlite3.DatabaseError as e:
            raise UserError(_explain(e, doing, self.path), file=str(self.path)) from e

    def _begin(self):
        if self.readonly:
            raise UserError("opened read-only; open it for writing to change it",
                            file=str(self.path))
        cur = self.db.cursor()
        with self._errors("write"):
            cur.execute("BEGIN IMMEDIATE")
        return cur

    def _rollback(self, error: BaseException, doing: str):
        # SQLite has already rolled back after some errors (a full disk among them): a second
        # ROLLBACK would replace the real error with "no transaction is active".
        if self.db.in_transaction:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.DatabaseError:
                pass
        if isinstance(error, sqlite3.DatabaseError):
            raise UserError(_explain(error, doing, self.path), file=str(self.path)) from error
        raise error

    def _acknowledge(self) -> None:
        """Record, outside the WAL, the log position a caller is about to be told is stored."""
        self.ack.write(self.last_seq(), self.max_id())

    # -- metadata ------------------------------------------------------------------------------
    def set_meta(self, key: str, value) -> None:
        if self.readonly:
            raise UserError("opened read-only; open it for writing to change it",
                            file=str(self.path))
        with self._errors("write"):
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                            (key, json.dumps(value)))

    def get_meta(self, key: str, default=None):
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    # -- writes --------------------------------------------------------------------------------
    def add(self, edits: Sequence[NewEdit], conflict: str = EXACT, threshold: float = 1.0
            ) -> tuple[list[int], list[int]]:
        """Append edits in one committed transaction; returns (new ids, ids they superseded).

        Unless `conflict` is keep_all, a live edit of the same normalised subject that asks the
        same thing as a new one (lte.memory.conflicts; also one earlier in the same batch) is
        marked superseded by it; it stays in the log and comes back if the new one is deleted.
        """
        now = time.time()
        ids: list[int] = []
        superseded: list[int] = []
        cur = self._begin()
        try:
            for e in edits:
                vec = np.ascontiguousarray(e.vector, dtype=np.float32)
                subject_norm, question_norm = normalise(e.subject), normalise(e.question)
                cur.execute(
                    "INSERT INTO edits (case_id, subject, question, target_new, key_text, "
                    "descriptor, record_json, vector, status, superseded_by, created, updated, "
                    "subject_norm, question_norm) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?)",
                    (e.case_id, e.subject, e.question, e.target_new, e.key_text, e.descriptor,
                     json.dumps(e.record), vec.tobytes(), LIVE, now, now, subject_norm,
                     question_norm))
                new_id = int(cur.lastrowid)
                if conflict != KEEP_ALL:
                    old = self._conflicting(cur, new_id, conflict, threshold, subject_norm,
                                            question_norm, vec)
                    for old_id in old:
                        cur.execute("UPDATE edits SET status = ?, superseded_by = ?, updated = ? "
                                    "WHERE id = ?", (SUPERSEDED, new_id, now, old_id))
                        cur.execute("INSERT INTO log (op, edit_id, ts) VALUES (?, ?, ?)",
                                    (OP_SUPERSEDE, old_id, now))
                    superseded.extend(old)
                cur.execute("INSERT INTO log (op, edit_id, ts) VALUES (?, ?, ?)",
                            (OP_ADD, new_id, now))
                ids.append(new_id)
            cur.execute("COMMIT")
        except BaseException as e:
            self._rollback(e, "add edits to")
        self._acknowledge()
        return ids, superseded

    @staticmethod
    def _conflicting(cur, new_id: int, rule: str, threshold: float, subject_norm: str,
                     question_norm: str, vec: np.ndarray) -> list[int]:
        """Live edits (other than `new_id`) that the new edit supersedes under `rule`."""
        if not subject_norm:  # no subject: the exact question only (lte.memory.conflicts)
            rows = cur.execute("SELECT id, question_norm, vector FROM edits WHERE status = 'live' "
                               "AND subject_norm = '' AND question_norm = ? AND id != ?",
                               (question_norm, new_id)).fetchall()
        else:
            rows = cur.execute("SELECT id, question_norm, vector FROM edits WHERE status = 'live' "
                               "AND subject_norm = ? AND id != ?",
                               (subject_norm, new_id)).fetchall()
        if not rows:
            return []
        old_vecs = np.stack([np.frombuffer(r[2], dtype=np.float32) for r in rows])
        mask = supersedes(rule, threshold, subject_norm, question_norm, vec,
                          [r[1] for r in rows], old_vecs)
        return [int(r[0]) for r, hit in zip(rows, mask, strict=True) if hit]

    def delete(self, ids: Sequence[int]) -> tuple[list[int], list[int]]:
        """Mark live edits deleted (kept in the log); returns (the ids that were live, the ids
        they had superseded, live again)."""
        now = time.time()
        done, restored = [], []
        cur = self._begin()
        try:
            for i in ids:
                cur.execute("UPDATE edits SET status = ?, updated = ? WHERE id = ? AND "
                            "status = 'live'", (DELETED, now, int(i)))
                if cur.rowcount:
                    cur.execute("INSERT INTO log (op, edit_id, ts) VALUES (?, ?, ?)",
                                (OP_DELETE, int(i), now))
                    done.append(int(i))
                    # The edits it hid come back: deleting a correction restores what it corrected.
                    back = [r[0] for r in cur.execute(
                        "SELECT id FROM edits WHERE superseded_by = ? AND status = ?",
                        (int(i), SUPERSEDED))]
                    for old_id in back:
                        cur.execute("UPDATE edits SET status = ?, superseded_by = NULL, "
                                    "updated = ? WHERE id = ?", (LIVE, now, old_id))
                        cur.execute("INSERT INTO log (op, edit_id, ts) VALUES (?, ?, ?)",
                                    (OP_RESTORE, old_id, now))
                    restored.extend(back)
            cur.execute("COMMIT")
        except BaseException as e:
            self._rollback(e, "delete from")
        self._acknowledge()
        # An id both restored and deleted in one call (delete([new, old])) ends deleted.
        return done, [i for i in restored if i not in set(done)]

    def update(self, id_: int, *, descriptor: str | None = None, subject: str | None = None
               ) -> bool:
        """Change the stored text of an edit without touching its key vector."""
        now = time.time()
        cur = self._begin()
        try:
            if descriptor is not None:
                cur.execute("UPDATE edits SET descriptor = ?, updated = ? WHERE id = ?",
                            (descriptor, now, id_))
            if subject is not None:
                cur.execute("UPDATE edits SET subject = ?, updated = ? WHERE id = ?",
                            (subject, now, id_))
            changed = cur.rowcount > 0
            if changed:
                cur.execute("INSERT INTO log (op, edit_id, ts) VALUES (?, ?, ?)",
                            (OP_UPDATE, id_, now))
            cur.execute("COMMIT")
        except BaseException as e:
            self._rollback(e, "update")
        self._acknowledge()
        return changed

    # -- reads ---------------------------------------------------------------------------------
    def get(self, id_: int) -> StoredEdit | None:
        row = self.db.execute(f"SELECT {_COLS} FROM edits WHERE id = ?", (int(id_),)).fetchone()
        if not row:
            return None
        edit = _row_to_edit(row)
        edit.supersedes = [r[0] for r in self.db.execute(
            "SELECT id FROM edits WHERE superseded_by = ? ORDER BY id", (int(id_),))]
        return edit

    def recent_supersessions(self, n: int = 10) -> list[tuple[int, int]]:
        """(superseded id, id of the edit that superseded it), the latest `n`, newest first."""
        return [(int(a), int(b)) for a, b in self.db.execute(
            "SELECT id, superseded_by FROM edits WHERE superseded_by IS NOT NULL "
            "AND status = ? ORDER BY superseded_by DESC, id DESC LIMIT ?", (SUPERSEDED, n))]

    def texts(self, ids: Sequence[int]) -> dict[int, tuple[str, str]]:
        """id -> (descriptor, subject), for the hits of a search."""
        out: dict[int, tuple[str, str]] = {}
        ids = [int(i) for i in ids]
        for start in range(0, len(ids), 900):  # SQLite's bound-parameter limit
            chunk = ids[start:start + 900]
            q = f"SELECT id, descriptor, subject FROM edits WHERE id IN ({','.join('?' * len(chunk))})"
            for id_, desc, subj in self.db.execute(q, chunk):
                out[id_] = (desc, subj)
        return out

    def rephrases(self, ids: Sequence[int]) -> list[str]:
        """The first paraphrased question of each of these edits that has one (tuning queries)."""
        out = []
        ids = [int(i) for i in ids]
        for start in range(0, len(ids), 900):
            chunk = ids[start:start + 900]
            q = f"SELECT record_json FROM edits WHERE id IN ({','.join('?' * len(chunk))})"
            for (text,) in self.db.execute(q, chunk):
                prompts = json.loads(text).get("rephrase_prompts") or []
                if prompts and isinstance(prompts[0], str) and prompts[0].strip():
                    out.append(prompts[0])
        return out

    def max_id(self) -> int:
        row = self.db.execute("SELECT MAX(id) FROM edits").fetchone()
        return int(row[0] or 0)

    def _version(self) -> int:
        return int(self.db.execute("PRAGMA data_version").fetchone()[0])

    def changed_since_last_look(self) -> bool:
        """True once after another connection committed to the log (SQLite's data_version)."""
        version = self._version()
        changed, self._data_version = version != self._data_version, version
        return changed

    def last_seq(self) -> int:
        row = self.db.execute("SELECT MAX(seq) FROM log").fetchone()
        return int(row[0] or 0)

    def ops_after(self, seq: int) -> Iterator[tuple[int, str, int]]:
        """(seq, op, edit id) of every logged change after `seq`, in order."""
        yield from self.db.execute("SELECT seq, op, edit_id FROM log WHERE seq > ? ORDER BY seq",
                                   (seq,))

    def vectors(self, ids: Sequence[int], dim: int) -> np.ndarray:
        ids = [int(i) for i in ids]
        out = np.zeros((len(ids), dim), dtype=np.float32)
        pos = {i: n for n, i in enumerate(ids)}
        for start in range(0, len(ids), 900):
            chunk = ids[start:start + 900]
            q = f"SELECT id, vector FROM edits WHERE id IN ({','.join('?' * len(chunk))})"
            for id_, blob in self.db.execute(q, chunk):
                out[pos[id_]] = np.frombuffer(blob, dtype=np.float32)
        return out

    def live_vectors(self, dim: int, batch: int = 65536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) of every live edit, in id order, in batches."""
        last = 0
        while True:
            rows = self.db.execute("SELECT id, vector FROM edits WHERE status = 'live' AND id > ? "
                                   "ORDER BY id LIMIT ?", (last, batch)).fetchall()
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(-1, dim)
            yield ids, vecs
            last = int(ids[-1])

    def live_ids(self) -> np.ndarray:
        # Streamed from the cursor: a list of a million row tuples would cost ~100 MB of RSS
        # that the allocator keeps after it is freed.
        rows = self.db.execute("SELECT id FROM edits WHERE status = 'live' ORDER BY id")
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def counts(self) -> dict[str, int]:
        out = {LIVE: 0, SUPERSEDED: 0, DELETED: 0}
        for status, n in self.db.execute("SELECT status, COUNT(*) FROM edits GROUP BY status"):
            out[status] = n
        return out

    def count_live(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM edits WHERE status = 'live'")
                   .fetchone()[0])

    def checkpoint(self) -> None:
        """Fold the WAL into the database file (for snapshots and size figures)."""
        if not self.readonly:
            with self._errors("checkpoint"):
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def backup_to(self, path: str | Path) -> None:
        """A consistent copy of the log through SQLite's online backup (other writers may run)."""
        dest = sqlite3.connect(str(path))
        try:
            with self._errors("back up"):
                self.db.backup(dest)
            dest.execute("PRAGMA journal_mode=WAL")
        finally:
            dest.close()

    def close(self) -> None:
        try:
            self.db.close()
            self.ack.close()
        finally:
            if self.lock is not None:
                self.lock.release()
                self.lock = None


def _short_of_space(path: Path) -> bool:
    """SQLite reports a write refused for space (ENOSPC, EFBIG) as a generic I/O error."""
    import resource
    import shutil

    if resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY:
        return True
    try:
        return shutil.disk_usage(path.parent).free < 64 << 20
    except OSError:
        return False


def _explain(error: sqlite3.DatabaseError, doing: str, path: Path) -> str:
    text = str(error)
    code = getattr(error, "sqlite_errorname", "")
    if "full" in text or code == "SQLITE_FULL" or (code.startswith("SQLITE_IOERR")
                                                   and _short_of_space(path)):
        return (f"cannot {doing} the edit log: the disk is full (or a file-size limit was hit); "
                f"nothing of this change was stored; free space and retry")
    if "readonly" in text or "read-only" in text or code.startswith("SQLITE_READONLY"):
        return f"cannot {doing} the edit log: it is read-only (check the folder's permissions)"
    if "not a database" in text or "malformed" in text or code in ("SQLITE_NOTADB",
                                                                   "SQLITE_CORRUPT"):
        return (f"the edit log is damaged ({text}); restore it from a backup "
                f"(`lte memory backup`)")
    if "unable to open" in text or code == "SQLITE_CANTOPEN":
        return f"cannot open the edit log ({text}); check the folder exists and is readable"
    if "locked" in text or "busy" in text:
        return f"the edit log is locked by another process ({text}); retry"
    return f"cannot {doing} the edit log: {text}"
