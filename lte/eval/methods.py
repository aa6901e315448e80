"""The evaluated methods: LTE and its baselines, all behind one small protocol.

A method decides two things: what happens when edits arrive (`insert`), and what context a
question is asked with (`contexts`). Scoring and generation are the editor's, so every method is
measured by the same code on the same model.

- `lte`: the aligned model; edits go to the memory; questions retrieve their descriptors.
- `prompt-only`: the same retrieval and editing prompt on the base model before alignment
  (the paper's ablation).
- `gold-context`: the case's own descriptor is given, no retrieval (the in-context upper bound).
- `no-edit`: the question alone; edits are ignored.
- `ft-l` / `ft-m`: EasyEdit's FT fine-tunes one MLP matrix on the edits (`lte.eval.ftl`).
- `ice`: the case's own fact before the question, raw text (`lte.eval.ice`).
- `rome`: a rank-one update of one MLP output projection per edit (`lte.eval.rome`).

A method may carry `fmt` (`lte.eval.formats.PromptFormat`: chat template or raw text, wording)
and `prepare(records)` (per-file statistics, run before any edit of that file).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

from lte.data.record import EditRecord
from lte.editor import LTEEditor


class Method(Protocol):
    name: str
    editor: LTEEditor
    retrieves: bool  # whether retrieval metrics apply

    def reset(self) -> None:
        """Undo every edit this method inserted."""

    def insert(self, records: Sequence[EditRecord]) -> dict[str, int]:
        """Apply edits; returns case_id -> memory id (empty for methods without memory)."""

    def contexts(self, questions: Sequence[str], owners: Sequence[EditRecord],
                 k: int) -> tuple[list[list[str]], list[list]]:
        """(descriptors per question, memory hits per question, up to k)."""


class RetrievalMethod:
    """LTE (aligned model) or prompt-only (base model): memory + retrieval + editing prompt."""

    retrieves = True

    def __init__(self, name: str, editor: LTEEditor):
        self.name, self.editor = name, editor
        self._ids: list[int] = []

    def reset(self) -> None:
        if self._ids:
            self.editor.forget(self._ids)
        self._ids = []

    def insert(self, records):
        ids = self.editor.edit(records)
        self._ids.extend(ids)
        return {r.case_id: i for r, i in zip(records, ids, strict=True)}

    def contexts(self, questions, owners, k):
        return self.editor.contexts(list(questions), k=k)


class FixedContext:
    """A method that stores nothing: each question is asked with a context fixed by its case."""

    retrieves = False
    name: str
    gold: bool  # the case's own descriptor (gold-context), else nothing (no-edit)

    def __init__(self, editor: LTEEditor):
        self.editor = editor

    def reset(self) -> None:
        pass

    def insert(self, records):
        return {}

    def contexts(self, questions, owners, k):
        descs = [[o.descriptor] if self.gold else [] for o in owners]
        return descs, [[] for _ in questions]


class GoldContext(FixedContext):
    name, gold = "gold-context", True


class NoEdit(FixedContext):
    name, gold = "no-edit", False


def timed_insert(method: Method, records: Sequence[EditRecord]) -> tuple[dict[str, int], float]:
    """(case_id -> memory id, seconds) for inserting `records`."""
    t0 = time.perf_counter()
    ids = method.insert(list(records))
    return ids, time.perf_counter() - t0
