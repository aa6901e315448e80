"""Ray Serve deployments: one `EditMemoryShard` per memory shard, and the `Generator`.

Each shard replica owns one EditMemory folder (its own log and index). All of a replica's memory
calls run on one dedicated thread, so the memory (SQLite connection, FAISS index) is never used
by two threads at once while the replica's event loop keeps accepting requests. The Generator
holds the model; `@serve.batch` gathers concurrent requests into one left-padded forward pass,
for generation and for teacher-forced scoring alike. Both kinds of replica run their CPU work
off the event loop, so the next batch fills while the current one computes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from ray import serve

from lte.config import MemoryConfig, ModelConfig
from lte.layout import EDIT_LOG
from lte.serve.sharding import from_global, to_global


def _set_torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def worker_pool(name: str, torch_threads: int) -> ThreadPoolExecutor:
    """One thread for a replica's CPU work, with its torch thread count set."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
    pool.submit(_set_torch_threads, torch_threads).result()
    return pool


def configure_batching(handlers, batch_size: int, batch_wait_s: float) -> None:
    """The config's batch size and wait for `@serve.batch` methods (the decorators set none)."""
    for handler in handlers:
        handler.set_max_batch_size(batch_size)
        handler.set_batch_wait_timeout_s(batch_wait_s)


def _open_or_create(folder: Path, cfg: MemoryConfig):
    from lte.memory import EditMemory

    if (folder / EDIT_LOG).is_file():
        # A replica restarted by Serve may start while the one it replaces still exits.
        return EditMemory.open(folder, lock_wait_s=30.0)
    return EditMemory.create(folder, cfg)


# A shard with no change for this long writes its snapshot: a SIGTERM may not reach `__del__`
# (Serve's graceful shutdown has a deadline), and a kill -9 then replays nothing either.
IDLE_SNAPSHOT_S = 5.0


def _snapshot_timer(shard) -> threading.Thread:
    """Time-based and idle snapshots (writes trigger the count-based ones)."""
    def loop():
        while not shard._stopped.wait(1.0):
            try:
                shard._pool.submit(shard._memory.snapshot_if_due, IDLE_SNAPSHOT_S).result()
            except Exception as e:  # a failed snapshot must not end the timer: the log holds all
                print(f"shard {shard.shard}: snapshot failed: {e}", flush=True)

    thread = threading.Thread(target=loop, name=f"shard{shard.shard}-snapshots", daemon=True)
    thread.start()
    return thread


@serve.deployment(num_replicas=1)
class EditMemoryShard:
    """One shard of the edit memory; speaks service ids (`sharding.to_global`)."""

    def __init__(self, shard: int, n_shards: int, folder: str, memory: MemoryConfig,
                 batch_size: int, batch_wait_s: float, torch_threads: int):
        self.shard, self.n_shards = shard, n_shards
        self._pool = worker_pool(f"shard{shard}", torch_threads)
        self._memory = self._pool.submit(_open_or_create, Path(folder), memory).result()
        configure_batching((self.add, self.search), batch_size, batch_wait_s)
        self._stopped = threading.Event()
        self._timer = _snapshot_timer(self)

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _gid(self, local_id: int) -> int:
        return to_global(local_id, self.shard, self.n_shards)

    def _local(self, edit_id: int) -> int:
        shard, local = from_global(edit_id, self.n_shards)
        if shard != self.shard:
            raise ValueError(f"edit id {edit_id} belongs to shard {shard}, not {self.shard}")
        return local

    @serve.batch  # size and wait: configure_batching, from the ServeConfig
    async def add(self, requests: list[list]) -> list[list[int]]:
        """Store each request's edits; returns once the shard's log has committed them.

        Concurrent requests share one embedding pass and one commit (one fsync); a request is
        acknowledged only after the commit that holds its edits.
        """
        flat = [r for records in requests for r in records]
        ids = [self._gid(i) for i in await self._run(self._memory.add, flat)]
        out, start = [], 0
        for records in requests:
            out.append(ids[start:start + len(records)])
            start += len(records)
        return out

    async def get(self, edit_id: int) -> dict | None:
        edit = await self._run(self._memory.get, self._local(edit_id))
        if edit is None:
            return None
        out = dataclasses.asdict(edit)
        out["id"] = edit_id
        if out.get("superseded_by") is not None:
            out["superseded_by"] = self._gid(out["superseded_by"])
        out["supersedes"] = [self._gid(i) for i in out.get("supersedes", [])]
        return out

    async def delete(self, edit_ids: list[int]) -> int:
        return int(await self._run(self._memory.delete, [self._local(i) for i in edit_ids]))

    @serve.batch  # size and wait: configure_batching, from the ServeConfig
    async def search(self, requests: list[tuple[np.ndarray, int]]) -> list[list[dict]]:
        """(question's key vector, k) per request -> its top-k hits, one index search for all.

        The ingress embeds each question once for every shard: embedding costs ~100x an index
        search, so embedding it again in each shard would multiply the dominant cost by the
        number of shards.
        """
        k_max = max(k for _, k in requests)
        vecs = np.stack([v for v, _ in requests]).astype(np.float32, copy=False)
        hits = await self._run(self._memory.search_vectors, vecs, k_max)
        return [[{"id": self._gid(h.id), "descriptor": h.descriptor, "subject": h.subject,
                  "score": float(h.score)} for h in hs[:k]]
                for hs, (_, k) in zip(hits, requests, strict=True)]

    async def count(self) -> int:
        return await self._run(len, self._memory)

    async def snapshot(self) -> None:
        """Write the index snapshot now (for a shutdown that cannot wait for `__del__`)."""
        await self._run(self._memory.snapshot)

    def __del__(self):
        # Serve calls this on a graceful shutdown (SIGTERM of `lte serve`): close() writes the
        # index snapshot and checkpoints the WAL, so the next start replays nothing.
        stopped = getattr(self, "_stopped", None)
        if stopped is not None:
            stopped.set()
        memory = getattr(self, "_memory", None)
        if memory is not None:
            self._pool.submit(memory.close).result()


