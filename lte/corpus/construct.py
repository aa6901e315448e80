"""Parallel-corpus construction as pure functions (no Ray, no I/O), following the LTE paper.

Every example exists twice: with edit descriptors in the editing prompt and bare. Randomness
comes from a generator seeded by (seed, record id), so the output for a record does not depend
on how records are partitioned across workers.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

from lte.config import CorpusConfig
from lte.data.record import QA, EditRecord
from lte.prompts import user_messages

IN_SCOPE, OUT_OF_SCOPE, LINGUISTIC = "in_scope", "out_of_scope", "linguistic"
CAPABILITIES = (IN_SCOPE, OUT_OF_SCOPE, LINGUISTIC)

# The paper's threefold strategy: share of with-edit examples carrying 1, 2 or 3 descriptors.
THREEFOLD = ((1, 0.50), (2, 0.25), (3, 0.25))


@dataclass
class Example:
    """One chat example of the corpus shard schema (before tokenization)."""

    id: str
    source: str
    capability: str
    with_edit: bool
    n_descriptors: int
    messages: list[dict]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ConstructOptions:
    """What example construction needs of a CorpusConfig (same names; defaults and docs there)."""

    seed: int
    rewrite_share: float
    descriptor_order: str
    max_distractors: int
    out_of_scope: bool

    @classmethod
    def from_config(cls, cfg: CorpusConfig) -> ConstructOptions:
        return cls(seed=cfg.seed, rewrite_share=cfg.rewrite_share,
                   descriptor_order=cfg.descriptor_order, max_distractors=cfg.max_distractors,
                   out_of_scope=cfg.out_of_scope)


def record_rng(seed: int, key: str) -> random.Random:
    return random.Random(f"{seed}:{key}")


def draw_n_descriptors(rng: random.Random, max_distractors: int = 2) -> int:
    r, acc = rng.random(), 0.0
    for n, share in THREEFOLD:
        acc += share
        if r < acc:
            return min(n, max_distractors + 1)
    return min(THREEFOLD[-1][0], max_distractors + 1)


def descriptors_for(edit: str, distractors: Sequence[str], rng: random.Random,
                    opts: ConstructOptions) -> list[str]:
    """The true descriptor plus 0-2 distractors (threefold), in the configured order."""
    n = draw_n_descriptors(rng, opts.max_distractors)
    pool = [d for d in distractors if d != edit]
    chosen = rng.sample(pool, min(n - 1, len(pool)))
    descs = [edit, *chosen]
    if opts.descriptor_order == "shuffled":
        rng.shuffle(descs)
    return descs


def _pair(ex_id: str, source: str, capability: str, question: str, descs: list[str],
          answer_with: str, answer_bare: str | None) -> list[Example]:
    """The with-edit example and, where an original answer exists, its bare twin."""
    out = [Example(f"{ex_id}/edit", source, capability, True, len(descs),
                   [*user_messages(question, descs), {"role": "assistant", "content": answer_with}])]
    if answer_bare is not None:
        out.append(Example(f"{ex_id}/bare", source, capability, False, 0,
                           [*user_messages(question, []),
                            {"role": "assistant", "content": answer_bare}]))
    return out


OriginalAnswer = Callable[[EditRecord, str], "str | None"]


def data_original_answer(record: EditRecord, question: str) -> str | None:
    """`answers: data`: the answer the file gives without the edit, where it gives one.

    The edit's own question and its paraphrases have the ground truth (when the format has one),
    locality questions their recorded answer; portability questions have none (their answer in
    the file is the post-edit one).
    """
    if question == record.prompt or question in record.rephrase_prompts:
        return record.ground_truth[0] if record.ground_truth else None
    for qas in record.locality.values():
        for qa in qas:
            if qa.prompt == question:
                return qa.answer
    return None


def in_scope_only(record: EditRecord,
                  original_answer: OriginalAnswer = data_original_answer) -> bool:
    """An edit with no original answer for its own question: its in-scope examples have no bare
    twin (its locality questions still give out-of-scope examples; the manifest counts these)."""
    return original_answer(record, record.prompt) is None


def edit_examples(record: EditRecord, distractors: Sequence[str], opts: ConstructOptions,
                  original_answer: OriginalAnswer = data_original_answer) -> list[Example]:
    """In-scope and out-of-scope examples for one edit record (the `extended` recipe).

    Every question is asked with the edit; its bare twin exists wherever an original answer
    does (each question on its own: a record without a ground truth still has its locality
    answers, and model answers give portability questions a twin too).
    """
    rng = record_rng(opts.seed, record.case_id)
    edit = record.descriptor
    out: list[Example] = []
    base = f"{record.source}:{record.case_id}"

    use_rewrite = not record.rephrase_prompts or rng.random() < opts.rewrite_share
    question = record.prompt if use_rewrite else rng.choice(record.rephrase_prompts)
    out += _pair(f"{base}/in/q", record.source, IN_SCOPE, question,
                 descriptors_for(edit, distractors, rng, opts), record.target_new,
                 original_answer(record, question))
    for kind in sorted(record.portability):
        for j, qa in enumerate(record.portability[kind]):
            out += _pair(f"{base}/in/{kind}{j}", record.source, IN_SCOPE, qa.prompt,
                         descriptors_for(edit, distractors, rng, opts), qa.answer,
                         original_answer(record, qa.prompt))
    if opts.out_of_scope:
        for kind in sorted(record.locality):
            for j, qa in enumerate(record.locality[kind]):
                answer = original_answer(record, qa.prompt)
                if answer is None:
                    continue
                out += _pair(f"{base}/out/{kind}{j}", record.source, OUT_OF_SCOPE, qa.prompt,
                             descriptors_for(edit, distractors, rng, opts), answer, answer)
    return out


def linguistic_examples(instructions: Iterable[tuple[str, QA]], unrelated: Sequence[str],
                        opts: ConstructOptions, source: str = "instructions",
                        distractors_of: Mapping[str, Sequence[str]] | None = None,
                        ) -> list[Example]:
    """General instructions answered as without edits, with an unrelated edit in the prompt.

    `distractors_of` maps a descriptor to its retrieved distractors (as for edit examples);
    without it distractors are drawn at random from `unrelated`.
    """
    out: list[Example] = []
    if not unrelated:
        return out
    for key, qa in instructions:
        rng = record_rng(opts.seed, f"ling:{key}")
        edit = unrelated[rng.randrange(len(unrelated))]
        if distractors_of is not None:
            pool = distractors_of.get(edit, ())
        else:  # a small random pool: filtering all of `unrelated` per instruction is quadratic
            pool = rng.sample(unrelated, min(len(unrelated), opts.max_distractors + 4))
        descs = descriptors_for(edit, pool, rng, opts)
        out += _pair(f"{source}:{key}/ling", source, LINGUISTIC, qa.prompt, descs,
                     qa.answer, qa.answer)
    return out
