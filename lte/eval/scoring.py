"""Scores a list of cases on a method's current state -> `CaseResult`s (lte.eval.metrics).

All questions of all cases go through the editor in a few batched calls: teacher-forced
predictions for rewrite, rephrase, portability and locality questions; greedy generation for
exact match and latency; for the first `fluency_cases` cases, the reference's sampled Fluency text
(`lte.modeling.sampling`) and our 100-token greedy generation (`fluency_gen`).

Questions are encoded by the method's `PromptFormat` (`lte.eval.formats`): LTE's chat template
and training wording unless the method says otherwise.
The editor is used through questions, descriptors and targets only (`answer`, `predict_tokens`,
`contexts`), so the same code scores an in-process `LTEEditor` and the serving tier
(`lte.eval.remote.RemoteEditor`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from lte.config import EvalConfig
from lte.data.record import EditRecord
from lte.eval import metrics as M
from lte.eval.formats import method_format
from lte.prompts import CHAT, PromptFormat


@dataclass(frozen=True)
class ScoreOptions:
    """What scoring needs of an `EvalConfig` (its fields document these)."""

    hit_k: int
    fluency_cases: int
    fluency_tokens: int
    max_new_tokens: int  # answer length for exact match: model.max_new_tokens
    fluency_seed: int  # seeds the reference Fluency's sampling (per case): the run's seed

    @classmethod
    def from_config(cls, cfg: EvalConfig) -> ScoreOptions:
        return cls(hit_k=cfg.hit_k, fluency_cases=cfg.fluency_cases,
                   fluency_tokens=cfg.fluency_tokens, max_new_tokens=cfg.model.max_new_tokens,
                   fluency_seed=cfg.seed)


@dataclass
class _Item:
    case: int
    kind: str  # rephrase | portability | locality
    sub: str | None
    question: str
    target: str


def locality_items(records: Sequence[EditRecord]) -> list[tuple[int, str, str, str]]:
    """(case index, kind, question, first answer) for every locality question."""
    return [(i, kind, qa.prompt, qa.answer)
            for i, r in enumerate(records) for kind, qas in r.locality.items() for qa in qas]


def pre_edit_locality(editor, records: Sequence[EditRecord],
                      fmt: PromptFormat = CHAT) -> dict[str, list[list[int]]]:
    """Pre-edit argmax on every locality answer (the bare question on the unedited model).

    Keyed by case_id: one token list per locality question, in `locality_items` order.
    """
    items = locality_items(records)
    preds = editor.predict_tokens([q for _, _, q, _ in items], [a for *_, a in items],
                                  descriptors=[[] for _ in items], fmt=fmt)
    out: dict[str, list[list[int]]] = {r.case_id: [] for r in records}
    for (i, *_), p in zip(items, preds, strict=True):
        out[records[i].case_id].append(p.predicted)
    return out


def score_cases(method, records: Sequence[EditRecord], memory_ids: dict[str, int],
                pre_locality: dict[str, list[list[int]]],
                opts: ScoreOptions) -> tuple[list[M.CaseResult], float]:
    """(case results, latency per query in ms) of `method` in its current state."""
    editor = method.editor
    records = list(records)
    results = [M.CaseResult(case_id=r.case_id) for r in records]
    fmt = method_format(method)
    questions = [r.prompt for r in records]

    # Rewrite prompts: retrieval + greedy answer, timed as the user would see it.
    t0 = time.perf_counter()
    rw_descs, rw_hits = method.contexts(questions, records, opts.hit_k)
    answers = [a.text for a in editor.answer(questions, descriptors=rw_descs,
                                             max_new_tokens=opts.max_new_tokens, fmt=fmt)]
    latency_ms = 1000.0 * (time.perf_counter() - t0) / max(len(records), 1)

    rw_preds = editor.predict_tokens(questions, [r.target_new for r in records], rw_descs,
                                     fmt=fmt)
    for i, r in enumerate(records):
        res = results[i]
        res.edit_succ = rw_preds[i].accuracy
        res.gen_em = M.exact_match(answers[i].strip(), [r.target_new])
        if method.retrieves and r.case_id in memory_ids:
            ids = [h.id for h in rw_hits[i]]
            res.hit1 = M.hit_at_k(ids, memory_ids[r.case_id], 1)
            res.hitk = M.hit_at_k(ids, memory_ids[r.case_id], opts.hit_k)

    # Every other question of every case, in one batched teacher-forced pass.
    items: list[_Item] = []
    for i, r in enumerate(records):
        items += [_Item(i, "rephrase", None, q, r.target_new) for q in r.rephrase_prompts]
        items += [_Item(i, "portability", k, qa.prompt, qa.answer)
                  for k, qas in r.portability.items() for qa in qas]
    loc = locality_items(records)
    items += [_Item(i, "locality", k, q, a) for i, k, q, a in loc]
    if items:
        descs, _ = method.contexts([it.question for it in items],
                                   [records[it.case] for it in items], opts.hit_k)
        preds = editor.predict_tokens([it.question for it in items],
                                      [it.target for it in items], descs, fmt=fmt)
        loc_seen: dict[int, int] = {}
        for it, p in zip(items, preds, strict=True):
            res = results[it.case]
            if it.kind == "rephrase":
                res.rephrase.append(p.accuracy)
            elif it.kind == "portability":
                res.portability.setdefault(it.sub, []).append(p.accuracy)
            else:
                j = loc_seen.get(it.case, 0)
                loc_seen[it.case] = j + 1
                pre = pre_locality[records[it.case].case_id][j]
                res.locality.setdefault(it.sub, []).append(M.agreement(pre, p.predicted))

    n_flu = min(opts.fluency_cases, len(records))
    if n_flu > 0:
        # The reference's Fluency: the bare rewrite prompt, sampled, whole text scored (on the
        # model's weights: an editor that holds them here, or the server's Generator).
        texts = editor.sample_fluency(questions[:n_flu], [r.case_id for r in records[:n_flu]],
                                      opts.fluency_tokens, opts.fluency_seed)
        for i, text in enumerate(texts):
            results[i].fluency = M.compute_n_gram_entropy(text, words=M.nltk_words)
        # fluency_gen: a fixed-length greedy continuation of the method's rewrite prompt.
        flu = editor.answer(questions[:n_flu], descriptors=rw_descs[:n_flu],
                            max_new_tokens=opts.fluency_tokens,
                            min_new_tokens=opts.fluency_tokens, fmt=fmt)
        for i, a in enumerate(flu):
            results[i].fluency_gen = M.compute_n_gram_entropy(a.text)
    return results, latency_ms
