"""Every evaluation metric, with its formula, in one place.

KnowEdit metrics follow EasyEdit (`easyeditor/evaluate/evaluate.py`, `evaluate_utils.py`,
`portability_evaluate.py`, and the KnowEdit summary), so numbers are comparable:

- **Teacher-forced token accuracy** acc(q, y) of a target y = (y_1..y_T) after prompt q:
  feed prompt(q) + y once; pred_t = argmax p(. | prompt, y_<t);
  acc = (1/T) * sum_t [pred_t == y_t]. Targets are tokenized as in alignment (no BOS, no EOS).
  EasyEdit gets the same predictions from T prompts `q + decode(y_<t)`; we feed one sequence.
- **Edit Succ** (`edit_succ`) = mean over cases of acc(rewrite prompt, target_new)
  (EasyEdit `rewrite_acc`).
- **Rephrase success** (`rephrase_succ`) = mean over cases having rephrases of
  mean over the case's rephrase prompts of acc(rephrase, target_new) (EasyEdit `rephrase_acc`).
- **Portability** of kind K (`portability_<K>`: Reasoning, Subject_Aliasing,
  Logical_Generalization, ...) = mean over cases having K of
  mean over the case's K questions of acc(question, first answer).
  `portability` = mean over the kinds present (the KnowEdit summary's "Portability").
- **Locality** of kind K (`locality_<K>`: Relation_Specificity, Forgetfulness, ...):
  per question, teacher-force the locality answer after the question on the edited system
  (post) and on the same system before any edit (pre); agreement =
  (1/T) * sum_t [post_pred_t == pre_pred_t]. `locality_<K>` = mean over cases having K of the mean
  over its questions; `locality` = mean over kinds present. It measures "unchanged", not
  "correct": the answer tokens only choose the positions.
- **Fluency** (`fluency`) = 100 x mean over scored cases of the weighted n-gram entropy of the
  text generated after the rewrite prompt: for n in (2, 3), H_n = -sum_g f_g log2 f_g over the
  relative frequencies f_g of the word n-grams; entropy = mean(2/3 H_2, 4/3 H_3)
  (EasyEdit `compute_n_gram_entropy`). x100 gives KnowEdit's table scale (~500-600).
  Differences from EasyEdit, on purpose: greedy decoding of exactly `fluency_tokens` (100) new
  tokens (EOS suppressed) instead of top-k sampling to a total length, the prompt is not part of
  the scored text, and words are split by `\\w+|[^\\w\\s]` instead of nltk's tokenizer.
- **Generation exact match** (`gen_em`) = mean over cases of [normalize(greedy answer to the
  rewrite prompt) == normalize(a) for some alias a of target_new]; normalize = lowercase, strip
  punctuation and articles, collapse spaces (SQuAD style).
- **Retrieval hit@1 / hit@k** (`retrieval_hit1`, `retrieval_hitk`) = mean over cases of
  [the case's own edit is among the top-1 / top-k memory hits of its rewrite prompt].
  Only for methods that retrieve.
- **Latency per query** (`latency_ms`) = wall time of retrieval + greedy answer generation for
  the rewrite prompts of a run, divided by their number, in milliseconds.
- **Edit time per edit** (`edit_time_ms`) = wall time of inserting the run's edits (memory add,
  fine-tuning for FT-L; 0 for methods that store nothing), divided by their number, in ms.

Means skip undefined values (a case without rephrases has no rephrase score); a metric no case
defines is reported as None.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from lte.editor import token_accuracy  # the editor's TokenPrediction scores with it

# Columns of the KnowEdit table first, then ours.
HEADLINE_METRICS = ("edit_succ", "portability", "locality", "fluency")
EXTRA_METRICS = ("rephrase_succ", "gen_em", "retrieval_hit1", "retrieval_hitk", "latency_ms",
                 "edit_time_ms")


def agreement(pre: Sequence[int], post: Sequence[int]) -> float | None:
    """Locality of one question: fraction of positions where post-edit argmax == pre-edit."""
    return token_accuracy(post, pre)


_WORD = re.compile(r"\w+|[^\w\s]")


def _ngram_freqs(text: str, n: int) -> list[int]:
    words = _WORD.findall(text)
    return list(Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1)).values())


def compute_n_gram_entropy(text: str, ns: Sequence[int] = (2, 3),
                           weights: Sequence[float] = (2 / 3, 4 / 3)) -> float:
    """mean_n(w_n * H_n), H_n the entropy (bits) of the n-gram distribution of `text`."""
    weighted = []
    for n, w in zip(ns, weights, strict=True):
        freqs = _ngram_freqs(text, n)
        total = sum(freqs)
        h = -sum(f / total * math.log2(f / total) for f in freqs) if total else 0.0
        weighted.append(w * h)
    return sum(weighted) / len(weighted)


def n_gram_entropy(texts: Iterable[str]) -> float | None:
    """Arithmetic mean of `compute_n_gram_entropy` over texts (EasyEdit `n_gram_entropy`)."""
    values = [compute_n_gram_entropy(t) for t in texts]
    return sum(values) / len(values) if values else None


def normalize_answer(text: str) -> str:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when the normalized prediction equals any normalized alias."""
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(a) for a in answers))


def hit_at_k(hit_ids: Sequence[int], gold_id: int, k: int) -> float:
    return float(gold_id in list(hit_ids)[:k])


def mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


@dataclass
class CaseResult:
    """Per-case scores; lists hold one value per question of that kind."""

    case_id: str
    edit_succ: float | None = None
    rephrase: list[float | None] = field(default_factory=list)
    portability: dict[str, list[float | None]] = field(default_factory=dict)
    locality: dict[str, list[float | None]] = field(default_factory=dict)
    fluency: float | None = None  # n-gram entropy (not yet x100)
    gen_em: float | None = None
    hit1: float | None = None
    hitk: float | None = None


def _per_kind(cases: Sequence[CaseResult], attr: str) -> dict[str, float]:
    kinds = sorted({k for c in cases for k in getattr(c, attr)})
    out = {}
    for kind in kinds:
        value = mean(mean(getattr(c, attr)[kind]) for c in cases if kind in getattr(c, attr))
        if value is not None:
            out[kind] = value
    return out


def aggregate(cases: Sequence[CaseResult]) -> dict[str, float | None]:
    """Case scores -> the run's metrics (formulas in the module docstring)."""
    port = _per_kind(cases, "portability")
    loc = _per_kind(cases, "locality")
    fluency = mean(c.fluency for c in cases)
    metrics: dict[str, float | None] = {
        "edit_succ": mean(c.edit_succ for c in cases),
        "portability": mean(port.values()),
        "locality": mean(loc.values()),
        "fluency": None if fluency is None else 100.0 * fluency,
        "rephrase_succ": mean(mean(c.rephrase) for c in cases),
        "gen_em": mean(c.gen_em for c in cases),
        "retrieval_hit1": mean(c.hit1 for c in cases),
        "retrieval_hitk": mean(c.hitk for c in cases),
    }
    metrics.update({f"portability_{k}": v for k, v in port.items()})
    metrics.update({f"locality_{k}": v for k, v in loc.items()})
    return metrics
