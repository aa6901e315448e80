"""The texts of the scaling study and their cached embeddings (used by tools/bench_scale.py).

The evaluation edits (counterfact-edit-1k, ZsRE-test) are stored among N distractor edits: the
rest of counterfact-edit first, then the synthetic world (lte.data.synth) in chunks. Every key is
the real embedding of a real question. Embeddings are computed once and cached on disk as
float16, one file per chunk, named by the embedder and a hash of the chunk's texts, so a later
or interrupted run reuses what exists and embeds only what is missing.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lte.data.readers import read_records
from lte.data.record import EditRecord
from lte.data.synth import MAX_EDITS, generate_world, to_edit_record

EVAL_FILES = ("counterfact/counterfact-edit-1k.json", "knowedit/ZsRE-test-all.json")
DISTRACTOR_FILE = "counterfact/counterfact-edit.json"
SYNTH_SEED = 18
SYNTH_CHUNK = 2_000


@dataclass
class EvalSet:
    """The evaluation edits and the question texts the study asks about them."""

    records: list[EditRecord]
    rephrases: list[tuple[int, str]]  # (record row, paraphrased question)
    localities: list[tuple[int, str]]  # (record row, unrelated question)


def _key(r: EditRecord) -> tuple[str, str]:
    return r.subject.strip().lower(), r.prompt.strip().lower()


def eval_set(data: Path) -> EvalSet:
    records = [r for f in EVAL_FILES for r in read_records(data / f)]
    reph = [(i, q) for i, r in enumerate(records) for q in r.rephrase_prompts[:1]]
    loc = [(i, qa.prompt) for i, r in enumerate(records)
           for qas in list(r.locality.values())[:1] for qa in qas[:1]]
    return EvalSet(records, reph, loc)


def counterfact_distractors(data: Path, ev: EvalSet) -> list[EditRecord]:
    """counterfact-edit less the evaluation edits (by subject and question, so a repeated fact
    does not supersede an evaluated edit)."""
    taken = {_key(r) for r in ev.records}
    out, seen = [], set()
    for r in read_records(data / DISTRACTOR_FILE):
        k = _key(r)
        if k not in taken and k not in seen:
            seen.add(k)
            out.append(r)
    return out


def synth_chunk(chunk: int) -> list[EditRecord]:
    """Chunk `chunk` of the synthetic world (SYNTH_CHUNK edits each, seed SYNTH_SEED)."""
    start = chunk * SYNTH_CHUNK
    # One world of MAX_EDITS people: its questions do not depend on how much of it is read.
    world = itertools.islice(generate_world(MAX_EDITS, SYNTH_SEED, start=start), SYNTH_CHUNK)
    return [to_edit_record(d, "synth") for d in world]


class VectorCache:
    """float16 embeddings on disk, one .npy per named list of texts, keyed by model and texts."""

    def __init__(self, folder: Path, embedder, log=print):
        self.folder, self.embedder, self.log = Path(folder), embedder, log
        self.folder.mkdir(parents=True, exist_ok=True)
        self.embedded = 0  # texts embedded by this process (not read from the cache)
        self.seconds = 0.0

    def _backend(self) -> str:
        return self.embedder.cfg.backend

    def _path(self, name: str, texts: list[str]) -> Path:
        h = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
        model = self.embedder.name.replace("/", "_")
        if self._backend() != "torch":  # another backend's vectors differ slightly: never mix
            model += f"-{self._backend()}"
        return self.folder / f"{name}-{model}-{len(texts)}-{h}.npy"

    def get(self, name: str, texts: list[str]) -> np.ndarray:
        """Unit float32 vectors of `texts`, read from the cache or embedded and cached."""
        path = self._path(name, texts)
        if path.exists():
            return np.load(path).astype(np.float32)
        t0 = time.perf_counter()
        vecs = self.embedder.encode(texts, show_progress=len(texts) > 5000)
        dt = time.perf_counter() - t0
        self.embedded += len(texts)
        self.seconds += dt
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, vecs.astype(np.float16))
        tmp.replace(path)
        path.with_suffix(".json").write_text(json.dumps(
            {"texts": len(texts), "model": self.embedder.name,
             "backend": self._backend(), "seconds": round(dt, 1),
             "texts_per_s": round(len(texts) / max(dt, 1e-9), 1),
             "mean_chars": round(float(np.mean([len(t) for t in texts])), 1)}))
        self.log(f"embedded {name}: {len(texts)} texts in {dt:.0f} s "
                 f"({len(texts) / max(dt, 1e-9):.0f}/s)")
        # float16 is what later runs read: return the same rounding now
        return vecs.astype(np.float16).astype(np.float32)

    def one_time_seconds(self) -> dict:
        """Embedding time recorded beside every cached file (the one-time cost of the cache)."""
        total, texts = 0.0, 0
        for meta in self.folder.glob("*.json"):
            d = json.loads(meta.read_text())
            if (d["model"], d.get("backend", "torch")) != (self.embedder.name, self._backend()):
                continue
            total += d["seconds"]
            texts += d["texts"]
        return {"texts": texts, "seconds": round(total, 1),
                "texts_per_s": round(texts / max(total, 1e-9), 1)}


def key_vectors(cache: VectorCache, data: Path, ev: EvalSet, n: int
                ) -> tuple[list[EditRecord], np.ndarray]:
    """The n distractors and their key vectors (counterfact part, then synthetic chunks)."""
    cf = counterfact_distractors(data, ev)
    out_recs, parts = cf[:n], [cache.get("cf-distractors", [r.prompt for r in cf])[:n]]
    chunk = 0
    while len(out_recs) < n:
        recs = synth_chunk(chunk)
        vecs = cache.get(f"synth{SYNTH_SEED}-{chunk:03d}", [r.prompt for r in recs])
        take = n - len(out_recs)
        out_recs += recs[:take]
        parts.append(vecs[:take])
        chunk += 1
    return out_recs, np.concatenate(parts) if parts else np.zeros((0, cache.embedder.dim))


def eval_vectors(cache: VectorCache, ev: EvalSet) -> dict[str, np.ndarray]:
    return {"keys": cache.get("eval-keys", [r.prompt for r in ev.records]),
            "rephrase": cache.get("eval-rephrase", [q for _, q in ev.rephrases]),
            "locality": cache.get("eval-locality", [q for _, q in ev.localities])}


__all__ = ["EvalSet", "VectorCache", "eval_set", "key_vectors", "eval_vectors"]
