"""When a new edit supersedes a live one (`memory.conflict`).

Two edits conflict when they share the subject and ask the same thing: `exact` compares the
questions as text, `embedding` (the default) also calls two questions one when their key
vectors' cosine reaches `memory.conflict_threshold`, so "Where was Ada born?" and "Ada's
birthplace?" of subject Ada are one fact and the newer answer wins, while "Where was Ada born?"
and "What did Ada study?" stay two live edits. Subjects and questions are compared with case and
whitespace folded (`normalise`), the rule shard placement uses too, so "Oslo " and "oslo" meet.

An edit without a subject is compared by its exact question only: "no subject" is not a
subject, and comparing every subjectless edit with every other by embedding would cost O(n) per
insert.
"""

from __future__ import annotations

import unicodedata

import numpy as np

EMBEDDING, EXACT, KEEP_ALL = "embedding", "exact", "keep_all"
# Memories built before `embedding` existed stored this name for what is now `exact`.
_LEGACY = {"supersede": EXACT}


def normalise(text: str) -> str:
    """Case and whitespace folded (and Unicode compatibility forms): the text as a key."""
    return " ".join(unicodedata.normalize("NFKC", text).split()).casefold()


def rule_name(stored: str) -> str:
    """A stored config's conflict rule under its current name."""
    return _LEGACY.get(stored, stored)


def cosine(vec: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Cosine of one vector with each row of `others` (keys are unit vectors unless the
    embedder's `normalize` is off, so divide anyway)."""
    if not len(others):
        return np.zeros(0, dtype=np.float32)
    dots = others @ vec
    norms = np.linalg.norm(others, axis=1) * float(np.linalg.norm(vec))
    return dots / np.where(norms > 0, norms, 1.0)


def supersedes(rule: str, threshold: float, subject_norm: str, question_norm: str,
               vec: np.ndarray, old_questions: list[str], old_vecs: np.ndarray) -> np.ndarray:
    """Which of the live edits of the same normalised subject a new edit supersedes (a mask)."""
    same_text = np.array([q == question_norm for q in old_questions], dtype=bool)
    if rule != EMBEDDING or not subject_norm:
        return same_text
    return same_text | (cosine(vec, old_vecs) >= threshold)


def choose_conflict_threshold(pos: np.ndarray, neg: np.ndarray, max_merged: float
                              ) -> tuple[float, float, float]:
    """(threshold, recall, merged) over key cosines of conflicting pairs (`pos`) and of pairs of
    one subject's other relations (`neg`): the lowest threshold that merges at most `max_merged`
    of the latter. A false conflict hides a valid edit, a missed one leaves two live (what the
    exact rule does anyway), so the share merged is what is bounded."""
    neg = np.sort(np.asarray(neg, dtype=np.float64))
    allowed = int(np.floor(max_merged * len(neg)))
    # Just above the (allowed+1)-th highest negative: at most `allowed` reach the threshold.
    threshold = float(np.nextafter(neg[len(neg) - allowed - 1], np.inf)) if len(neg) else -1.0
    return threshold, float(np.mean(pos >= threshold)), float(np.mean(neg >= threshold))
