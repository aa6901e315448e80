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
- **Fluency** (`fluency`), as the reference computes it (LTE's EasyEdit fork,
  `test_generation_quality` with `generate_fast`): the **bare** rewrite prompt (no editing prompt,
  no descriptors, raw text with the tokenizer's BOS), top-k=5 sampling (seeded per case, so a run
  is deterministic) up to `fluency_tokens` (100) tokens **in total, prompt included**; the scored
  text is the whole decoded sequence, prompt included, split with nltk's `word_tokenize`
  (its Treebank word tokenizer per sentence; sentences split at . ! ? instead of with punkt,
  which would need a data download). Then 100 x mean over scored cases of the weighted n-gram entropy:
  for n in (2, 3), H_n = -sum_g f_g log2 f_g over the relative frequencies f_g of the word
  n-grams; entropy = mean(2/3 H_2, 4/3 H_3) (EasyEdit `compute_n_gram_entropy`); x100 is
  KnowEdit's table scale (~500-600).
- **Fluency of our generation** (`fluency_gen`, this project's earlier definition): the same
  entropy of the text generated after the method's own rewrite prompt (editing prompt, retrieved
  descriptors, chat template), greedy decoding of exactly `fluency_tokens` new tokens (EOS
  suppressed), prompt not scored, words split by `\\w+|[^\\w\\s]`. Not comparable with the
  paper's Fluency; it is what a user of the edited system reads.
- **Generation exact match** (`gen_em`) = mean over cases of [normalize(greedy answer to the
  rewrite prompt) == normalize(a) for some alias a of target_new]; normalize = lowercase, strip
  punctuation and articles, collapse spaces (SQuAD style).
- **Retrieval hit@1 / hit@k** (`retrieval_hit1`, `retrieval_hitk`) = mean over cases of
  [the case's own edit is among the top-1 / top-k memory hits of its rewrite prompt].
  Only for methods that retrieve.
- **Latency per query** (`latency_ms`) = wall time of retrieval + greedy answer generation for
  the rewrite prompts of a run, divided by their number, in milliseconds.
- **Edit time per edit** (`edit_time_ms`) = wall time of inserting the run's edits (memory add:
  embedding + log + index insert for LTE; the weight update for FT-L/FT-M/ROME; 0 for methods
  that store nothing), divided by their number, in ms. `edit_time_p50_ms` / `edit_time_p95_ms`:
  percentiles over edits of the time of the insert call that applied each edit, divided by the
  edits in that call (single and sequential: one edit per call; batch: one call, so p50 = p95 =
  the mean).

Aggregations (`lte.eval.aggregate`): `aggregate` below is `lte`'s; `knowedit` and `easyedit`
rewrite the portability and locality means the way those codes do.

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
EXTRA_METRICS = ("rephrase_succ", "gen_em", "retrieval_hit1", "retrieval_hitk", "fluency_gen",
                 "latency_ms", "edit_time_ms", "edit_time_p50_ms", "edit_time_p95_ms")


def agreement(pre: Sequence[int], post: Sequence[int]) -> float | None:
    """Locality of one question: fraction of positions where post-edit argmax == pre-edit."""
    return token_accuracy(post, pre)


_WORD = re.compile(r"\w+|[^\w\s]")


def _ngram_freqs(words: Sequence[str], n: int) -> list[int]:
    return list(Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1)).values())


def regex_words(text: str) -> list[str]:
    """`fluency_gen`'s word split."""
    return _WORD.findall(text)


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def nltk_words(text: str) -> list[str]:
    """The reference's word split (nltk `word_tokenize`), without the punkt data download.

    `word_tokenize` first splits sentences with punkt (a data download), then runs the Treebank
    word tokenizer per sentence; here sentences end at . ! ? followed by white space (punkt
    also knows abbreviations such as "Dr.", so rare texts split differently).
    """
    from nltk.tokenize import word_tokenize

    return [w for sentence in _SENTENCE_END.split(text)
            for w in word_tokenize(sentence, preserve_line=True)]


def compute_n_gram_entropy(text: str, ns: Sequence[int] = (2, 3),
                           weights: Sequence[float] = (2 / 3, 4 / 3),
                           words=regex_words) -> float:
    """mean_n(w_n * H_n), H_n the entropy (bits) of the n-gram distribution of `words(text)`."""
    weighted = []
    tokens = words(text)
    for n, w in zip(ns, weights, strict=True):
        freqs = _ngram_freqs(tokens, n)
        total = sum(freqs)
        h = -sum(f / total * math.log2(f / total) for f in freqs) if total else 0.0
        weighted.append(w * h)
    return sum(weighted) / len(weighted)


def n_gram_entropy(texts: Iterable[str], words=regex_words) -> float | None:
    """Arithmetic mean of `compute_n_gram_entropy` over texts (EasyEdit `n_gram_entropy`)."""
    values = [compute_n_gram_entropy(t, words=words) for t in texts]
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
    fluency: float | None = None  # reference n-gram entropy (not yet x100)
    fluency_gen: float | None = None  # n-gram entropy of our generation (not yet x100)
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
    fluency_gen = mean(c.fluency_gen for c in cases)
    metrics: dict[str, float | None] = {
        "edit_succ": mean(c.edit_succ for c in cases),
        "portability": mean(port.values()),
        "locality": mean(loc.values()),
        "fluency": None if fluency is None else 100.0 * fluency,
        "fluency_gen": None if fluency_gen is None else 100.0 * fluency_gen,
        "rephrase_succ": mean(mean(c.rephrase) for c in cases),
        "gen_em": mean(c.gen_em for c in cases),
        "retrieval_hit1": mean(c.hit1 for c in cases),
        "retrieval_hitk": mean(c.hitk for c in cases),
    }
    metrics.update({f"portability_{k}": v for k, v in port.items()})
    metrics.update({f"locality_{k}": v for k, v in loc.items()})
    return metrics
