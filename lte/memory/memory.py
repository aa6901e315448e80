"""EditMemory: the edit log, the embedder and the vector index behind one small API.

A memory folder holds (DESIGN.md):
- `edits.sqlite`: the edit log and source of truth (text, key vector, status, sequence numbers);
- `index.faiss` + `index.json`: a snapshot of the vector index and what it reflects (embedder,
  dim, index type, last log sequence applied, checksum of index.faiss);
- `config.yaml`: the resolved config, for people (the log's copy is the one read back).

`add` commits to the log before it touches the index or returns, so an acknowledged edit
survives a crash; `open` loads the snapshot and replays the log after it, and rebuilds the
index from the log (with a warning) when the snapshot is missing, damaged or does not match.
"""

from __future__ import annotations

import json
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
from lte.data.record import EditRecord
from lte.embedding import make_embedder
from lte.errors import UserError
from lte.layout import EDIT_LOG, INDEX_FILE, INDEX_META_FILE, MEMORY_CONFIG
from lte.memory.index import VectorIndex
from lte.memory.store import LIVE, OP_ADD, EditStore, NewEdit, StoredEdit

FORMAT_VERSION = 1


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


def _check_record(i: int, r: EditRecord) -> None:
    for name in ("prompt", "target_new", "subject"):
        value = getattr(r, name, None)
        if not isinstance(value, str) or (name != "subject" and not value.strip()):
            raise UserError(f"an edit needs a non-empty string '{name}'", record=i, field=name)


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            crc = zlib.crc32(chunk, crc)
    return crc


def _write_atomic(path: Path, write) -> None:
    """Write through a temporary file, fsync it, then rename: a crash leaves old or new."""
    tmp = path.with_name(path.name + ".tmp")
    write(str(tmp))
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