@serve.deployment(num_replicas=1)
class Generator:
    """The aligned model behind an `LTEEditor` without memory: descriptors come with requests."""

    def __init__(self, model: ModelConfig, batch_size: int, batch_wait_s: float,
                 torch_threads: int):
        from lte.editor import LTEEditor
        from lte.modeling.load import load_model_and_tokenizer

        self._pool = worker_pool("generator", torch_threads)
        lm, tokenizer = self._pool.submit(load_model_and_tokenizer, model).result()
        # No memory here: the ingress retrieves and sends the descriptors with each request.
        self.editor = LTEEditor(lm, tokenizer, None, top_k=None, batch_size=batch_size,
                                max_new_tokens=model.max_new_tokens)
        configure_batching((self.answer, self.score, self.predict), batch_size, batch_wait_s)

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _answer(self, requests: list[tuple]) -> list[str]:
        """(question, descriptors[, max_new_tokens, min_new_tokens]) -> answer, one pass per length."""
        out: list[str] = [""] * len(requests)
        by_length: dict[tuple, list[int]] = {}
        for i, req in enumerate(requests):
            by_length.setdefault(tuple(req[2:4]) or (None, 0), []).append(i)
        for (max_new, min_new), rows in by_length.items():
            answers = self.editor.answer([requests[i][0] for i in rows],
                                         descriptors=[list(requests[i][1]) for i in rows],
                                         max_new_tokens=max_new, min_new_tokens=min_new or 0)
            for i, a in zip(rows, answers, strict=True):
                out[i] = a.text
        return out

    def _score(self, requests: list[tuple[str, str, list[str]]]) -> list[float | None]:
        return self.editor.score([q for q, _, _ in requests], [t for _, t, _ in requests],
                                 descriptors=[list(d) for _, _, d in requests])


    def _predict(self, requests: list[tuple[str, list[str], list[str]]]) -> list[list[dict]]:
        flat = [(q, t, list(d)) for q, targets, d in requests for t in targets]
        preds = self.editor.predict_tokens([q for q, _, _ in flat], [t for _, t, _ in flat],
                                           descriptors=[d for _, _, d in flat])
        out, start = [], 0
        for (_, targets, _) in requests:
            out.append([{"target": t, "accuracy": p.accuracy, "predicted_ids": p.predicted,
                         "target_ids": p.target}
                        for t, p in zip(targets, preds[start:start + len(targets)], strict=True)])
            start += len(targets)
        return out

    @serve.batch  # size and wait: configure_batching, from the ServeConfig
    async def answer(self, requests: list[tuple]) -> list[str]:
        """(question, descriptors[, max_new_tokens, min_new_tokens]) per request -> greedy answer."""
        return await self._run(self._answer, requests)

    @serve.batch  # size and wait: configure_batching, from the ServeConfig
    async def score(self, requests: list[tuple[str, str, list[str]]]) -> list[float | None]:
        """(question, target, descriptors) per request -> teacher-forced token accuracy."""
        return await self._run(self._score, requests)

    @serve.batch  # size and wait: configure_batching, from the ServeConfig
    async def predict(self, requests: list[tuple[str, list[str], list[str]]]) -> list[list[dict]]:
        """(question, targets, descriptors) per request -> per target the teacher-forced argmax
        ids, target ids and token accuracy: what lte.eval's metrics are computed from."""
        return await self._run(self._predict, requests)

    async def sample_fluency(self, question: str, case_id: str, total_tokens: int,
                             seed: int) -> str:
        """The reference's Fluency text of the bare question (`lte.modeling.sampling`), seeded
        per case as `lte eval` does in-process, so both give the same text."""
        return (await self._run(self.editor.sample_fluency, [question], [case_id], total_tokens,
                                seed))[0]
