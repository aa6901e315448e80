"""Leakage by text: training questions and descriptors that name an evaluation subject.

Dropping records whose *subject* is evaluated is not enough: a training record's locality or
portability questions, or its own question, can name another subject that an evaluation file
edits ("The official religion of Mark Isham is" while Mark Isham is edited in counterfact-edit).
Every question is checked for an evaluation subject as whole words; the question is dropped (so
neither its with-edit example nor its bare twin is built), a record whose own question (the
question part of its descriptor) names one is dropped whole, and the manifest counts both.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Iterable

from lte.data.record import EditRecord

_WORD = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> tuple[str, ...]:
    """Case-folded words and punctuation marks: whole-word matching compares these."""
    return tuple(_WORD.findall(text.casefold()))


class SubjectMatcher:
    """Finds evaluation subjects (as whole words) in text, one pass over its words."""

    def __init__(self, subjects: Iterable[str], min_chars: int = 6):
        self.by_first: dict[str, set[tuple[str, ...]]] = {}
        for s in subjects:
            if len(s.strip()) < min_chars:  # short names ("Go", "Iran") match mostly false friends
                continue
            w = words(s)
            if w:
                self.by_first.setdefault(w[0], set()).add(w)
        self.lengths = {len(w) for ws in self.by_first.values() for w in ws}

    def __len__(self) -> int:
        return sum(len(ws) for ws in self.by_first.values())

    def names(self, text: str) -> set[str]:
        """Every evaluation subject named in `text` (its words joined by spaces)."""
        w = words(text)
        return {" ".join(cand) for i, first in enumerate(w)
                for cand in self.by_first.get(first, ()) if w[i:i + len(cand)] == cand}

    def find(self, text: str) -> str | None:
        """The first evaluation subject named in `text` (its words joined), or None."""
        w = words(text)
        for i, first in enumerate(w):
            for cand in self.by_first.get(first, ()):
                if w[i:i + len(cand)] == cand:
                    return " ".join(cand)
        return None


@dataclasses.dataclass
class TextLeakage:
    """What the text filter dropped: whole records, and questions by source and capability."""

    records: Counter = dataclasses.field(default_factory=Counter)  # source -> records
    questions: dict[str, Counter] = dataclasses.field(default_factory=dict)  # source -> cap -> n

    def count(self, source: str, capability: str) -> None:
        self.questions.setdefault(source, Counter())[capability] += 1

    def to_dict(self) -> dict:
        return {"records": dict(sorted(self.records.items())),
                "records_total": sum(self.records.values()),
                "questions": {s: dict(sorted(c.items())) for s, c in sorted(self.questions.items())},
                "questions_total": sum(sum(c.values()) for c in self.questions.values())}


def filter_record(record: EditRecord, matcher: SubjectMatcher,
                  leak: TextLeakage) -> EditRecord | None:
    """The record without the questions that name an evaluation subject; None when its own
    question or descriptor names one."""
    # The descriptor's question part: a name given as an answer ("... was born in London") is
    # not a fact about that subject, and checking answers would drop a fifth of CounterFact.
    if matcher.find(record.prompt):
        leak.records[record.source] += 1
        return None

    def kept_qas(kinds: dict, capability: str) -> dict:
        out = {}
        for kind, qas in kinds.items():
            keep = []
            for qa in qas:
                if matcher.find(qa.prompt):
                    leak.count(record.source, capability)
                else:
                    keep.append(qa)
            if keep:
                out[kind] = keep
        return out

    rephrases = []
    for q in record.rephrase_prompts:
        if matcher.find(q):
            leak.count(record.source, "in_scope")
        else:
            rephrases.append(q)
    return dataclasses.replace(record, rephrase_prompts=rephrases,
                               portability=kept_qas(record.portability, "in_scope"),
                               locality=kept_qas(record.locality, "out_of_scope"))


def filter_records(records: list[EditRecord], matcher: SubjectMatcher,
                   leak: TextLeakage) -> list[EditRecord]:
    out = []
    for r in records:
        kept = filter_record(r, matcher, leak)
        if kept is not None:
            out.append(kept)
    return out


def filter_instructions(groups: list[tuple[str, list]], matcher: SubjectMatcher,
                        leak: TextLeakage) -> list[tuple[str, list]]:
    """Instructions (linguistic) whose prompt names no evaluation subject."""
    out = []
    for name, items in groups:
        keep = []
        for key, qa in items:
            if matcher.find(qa.prompt):
                leak.count(name, "linguistic")
            else:
                keep.append((key, qa))
        out.append((name, keep))
    return out