class EditMemory:
    """Durable edit memory: `add` / `delete` / `get` / `search`, reopened with `open`."""

    def __init__(self, folder: Path, cfg: MemoryConfig, store: EditStore, dim: int | None = None):
        self.folder, self.cfg, self.store = folder, cfg, store
        self._embedder = None
        # An opened memory knows its dimension from the log: stats, delete and replay do not
        # load the embedder model.
        self.dim = dim if dim is not None else self.embedder.dim
        self.index = VectorIndex(self.dim, cfg.index, nprobe=cfg.nprobe, ef_search=cfg.ef_search,
                                 retrain_factor=cfg.retrain_factor, device=cfg.device)
        self.top_k, self.threshold = cfg.top_k, cfg.threshold
        self._lock = threading.RLock()
        self._applied_seq = 0  # last log sequence reflected in self.index
        self._snapshot_seq = -1  # log sequence of the snapshot on disk
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
    def create(cls, folder: str | Path, cfg: MemoryConfig | None = None) -> EditMemory:
        """A new, empty memory in `folder` (which must not already hold one)."""
        folder = Path(folder)
        cfg = cfg or MemoryConfig()
        if (folder / EDIT_LOG).exists():
            raise UserError("already holds an edit memory; open it, or pick another folder",
                            file=str(folder))
        folder.mkdir(parents=True, exist_ok=True)
        store = EditStore(folder / EDIT_LOG)
        mem = cls(folder, cfg, store)
        store.set_meta("config", asdict(cfg))
        store.set_meta("embedder", {"name": cfg.embedder.name, "dim": mem.dim})
        store.set_meta("format_version", FORMAT_VERSION)
        save_config(cfg, folder, MEMORY_CONFIG)
        mem.snapshot()
        return mem

    @classmethod
    def open(cls, folder: str | Path, **overrides) -> EditMemory:
        """Open a memory folder: load the index snapshot, replay the log after it.

        `overrides` set run-time fields of the stored config (top_k, threshold, nprobe,
        ef_search, device, add_chunk); what shapes the stored data cannot change.
        """
        folder = Path(folder)
        if not (folder / EDIT_LOG).is_file():
            raise UserError(f"no edit memory here ({EDIT_LOG} is missing); build one with "
                            f"`lte memory build`", file=str(folder))
        store = EditStore(folder / EDIT_LOG)
        data = store.get_meta("config")
        if data is None:
            store.close()
            raise UserError(f"{EDIT_LOG} has no memory config", file=str(folder))
        fixed = {"embedder", "index", "key", "conflict"}
        bad = sorted(set(overrides) & fixed)
        if bad:
            store.close()
            raise UserError(f"{', '.join(bad)} cannot change on an existing memory; build a new "
                            f"one", file=str(folder))
        cfg = build_config(MemoryConfig, {**data, **overrides}, source=str(folder / EDIT_LOG))
        stored_dim = (store.get_meta("embedder") or {}).get("dim")
        if not isinstance(stored_dim, int):
            store.close()
            raise UserError(f"{EDIT_LOG} does not record the embedding size", file=str(folder))
        mem = cls(folder, cfg, store, dim=stored_dim)
        mem._load_index()
        return mem

    def close(self) -> None:
        """Snapshot the index if the log moved on since the last one, then release the log."""
        with self._lock:
            if self.store is None:
                return
            if self._applied_seq != self._snapshot_seq:
                self.snapshot()
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
            _check_record(i, r)
        if vectors is not None and (vectors.ndim != 2 or vectors.shape != (len(records), self.dim)):
            raise UserError(f"vectors of shape {tuple(vectors.shape)} given for {len(records)} "
                            f"edits of dimension {self.dim}", field="vectors")
        ids: list[int] = []
        chunk = self.cfg.add_chunk
        bar = None
        if show_progress and len(records) > chunk:
            from tqdm import tqdm

            bar = tqdm(total=len(records), desc="edits", unit="edit")
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
                new_ids, superseded = self.store.add(new, conflict=self.cfg.conflict)
                self._apply(np.asarray(new_ids, dtype=np.int64), vecs, superseded)
            ids.extend(new_ids)
            if bar is not None:
                bar.update(len(part))
        if bar is not None:
            bar.close()
        return ids

    def delete(self, ids: Sequence[int]) -> int:
        """Delete live edits (they stay in the log, marked); returns how many were live."""
        with self._lock:
            done = self.store.delete([int(i) for i in ids])
            self._apply(np.zeros(0, dtype=np.int64), np.zeros((0, self.dim), np.float32), done)
        return len(done)

    def _apply(self, add_ids: np.ndarray, vecs: np.ndarray, removed: Sequence[int]) -> None:
        """Bring the index up to the log after a committed change."""
        # An id added and superseded in the same batch never needs to enter the index.
        removed_set, added = set(removed), set(add_ids.tolist())
        keep = np.array([i not in removed_set for i in add_ids.tolist()], dtype=bool)
        old_removed = [i for i in removed if i not in added]
        self._n_live += int(keep.sum()) - len(old_removed)
        if self.index.wants_rebuild(self._n_live):
            self.index.rebuild(self._live_source, self._n_live)
        else:
            self.index.add(add_ids[keep], vecs[keep])
            self.index.remove(old_removed)
            if self.index.wants_rebuild(self._n_live):
                self.index.rebuild(self._live_source, self._n_live)
        self._applied_seq = self.store.last_seq()

    def _live_source(self):
        return self.store.live_vectors(self.dim)

    def set_threshold(self, threshold: float | None) -> None:
        """Set the relevance gate and store it with the memory's config."""
        with self._lock:
            self.threshold = self.cfg.threshold = threshold
            self.store.set_meta("config", asdict(self.cfg))
            save_config(self.cfg, self.folder, MEMORY_CONFIG)

    # -- reads -------------------------------------------------------------------------------
    def get(self, id_: int) -> StoredEdit | None:
        with self._lock:
            return self.store.get(int(id_))

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
        gate = self.threshold if threshold is ... else threshold
        with self._lock:
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
                "embedder": self.cfg.embedder.name, "dim": self.dim, "key": self.cfg.key,
                "conflict": self.cfg.conflict, "threshold": self.threshold,
                "last_seq": self.store.last_seq(), "snapshot_seq": self._snapshot_seq,
                "disk_bytes": sum(files.values()), "files": files,
            }

    # -- snapshots and replay ----------------------------------------------------------------
    def snapshot(self) -> None:
        """Write index.faiss and index.json for the log position the index reflects."""
        with self._lock:
            seq = self._applied_seq
            self.store.checkpoint()  # fold the WAL into edits.sqlite: one file to copy
            _write_atomic(self.folder / INDEX_FILE, self.index.write)
            meta = {
                "format_version": FORMAT_VERSION,
                "embedder": self.cfg.embedder.name, "dim": self.dim, "index": self.cfg.index,
                "ivf_lists": self.index.nlist, "trained_at": self.index.trained_at,
                "last_seq": seq, "vectors": self.index.ntotal,
                "index_crc32": _crc32(self.folder / INDEX_FILE), "written": time.time(),
            }
            _write_atomic(self.folder / INDEX_META_FILE,
                          lambda p: Path(p).write_text(json.dumps(meta, indent=1)))
            self._snapshot_seq = seq

    def _read_snapshot(self) -> tuple[dict | None, str | None]:
        """(index.json, None) when the snapshot is usable, else (None, why not)."""
        meta_path, index_path = self.folder / INDEX_META_FILE, self.folder / INDEX_FILE
        if not meta_path.is_file() or not index_path.is_file():
            return None, "the index snapshot is missing"
        try:
            meta = json.loads(meta_path.read_text())
            seq, crc = int(meta["last_seq"]), int(meta["index_crc32"])
        except (ValueError, KeyError, TypeError):
            return None, f"{INDEX_META_FILE} is damaged"
        expected = {"embedder": self.cfg.embedder.name, "dim": self.dim, "index": self.cfg.index}
        for key, value in expected.items():
            if meta.get(key) != value:
                return None, f"{INDEX_META_FILE} says {key}={meta.get(key)!r}, log says {value!r}"
        if seq > self.store.last_seq():
            return None, f"the snapshot is ahead of the log (seq {seq})"
        if _crc32(index_path) != crc:
            return None, f"{INDEX_FILE} does not match its checksum"
        try:
            self.index.read(str(index_path), int(meta.get("trained_at", 0)),
                            int(meta.get("ivf_lists", 0)))
        except (RuntimeError, ValueError) as e:
            return None, f"{INDEX_FILE} cannot be read ({str(e).splitlines()[0][:120]})"
        return meta, None

    def _load_index(self) -> None:
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
        if self.index.s.kind == "hnsw":
            # HNSW keeps removed vectors (as tombstones); they are not listed in the snapshot.
            held = self.index.ids()
            self.index.remove(held[~np.isin(held, self.store.live_ids())].tolist())
        problem = self._check_consistent()
        if problem:
            warnings.warn(f"{self.folder}: {problem}; rebuilding the index from the edit log",
                          IndexRebuildWarning, stacklevel=3)
            self._rebuild()

    def _rebuild(self) -> None:
        self.index.rebuild(self._live_source, self._n_live)
        self._applied_seq = self.store.last_seq()
        self.snapshot()

    def _replay(self, after_seq: int) -> None:
        """Apply the log's changes after `after_seq` to the loaded snapshot."""
        touched_add, touched_out = [], []
        last = after_seq
        for seq, op, edit_id in self.store.ops_after(after_seq):
            (touched_add if op == OP_ADD else touched_out).append(edit_id)
            last = seq
        if last == after_seq:
            self._applied_seq = after_seq
            return
        # Replay to the log's final state: an edit added then deleted after the snapshot never
        # enters the index; one in the snapshot and no longer live leaves it.
        live_now = set(self.store.live_ids().tolist()) if touched_out or touched_add else set()
        add = sorted({i for i in touched_add if i in live_now})
        out = sorted({i for i in touched_out if i not in live_now})
        if add:
            self.index.add(np.asarray(add, dtype=np.int64), self.store.vectors(add, self.dim))
        present = set(self.index.ids().tolist()) if out else set()
        self.index.remove([i for i in out if i in present])
        self._applied_seq = last
        if self.index.wants_rebuild(self._n_live):
            self.index.rebuild(self._live_source, self._n_live)

    def _check_consistent(self) -> str | None:
        ids = self.index.ids()
        if self.index.tombstones:
            ids = ids[~np.isin(ids, np.fromiter(self.index.tombstones, dtype=np.int64))]
        live = self.store.live_ids()
        if len(ids) != len(live) or not np.array_equal(np.sort(ids), live):
            return (f"the index holds {len(ids)} live vectors, the log {len(live)} live edits, "
                    f"after replay")
        return None
