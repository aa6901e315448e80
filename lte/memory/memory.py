"""EditMemory: the edit log, the embedder and the vector index behind one small API.

A memory folder holds (DESIGN.md):
- `edits.sqlite`: the edit log and source of truth (text, key vector, status, sequence numbers);
- `index.faiss` + `index.json`: a snapshot of the vector index and what it reflects (embedder,
  dim, index type, last log sequence applied, checksum of index.faiss);
- `config.yaml`: the resolved config, for people (the log's copy is the one read back).

`add` commits to the log before it touches the index or returns, so an acknowledged edit
survives a crash; `open` loads the snapshot and replays the log after it, and rebuilds the
index from the log (with a warning) when the snapshot is missing, damaged or does not match.
A writer snapshots after `snapshot_every` changes or `snapshot_every_s` seconds and on close,
checkpointing the WAL each time, so a restart replays little. `open` refuses a log that holds
fewer changes than were acknowledged (`edits.acked`, or the snapshot's position): that is a
lost or damaged WAL, said in one line, never a silently smaller memory. One process writes a
folder (guards.WriterLock); read-only opens follow its commits (`PRAGMA data_version`).
"""

from __future__ import annotations

import json
import math
import numbers
import os
import threading
import time
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lte.config import MemoryConfig, build_config, save_config
from lte.config.index_spec import check_index_for_dim
from lte.data.record import EditRecord
from lte.embedding import make_embedder
from lte.errors import UserError
from lte.layout import EDIT_LOG, INDEX_FILE, INDEX_META_FILE, MEMORY_CONFIG
from lte.memory.conflicts import rule_name
from lte.memory.guards import ACK_FILE, disk_error
from lte.memory.index import VectorIndex
from lte.memory.store import ADDING_OPS, LIVE, EditStore, NewEdit, StoredEdit

FORMAT_VERSION = 1
# Fewer edits with a paraphrase than this: the search setting is tuned on held-out keys.
MIN_PARAPHRASES = 50


class IndexRebuildWarning(UserWarning):
    """The index snapshot could not be used; the index was rebuilt from the edit log."""


@dataclass(frozen=True)
class Hit:
    """One retrieved edit: its id, descriptor, similarity to the query, and subject."""

    id: int
    descriptor: str
    score: float
    subject: str


def key_text(record: EditRecord, key: str) -> str:
    return record.prompt if key == "question" else record.descriptor


def check_record(i: int, r: EditRecord, file: str | None = None) -> None:
    for name in ("prompt", "target_new", "subject"):
        value = getattr(r, name, None)
        if not isinstance(value, str) or (name != "subject" and not value.strip()):
            raise UserError(f"an edit needs a non-empty string '{name}'", file=file, record=i,
                            field=name)
    for name, value in (("prompt", r.prompt), ("target_new", r.target_new),
                        ("subject", r.subject), ("descriptor", r.descriptor)):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:  # a lone surrogate (e.g. "\ud800" in JSON)
            raise UserError(f"not valid text: {e.reason} at character {e.start}", file=file,
                            record=i, field=name) from None


def check_threshold(threshold, field: str = "threshold") -> None:
    """A relevance gate is a finite number or None: NaN would turn the gate off silently."""
    if threshold is None:
        return
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) \
            or not math.isfinite(threshold):
        raise UserError(f"{threshold!r}: a threshold is a finite similarity (or none to turn "
                        f"the gate off)", field=field)


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            crc = zlib.crc32(chunk, crc)
    return crc


