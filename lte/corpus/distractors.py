"""Distractor descriptors: the top retrieved descriptors of *other* subjects, per edit.

The retriever is the memory stage's (an `Embedder`, keyed on the edit's question as at inference,
exact inner-product search), so distractors are the near misses the aligned model will really see
next to a true edit. Runs once on the driver: one embedding per distinct question.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from lte.corpus.sources import subject_key
from lte.data.record import EditRecord

Encode = Callable[[Sequence[str]], np.ndarray]


def record_key(record: EditRecord) -> str:
    return f"{record.source}:{record.case_id}"


def retrieve_distractors(records: Sequence[EditRecord], encode: Encode,
                         k: int = 5) -> dict[str, list[str]]:
    """Record key -> up to `k` descriptors of other subjects, nearest question first."""
    import faiss

    if not records:
        return {}
    questions = sorted({r.prompt for r in records})
    row_of = {q: i for i, q in enumerate(questions)}
    vecs = np.ascontiguousarray(encode(questions), dtype=np.float32)
    index = faiss.IndexFlatIP(vecs.shape[1])
    index.add(vecs)

    # Candidates per question: every record asking it, in input order.
    by_question: list[list[EditRecord]] = [[] for _ in questions]
    for r in records:
        by_question[row_of[r.prompt]].append(r)

    out: dict[str, list[str]] = {}
    pending = list(range(len(questions)))
    depth = min(len(questions), 4 * k + 8)
    while pending:
        _, ids = index.search(vecs[pending], depth)
        retry = []
        for qi, hits in zip(pending, ids, strict=True):
            for r in by_question[qi]:
                found = _other_subject_descriptors(r, hits, by_question, k)
                out[record_key(r)] = found
                if len(found) < k and depth < len(questions):
                    retry.append(qi)
        pending = sorted(set(retry))
        depth = min(len(questions), depth * 4)
    return out


def _other_subject_descriptors(record: EditRecord, hits: np.ndarray,
                               by_question: list[list[EditRecord]], k: int) -> list[str]:
    subject, own = subject_key(record.subject), record.descriptor
    found: list[str] = []
    for hit in hits:
        if hit < 0:
            break
        for other in by_question[hit]:
            d = other.descriptor
            if subject_key(other.subject) != subject and d != own and d not in found:
                found.append(d)
                if len(found) == k:
                    return found
    return found


def distractors_by_descriptor(records: Sequence[EditRecord],
                              by_key: dict[str, list[str]]) -> dict[str, list[str]]:
    """Descriptor -> the distractors of the first record with it (for linguistic examples)."""
    out: dict[str, list[str]] = {}
    for r in records:
        out.setdefault(r.descriptor, by_key.get(record_key(r), []))
    return out