def _write_atomic(path: Path, write) -> None:
    """Write through a temporary file, fsync it, then rename: a crash leaves old or new."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(str(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise disk_error(e, path, "write the index snapshot") from e
    except RuntimeError as e:  # faiss reports a failed write (full disk) as RuntimeError
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write the index snapshot ({str(e).splitlines()[0][:160]}); "
                        f"is the disk full?", file=str(path)) from e


def _save_config(cfg: MemoryConfig, folder: Path) -> None:
    """config.yaml, for people (the log holds the copy that is read back)."""
    try:
        save_config(cfg, folder, MEMORY_CONFIG)
    except OSError as e:
        raise disk_error(e, folder / MEMORY_CONFIG, "write the config") from e


class LostEditsError(UserError):
    """The log holds fewer changes than were acknowledged: its WAL was lost or damaged."""


class EditMemory:
    """Durable edit memory: `add` / `delete` / `get` / `search`, reopened with `open`."""

    def __init__(self, folder: Path, cfg: MemoryConfig, store: EditStore, dim: int | None = None,
                 embedder=None):
        check_threshold(cfg.threshold, "memory.threshold")
        self.folder, self.cfg, self.store = folder, cfg, store
        self.readonly = store.readonly
        self._embedder = embedder
        # An opened memory knows its dimension from the log: stats, delete and replay do not
        # load the embedder model.
        self.dim = dim if dim is not None else self.embedder.dim
        self.index = VectorIndex.from_config(self.dim, cfg)
        self.top_k, self.threshold = cfg.top_k, cfg.threshold
        self._lock = threading.RLock()
        self._applied_seq = 0  # last log sequence reflected in self.index
        self._snapshot_seq = -1  # log sequence of the snapshot on disk
        self._snapshot_time = self._last_change = time.monotonic()
        self._n_live = 0

    @property
    def embedder(self):
        if self._embedder is None:
            embedder = make_embedder(self.cfg.embedder)
            if embedder.dim != getattr(self, "dim", embedder.dim):
                raise UserError(f"embedder '{self.cfg.embedder.name}' gives {embedder.dim} "
                                f"dimensions, the memory was built with {self.dim}",
                                file=str(self.folder))
            self._embedder = embedder
        return self._embedder

    # -- lifecycle -------------------------------------------------------------------------------
    @classmethod
    def create(cls, folder: str | Path, cfg: MemoryConfig | None = None, *,
               embedder=None) -> EditMemory:
        """A new, empty memory in `folder` (which must not already hold one).

        `embedder`: one already made from `cfg.embedder` (saves loading the model twice).
        """
        folder = Path(folder)
        cfg = cfg or MemoryConfig()
        if (folder / EDIT_LOG).exists():
            raise UserError("already holds an edit memory; open it, or pick another folder",
                            file=str(folder))
        check_threshold(cfg.threshold, "memory.threshold")
        # Everything that can fail on the config fails before the folder exists.
        embedder = embedder or make_embedder(cfg.embedder)
        problem = check_index_for_dim(cfg.index, embedder.dim)
        if problem:
            raise UserError(problem, field="memory.index")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise disk_error(e, folder, "create the memory folder") from e
        store = EditStore(folder / EDIT_LOG)
        try:
            mem = cls(folder, cfg, store, dim=embedder.dim, embedder=embedder)
            store.set_meta("config", asdict(cfg))
            store.set_meta("embedder", {"name": cfg.embedder.name, "dim": mem.dim})
            store.set_meta("format_version", FORMAT_VERSION)
            store.ack.write(0, 0)
            _save_config(cfg, folder)
            mem.snapshot()
        except BaseException:
            store.close()
            raise
        return mem

    @classmethod
    def open(cls, folder: str | Path, *, readonly: bool = False, lock_wait_s: float = 0.0,
             **overrides) -> EditMemory:
        """Open a memory folder: load the index snapshot, replay the log after it.

        `overrides` set run-time fields of the stored config (top_k, threshold, nprobe,
        ef_search, device, add_chunk); what shapes the stored data cannot change. A writer
        (the default) takes the folder's writer lock (waiting up to `lock_wait_s`); `readonly`
        opens write nothing and follow another process's writes before each answer.
        """
        folder = Path(folder)
        if not (folder / EDIT_LOG).is_file():
            raise UserError(f"no edit memory here ({EDIT_LOG} is missing); build one with "
                            f"`lte memory build`", file=str(folder))
        if not readonly and not os.access(folder, os.W_OK):
            raise UserError("the memory folder is read-only; this command changes the memory "
                            "(searches and stats only read it)", file=str(folder))
        store = EditStore(folder / EDIT_LOG, readonly=readonly, lock_wait_s=lock_wait_s)
        try:
            mem = cls._from_store(folder, store, overrides)
            mem._load_index()
        except BaseException:
            store.close()
            raise
        return mem

    @classmethod
    def _from_store(cls, folder: Path, store: EditStore, overrides: dict) -> EditMemory:
        with store._errors("read"):
            data = store.get_meta("config")
            stored_dim = (store.get_meta("embedder") or {}).get("dim")
        if data is None:
            raise UserError(f"{EDIT_LOG} has no memory config", file=str(folder))
        fixed = {"embedder", "index", "key", "conflict", "conflict_threshold"}
        bad = sorted(set(overrides) & fixed)
        if bad:
            raise UserError(f"{', '.join(bad)} cannot change on an existing memory; build a new "
                            f"one", file=str(folder))
        if "conflict" in data:
            data = {**data, "conflict": rule_name(data["conflict"])}
        cfg = build_config(MemoryConfig, {**data, **overrides}, source=str(folder / EDIT_LOG))
        if not isinstance(stored_dim, int):
            raise UserError(f"{EDIT_LOG} does not record the embedding size", file=str(folder))
        return cls(folder, cfg, store, dim=stored_dim)

    @classmethod
    def accept_loss(cls, folder: str | Path) -> str:
        """Take the log as it is after a lost WAL: drop the acknowledged mark and the snapshot.

        Returns what was given up, in one line. The next `open` rebuilds the index from the log.
        """
        folder = Path(folder)
        store = EditStore(folder / EDIT_LOG)
        try:
            with store._errors("read"):
                seq, max_id = store.last_seq(), store.max_id()
            mark = store.ack.read() or (seq, max_id)
            for name in (INDEX_FILE, INDEX_META_FILE):
                (folder / name).unlink(missing_ok=True)
            store.ack.write(seq, max_id)
        finally:
            store.close()
        return (f"accepted the log as it is: {max(0, mark[1] - max_id)} acknowledged edits and "
                f"{max(0, mark[0] - seq)} logged changes given up; the index is rebuilt on open")

    def close(self) -> None:
        """Snapshot the index if the log moved on since the last one, then release the log."""
        with self._lock:
            if self.store is None:
                return
            try:
                if not self.readonly and self._applied_seq != self._snapshot_seq:
                    self.snapshot()
            finally:
                self.store.close()
                self.store = None

    def __enter__(self) -> EditMemory:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self._n_live

    # -- writes ------------------------------------------------------------------------------
    def add(self, records: Sequence[EditRecord], show_progress: bool = False,
            vectors: np.ndarray | None = None) -> list[int]:
        """Embed and store edits; returns their ids once every one is committed to the log.

        Edits are embedded and committed `add_chunk` at a time, so a crash loses at most the
        chunk in flight (whose ids were never returned). `vectors`: key embeddings computed
        elsewhere with this memory's embedder (one row per record), e.g. by a batch job.
        """
        for i, r in enumerate(records):
            check_record(i, r)
        if vectors is not None and (vectors.ndim != 2 or vectors.shape != (len(records), self.dim)):
            raise UserError(f"vectors of shape {tuple(vectors.shape)} given for {len(records)} "
                            f"edits of dimension {self.dim}", field="vectors")
        ids: list[int] = []
        chunk = self.cfg.add_chunk
        bar = None
        if show_progress and len(records) > chunk:
            from tqdm import tqdm

            bar = tqdm(total=len(records), desc="edits", unit="edit")
        try:
            for start in range(0, len(records), chunk):
                part = records[start:start + chunk]
                # Embedding happens outside the lock: searches are not held up by a long add.
                vecs = (self.embedder.encode([key_text(r, self.cfg.key) for r in part])
                        if vectors is None else
                        np.ascontiguousarray(vectors[start:start + chunk], dtype=np.float32))
                new = [NewEdit(r.case_id, r.subject, r.prompt, r.target_new,
                               key_text(r, self.cfg.key), r.descriptor, r.to_dict(), v)
                       for r, v in zip(part, vecs, strict=True)]
                with self._lock:
                    new_ids, superseded = self.store.add(
                        new, conflict=self.cfg.conflict, threshold=self.cfg.conflict_threshold)
                    self._apply(np.asarray(new_ids, dtype=np.int64), vecs, superseded)
                ids.extend(new_ids)
                if bar is not None:
                    bar.update(len(part))
        except Exception as e:
            landed = _landed(ids, len(records), chunk)
            if isinstance(e, UserError):
                raise UserError(f"{e} ({landed})") from e
            e.add_note(landed)
            raise
        finally:
            if bar is not None:
                bar.close()
        self._maybe_snapshot()
        return ids

    def delete(self, ids: Sequence[int]) -> int:
        """Delete live edits (they stay in the log, marked); returns how many were live.

        The edits a deleted one had superseded are live again (its correction is withdrawn).
        """
        with self._lock:
            done, restored = self.store.delete([int(i) for i in ids])
            if restored:
                self.index.restore(np.asarray(restored, dtype=np.int64),
                                   self.store.vectors(restored, self.dim))
                self._n_live += len(restored)
            self._apply(np.zeros(0, dtype=np.int64), np.zeros((0, self.dim), np.float32), done)
        self._maybe_snapshot()
        return len(done)

    def _maybe_snapshot(self) -> None:
        """Snapshot once `snapshot_every` changes or `snapshot_every_s` seconds have passed."""
        with self._lock:
            if self.store is None or self.readonly or self._applied_seq == self._snapshot_seq:
                return
            behind = self._applied_seq - max(self._snapshot_seq, 0)
            if (behind >= self.cfg.snapshot_every
                    or time.monotonic() - self._snapshot_time >= self.cfg.snapshot_every_s):
                self.snapshot()

    def snapshot_if_due(self, idle_s: float | None = None) -> None:
        """For a timer in a long-running writer (a serve shard): the time-based snapshot, and,
        with `idle_s`, one once no change came for that long (a quiet server's snapshot is
        current, whatever ends it next)."""
        with self._lock:
            quiet = (idle_s is not None and self.store is not None
                     and self._applied_seq != self._snapshot_seq
                     and time.monotonic() - self._last_change >= idle_s)
            if quiet:
                self.snapshot()
            else:
                self._maybe_snapshot()

    def _apply(self, add_ids: np.ndarray, vecs: np.ndarray, removed: Sequence[int]) -> None:
        """Bring the index up to the log after a committed change."""
        # An id added and superseded in the same batch never needs to enter the index.
        removed_set, added = set(removed), set(add_ids.tolist())
        keep = np.array([i not in removed_set for i in add_ids.tolist()], dtype=bool)
        old_removed = [i for i in removed if i not in added]
        self._n_live += int(keep.sum()) - len(old_removed)
        if self.index.wants_rebuild(self._n_live):
            self._rebuild_index()
        else:
            self.index.add(add_ids[keep], vecs[keep])
            self.index.remove(old_removed)
            if self.index.wants_rebuild(self._n_live):
                self._rebuild_index()
        self._applied_seq = self.store.last_seq()
        self._last_change = time.monotonic()

    def _rebuild_index(self) -> None:
        self.index.rebuild(self._live_source, self._n_live)
        self._tune()

    def tune_search(self, queries: np.ndarray | None = None) -> dict | None:
        """Tune the index's search setting for `target_recall` on the edits held now (build does
        this once all edits are in; retraining does it each time). The next snapshot keeps it.

        `queries`: vectors of questions about stored edits that are not their keys; by default
        the stored edits' own paraphrases (`rephrase_prompts`), embedded, or, where fewer than
        `MIN_PARAPHRASES` edits have one, held-out keys (`VectorIndex.tune`).
        """
        with self._lock:
            return self._tune(queries)

    def _tune(self, queries: np.ndarray | None = None) -> dict | None:
        if self.index.target_recall is None or not self.index.tunable:
            self.index.tuning = None
            return None
        if queries is None:
            rng = np.random.default_rng(0)
            live = self.store.live_ids()
            pick = rng.choice(live, size=min(self.cfg.tune_queries, len(live)), replace=False)
            texts = self.store.rephrases(np.sort(pick).tolist())
            if len(texts) >= min(MIN_PARAPHRASES, len(pick)) and texts:
                queries = self.embedder.encode(texts)
        return self.index.tune(queries)

    def _live_source(self):
        return self.store.live_vectors(self.dim)

    def set_threshold(self, threshold: float | None) -> None:
        """Set the relevance gate and store it with the memory's config."""
        check_threshold(threshold)
        with self._lock:
            self.threshold = self.cfg.threshold = threshold
            self.store.set_meta("config", asdict(self.cfg))
            _save_config(self.cfg, self.folder)

    # -- reads -------------------------------------------------------------------------------
    def get(self, id_: int) -> StoredEdit | None:
        with self._lock:
            self._refresh()
            return self.store.get(int(id_))

    def _refresh(self) -> None:
        """A reader catches up with commits another process made since its last answer."""
        if self.readonly and self.store.changed_since_last_look():
            self._n_live = self.store.count_live()
            self._replay(self._applied_seq)

    def search(self, queries: Sequence[str], k: int | None = None,
               threshold: float | None = ...) -> list[list[Hit]]:
        """Top-k live edits per query, best first; hits below the relevance gate are dropped.

        `threshold=...` uses the memory's gate (`cfg.threshold`); None turns it off.
        """
        if isinstance(queries, str):
            raise TypeError("search takes a sequence of questions, not one string")
        vecs = self.embedder.encode(list(queries))
        return self.search_vectors(vecs, k, threshold)

    def search_vectors(self, vecs: np.ndarray, k: int | None = None,
                       threshold: float | None = ...) -> list[list[Hit]]:
        k = k or self.top_k
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k <= 0:
            raise UserError(f"k={k!r} must be a whole number > 0", field="k")
        gate = self.threshold if threshold is ... else threshold
        check_threshold(gate)
        with self._lock:
            self._refresh()
            # There are never more hits than vectors: a huge k must not reach faiss, which
            # allocates k results per query before searching.
            k = int(min(k, max(1, self.index.ntotal)))
            scores, ids = self.index.search(vecs, k)
            wanted = {int(i) for i in ids.ravel() if i >= 0}
            texts = self.store.texts(sorted(wanted))
        out = []
        for row_scores, row_ids in zip(scores, ids, strict=True):
            hits = []
            for s, i in zip(row_scores.tolist(), row_ids.tolist(), strict=True):
                if i < 0 or (gate is not None and s < gate) or i not in texts:
                    continue
                desc, subj = texts[i]
                hits.append(Hit(i, desc, float(s), subj))
            out.append(hits)
        return out

    def stats(self) -> dict:
        with self._lock:
            self._refresh()
            counts = self.store.counts()
            files = {name: (self.folder / name).stat().st_size
                     for name in (EDIT_LOG, EDIT_LOG + "-wal", INDEX_FILE, INDEX_META_FILE)
                     if (self.folder / name).exists()}
            return {
                "folder": str(self.folder),
                "live": counts[LIVE], "superseded": counts["superseded"],
                "deleted": counts["deleted"],
                "index": self.cfg.index, "index_vectors": self.index.ntotal,
                "ivf_lists": self.index.nlist if self.index.is_ivf else None,
                "index_trained_at": self.index.trained_at or None,
                "gpu": self.index.uses_gpu(),
                "search_tuning": self.index.tuning,
                "embedder": self.cfg.embedder.name, "dim": self.dim, "key": self.cfg.key,
                "conflict": self.cfg.conflict, "conflict_threshold": self.cfg.conflict_threshold,
                "recent_supersessions": [{"id": old, "superseded_by": new} for old, new
                                         in self.store.recent_supersessions()],
                "threshold": self.threshold,
                "last_seq": self.store.last_seq(), "snapshot_seq": self._snapshot_seq,
                "disk_bytes": sum(files.values()), "files": files,
            }

    # -- snapshots and replay ----------------------------------------------------------------
    def snapshot(self) -> None:
        """Write index.faiss and index.json for the log position the index reflects."""
        if self.readonly:
            return
        with self._lock:
            seq = self._applied_seq
            self.store.checkpoint()  # fold the WAL into edits.sqlite: one file to copy
            _write_atomic(self.folder / INDEX_FILE, self.index.write)
            meta = {
                "format_version": FORMAT_VERSION,
                "embedder": self.cfg.embedder.name, "dim": self.dim, "index": self.cfg.index,
                "ivf_lists": self.index.nlist, "trained_at": self.index.trained_at,
                "last_seq": seq, "vectors": self.index.ntotal,
                "search_tuning": self.index.tuning,
                "index_crc32": _crc32(self.folder / INDEX_FILE), "written": time.time(),
            }
            _write_atomic(self.folder / INDEX_META_FILE,
                          lambda p: Path(p).write_text(json.dumps(meta, indent=1)))
            self._snapshot_seq = seq
            self._snapshot_time = time.monotonic()

    def backup(self, out: str | Path) -> dict:
        """A consistent copy in `out`: SQLite online backup of the log, plus the index snapshot.

        The snapshot files are copied first and the log after, so the copy's log is never behind
        its snapshot; a snapshot replaced during the copy is detected by its checksum and read
        again.
        """
        import shutil

        out = Path(out)
        for _ in range(5):
            for name in (INDEX_META_FILE, INDEX_FILE, MEMORY_CONFIG):
                if (self.folder / name).is_file():
                    shutil.copyfile(self.folder / name, out / name)
            try:
                meta = json.loads((out / INDEX_META_FILE).read_text())
                if _crc32(out / INDEX_FILE) == int(meta["index_crc32"]):
                    break
            except (OSError, ValueError, KeyError):
                pass
        self.store.backup_to(out / EDIT_LOG)
        copy = EditStore(out / EDIT_LOG)
        try:
            seq, max_id, counts = copy.last_seq(), copy.max_id(), copy.counts()
            copy.ack.write(seq, max_id)
        finally:
            copy.close()
        (out / "writer.lock").unlink(missing_ok=True)
        return {"out": str(out), "last_seq": seq, "live": counts[LIVE],
                "edits": sum(counts.values())}

    def _check_acknowledged(self) -> None:
        """Refuse a log behind what was acknowledged (edits.acked) or snapshotted (index.json)."""
        # Read the snapshot's position and the mark before the log: a writer moves all three
        # forward (log first), so a reader of a live folder never sees the log behind them.
        try:
            meta = json.loads((self.folder / INDEX_META_FILE).read_text())
            snap_seq = int(meta["last_seq"])
        except (OSError, ValueError, KeyError, TypeError):
            snap_seq = 0
        mark = self.store.ack.read()
        seq, max_id = self.store.last_seq(), self.store.max_id()
        evidence = None
        if mark is not None and mark[0] > seq:
            evidence = (ACK_FILE, mark[0], mark[1])
        elif snap_seq > seq:
            evidence = (INDEX_META_FILE, snap_seq, None)
        if evidence is None:
            if mark is None and not self.readonly:  # a memory from before the mark existed
                self.store.ack.write(seq, max_id)
            return
        name, acked_seq, acked_id = evidence
        edits = ("" if acked_id is None else
                 f", {max(0, acked_id - max_id)} of them added edits (ids {max_id + 1}-{acked_id})")
        raise LostEditsError(
            f"the log holds fewer changes than were acknowledged ({acked_seq - seq} of "
            f"{acked_seq} logged changes missing{edits}, per {name}): {EDIT_LOG}-wal was lost "
            f"or damaged. Restore the folder from "
            f"a backup (`lte memory backup`), or accept the loss with "
            f"`lte memory repair {self.folder} --accept-loss`",
            file=str(self.folder / EDIT_LOG))

    def _read_snapshot(self) -> tuple[dict | None, str | None]:
        """(index.json, None) when the snapshot is usable, else (None, why not)."""
        meta_path, index_path = self.folder / INDEX_META_FILE, self.folder / INDEX_FILE
        if not meta_path.is_file() or not index_path.is_file():
            return None, "the index snapshot is missing"
        try:
            meta = json.loads(meta_path.read_text())
            int(meta["last_seq"])
            crc = int(meta["index_crc32"])
        except (ValueError, KeyError, TypeError):
            return None, f"{INDEX_META_FILE} is damaged"
        expected = {"embedder": self.cfg.embedder.name, "dim": self.dim, "index": self.cfg.index}
        for key, value in expected.items():
            if meta.get(key) != value:
                return None, f"{INDEX_META_FILE} says {key}={meta.get(key)!r}, log says {value!r}"
        if _crc32(index_path) != crc:
            return None, f"{INDEX_FILE} does not match its checksum"
        try:
            self.index.read(str(index_path), int(meta.get("trained_at", 0)),
                            int(meta.get("ivf_lists", 0)), meta.get("search_tuning"))
        except (RuntimeError, ValueError) as e:
            return None, f"{INDEX_FILE} cannot be read ({str(e).splitlines()[0][:120]})"
        return meta, None

    def _load_index(self) -> None:
        with self.store._errors("read"):
            self._check_acknowledged()
            self._n_live = self.store.count_live()
        meta, problem = self._read_snapshot()
        if meta is None:
            if self.store.last_seq() > 0:
                warnings.warn(f"{self.folder}: {problem}; rebuilding the index from the edit "
                              f"log ({self._n_live} live edits)", IndexRebuildWarning,
                              stacklevel=3)
            self._rebuild()
            return
        self._replay(int(meta["last_seq"]))
        self._snapshot_seq = int(meta["last_seq"])
        if self.index.keeps_removed:
            # Removed vectors stay (as tombstones); they are not listed in the snapshot.
            held = self.index.ids()
            self.index.remove(held[~np.isin(held, self.store.live_ids())].tolist())
        problem = self._check_consistent()
        if problem:
            warnings.warn(f"{self.folder}: {problem}; rebuilding the index from the edit log",
                          IndexRebuildWarning, stacklevel=3)
            self._rebuild()
        elif self.index.tuning is None and self.index.tunable:
            self._tune()  # a snapshot from before tuning, or tuned for another target

    def _rebuild(self) -> None:
        self._rebuild_index()
        self._applied_seq = self.store.last_seq()
        self.snapshot()  # a reader leaves the snapshot to the writer

    def _replay(self, after_seq: int) -> None:
        """Apply the log's changes after `after_seq` to the loaded snapshot."""
        touched_add, touched_out = [], []
        last = after_seq
        for seq, op, edit_id in self.store.ops_after(after_seq):
            (touched_add if op in ADDING_OPS else touched_out).append(edit_id)
            last = seq
        if last == after_seq:
            self._applied_seq = after_seq
            return
        # Replay to the log's final state: an edit added then deleted after the snapshot never
        # enters the index; one in the snapshot and no longer live leaves it.
        live_now = set(self.store.live_ids().tolist()) if touched_out or touched_add else set()
        add = sorted({i for i in touched_add if i in live_now})
        out = sorted({i for i in touched_out if i not in live_now})
        # A restored edit may still be in the loaded index (superseded after the snapshot).
        present = set(self.index.ids().tolist()) if touched_out else set()
        add = [i for i in add if i not in present or i in self.index.tombstones]
        if add:
            self.index.restore(np.asarray(add, dtype=np.int64), self.store.vectors(add, self.dim))
        self.index.remove([i for i in out if i in present])
        self._applied_seq = last
        if self.index.wants_rebuild(self._n_live):
            self._rebuild_index()

    def _check_consistent(self) -> str | None:
        ids = self.index.ids()
        if self.index.tombstones:
            ids = ids[~np.isin(ids, np.fromiter(self.index.tombstones, dtype=np.int64))]
        live = self.store.live_ids()
        if len(ids) != len(live) or not np.array_equal(np.sort(ids), live):
            return (f"the index holds {len(ids)} live vectors, the log {len(live)} live edits, "
                    f"after replay")
        return None


def _landed(ids: list[int], n: int, chunk: int) -> str:
    """Which chunks of a failed add are stored: each chunk is one transaction."""
    chunks = -(-n // chunk)
    done = -(-len(ids) // chunk) if ids else 0
    if not ids:
        return f"none of the {chunks} chunk(s) of {chunk} edits was stored"
    return (f"chunks 1-{done} of {chunks} were stored: the first {len(ids)} edits, ids "
            f"{ids[0]}-{ids[-1]}; the rest was not")
