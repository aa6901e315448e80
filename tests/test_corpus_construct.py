"""Corpus construction as pure functions: threefold shares, twins, scopes, distractors, labels."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from lte.config import CorpusConfig, EmbedderConfig
from lte.corpus.answers import questions_to_answer
from lte.corpus.construct import (
    IN_SCOPE,
    LINGUISTIC,
    OUT_OF_SCOPE,
    ConstructOptions,
    data_original_answer,
    edit_examples,
    in_scope_only,
    linguistic_examples,
)
from lte.corpus.distractors import record_key, retrieve_distractors
from lte.corpus.shards import Tokenize, examples_table
from lte.corpus.sources import (
    cap_instructions,
    continuation_instructions,
    dedupe_records,
    drop_leakage,
    subject_key,
)
from lte.data.record import QA, EditRecord
from lte.embedding import make_embedder
from lte.prompts import IGNORE_INDEX, chat_prefix, editing_prompt


def options(**fields) -> ConstructOptions:
    return ConstructOptions.from_config(CorpusConfig(**fields))


def make_record(i: int, ground_truth: bool = True, source: str = "t") -> EditRecord:
    return EditRecord(
        case_id=str(i), subject=f"Person{i}", prompt=f"Where does Person{i} live?",
        target_new=f"City{i + 1}", ground_truth=[f"City{i}"] if ground_truth else [],
        rephrase_prompts=[f"Person{i} lives in which city?", f"The home town of Person{i} is"],
        portability={"Reasoning": [QA(f"Which country is the city of Person{i} in?",
                                      [f"Country{i + 1}"])]},
        locality={"Relation_Specificity": [QA(f"What is the job of Person{i}?", [f"Job{i}"])]},
        source=source,
    )


def distractors_of(i: int, n: int) -> list[str]:
    return [make_record((i + d) % n).descriptor for d in range(1, 6)]


def build(n: int, opts: ConstructOptions | None = None, **kw):
    opts = opts or options()
    out = []
    for i in range(n):
        out += edit_examples(make_record(i, **kw), distractors_of(i, n), opts)
    return out


def user_text(ex) -> str:
    return ex.messages[0]["content"]


def test_threefold_shares_on_2k_records():
    examples = build(2000)
    with_edit = [ex for ex in examples if ex.with_edit]
    shares = Counter(ex.n_descriptors for ex in with_edit)
    assert set(shares) == {1, 2, 3}
    for n, expected in ((1, 0.50), (2, 0.25), (3, 0.25)):
        assert abs(shares[n] / len(with_edit) - expected) <= 0.03, (n, shares)
    assert all(ex.n_descriptors == 0 for ex in examples if not ex.with_edit)


def test_every_with_edit_example_has_its_bare_twin_but_portability():
    examples = build(200)
    by_id = {ex.id: ex for ex in examples}
    for ex in examples:
        if not ex.with_edit:
            continue
        twin = by_id.get(ex.id.replace("/edit", "/bare"))
        if "/in/Reasoning" in ex.id:  # the files give no pre-edit answer to portability questions
            assert twin is None
            continue
        assert twin is not None, ex.id
        question = twin.messages[0]["content"]
        assert user_text(ex).endswith(f"[Question]:\n{question}")
        if ex.capability == OUT_OF_SCOPE:  # the edit does not apply: the same answer both ways
            assert ex.messages[-1] == twin.messages[-1]
    caps = Counter(ex.capability for ex in examples)
    assert caps[IN_SCOPE] == 200 * 3 and caps[OUT_OF_SCOPE] == 200 * 2


def test_in_scope_answers_and_question_mix():
    examples = build(1000)
    asked = Counter()
    for ex in examples:
        if ex.capability == IN_SCOPE and "/in/q/" in ex.id and ex.with_edit:
            i = int(ex.id.split(":")[1].split("/")[0])
            record = make_record(i)
            assert ex.messages[-1]["content"] == record.target_new
            asked["rewrite" if user_text(ex).endswith(record.prompt) else "paraphrase"] += 1
        if ex.capability == IN_SCOPE and "/in/q/" in ex.id and not ex.with_edit:
            i = int(ex.id.split(":")[1].split("/")[0])
            assert ex.messages[-1]["content"] == f"City{i}"
    assert abs(asked["rewrite"] / 1000 - 0.3) < 0.05


def test_edit_without_original_answer_keeps_its_out_of_scope_side():
    # WikiData_recent / WikiBio: no ground truth, but locality questions with answers
    record = make_record(7, ground_truth=False)
    assert in_scope_only(record)
    examples = edit_examples(record, distractors_of(7, 20), options())
    inside = [ex for ex in examples if ex.capability == IN_SCOPE]
    outside = [ex for ex in examples if ex.capability == OUT_OF_SCOPE]
    assert inside and all(ex.with_edit for ex in inside)  # no original answer: no bare twin
    assert sorted(ex.with_edit for ex in outside) == [False, True]
    assert {ex.messages[-1]["content"] for ex in outside} == {"Job7"}


def test_model_answers_give_every_question_a_bare_twin():
    record = make_record(3, ground_truth=False)
    examples = edit_examples(record, distractors_of(3, 20), options(),
                             lambda _r, q: f"model says {len(q)}")
    edits = {ex.id for ex in examples if ex.with_edit}
    bares = {ex.id for ex in examples if not ex.with_edit}
    assert {e.replace("/edit", "/bare") for e in edits} == bares
    assert any("/in/Reasoning" in b for b in bares)


def test_true_edit_first_or_shuffled():
    record = make_record(3)
    first = edit_examples(record, distractors_of(3, 50), options(seed=1))
    multi = [ex for ex in first if ex.n_descriptors > 1]
    assert multi
    for ex in multi:
        assert f"1. {record.descriptor}\n" in user_text(ex)
    shuffled_positions = set()
    for seed in range(40):
        opts = options(seed=seed, descriptor_order="shuffled")
        for ex in edit_examples(record, distractors_of(3, 50), opts):
            if ex.with_edit:
                assert record.descriptor in user_text(ex)
            if ex.n_descriptors > 1:
                line = next(ln for ln in user_text(ex).splitlines() if record.descriptor in ln)
                shuffled_positions.add(line.split(".")[0])
    assert len(shuffled_positions) >= 2


def test_construction_depends_only_on_seed_and_record():
    a = edit_examples(make_record(5), distractors_of(5, 30), options(seed=4))
    b = edit_examples(make_record(5), distractors_of(5, 30), options(seed=4))
    c = edit_examples(make_record(5), distractors_of(5, 30), options(seed=5))
    assert a == b
    assert [e.messages for e in a] != [e.messages for e in c] or len(a) == 0


def test_no_out_of_scope_ablation():
    examples = build(30, options(out_of_scope=False))
    assert not any(ex.capability == OUT_OF_SCOPE for ex in examples)


def test_data_original_answer_by_question():
    r = make_record(2)
    assert data_original_answer(r, r.prompt) == "City2"
    assert data_original_answer(r, r.rephrase_prompts[1]) == "City2"
    assert data_original_answer(r, "What is the job of Person2?") == "Job2"
    assert data_original_answer(r, r.portability["Reasoning"][0].prompt) is None


def test_linguistic_examples_keep_the_original_response():
    unrelated = [make_record(i).descriptor for i in range(10)]
    instructions = [(str(k), QA(f"Write a haiku number {k}.", [f"haiku {k}"])) for k in range(50)]
    examples = linguistic_examples(instructions, unrelated, options(), source="ins")
    assert len(examples) == 100
    for ex in examples:
        assert ex.capability == LINGUISTIC
        k = ex.id.split(":")[1].split("/")[0]
        assert ex.messages[-1]["content"] == f"haiku {k}"
        if ex.with_edit:
            assert any(d in user_text(ex) for d in unrelated)
        else:
            assert user_text(ex) == f"Write a haiku number {k}."


def test_distractors_are_nearest_other_subjects():
    records = [make_record(i) for i in range(40)]
    # a second edit of Person0: the same subject must never be its distractor
    same = EditRecord("40", "person0", "What is the job of Person0?", "Pilot", ["Job0"],
                      source="t")
    records.append(same)
    embedder = make_embedder(EmbedderConfig(name="hashing"))
    found = retrieve_distractors(records, embedder.encode, k=5)
    assert set(found) == {record_key(r) for r in records}
    for r in records:
        ds = found[record_key(r)]
        assert len(ds) == 5 and len(set(ds)) == 5
        others = {x.descriptor for x in records if subject_key(x.subject) != subject_key(r.subject)}
        assert set(ds) <= others
    # the nearest other question by the retriever comes first
    vecs = embedder.encode([r.prompt for r in records])
    sims = vecs @ vecs[0]
    order = [j for j in sims.argsort()[::-1] if subject_key(records[j].subject) != "person0"]
    assert found[record_key(records[0])][0] == records[order[0]].descriptor


def test_leakage_drop_counts_per_file_and_dedupe():
    records = [make_record(i) for i in range(10)] + [make_record(3)]
    evals = {"a.json": {"person1", "person2"}, "b.json": {"person2", "person9"}}
    kept, dropped, total = drop_leakage(records, evals)
    assert dropped == {"a.json": 2, "b.json": 2} and total == 3
    assert {r.subject for r in kept} == {f"Person{i}" for i in (0, 3, 4, 5, 6, 7, 8)}
    unique, dups = dedupe_records(kept)
    assert dups == 1 and len(unique) == 7


def test_questions_to_answer_cover_every_bare_question():
    opts = options()
    records = [make_record(i) for i in range(30)]
    instructions = [("0", QA("Say hi.", ["hi"]))]
    questions = set(questions_to_answer(records, instructions, opts))
    for r in records:
        for ex in edit_examples(r, [], opts):
            if not ex.with_edit:
                assert user_text(ex) in questions
    assert "Say hi." in questions
    portability = records[0].portability["Reasoning"][0].prompt
    assert portability in questions  # with model answers portability gets a bare twin too


def test_continuation_and_instruction_caps():
    r = EditRecord("0", "ann", "This is a passage about ann. Ann was born in 1900. She sang. "
                   "She died in 1990.", "She also danced.", source="bio")
    [(key, qa)] = continuation_instructions([r])
    assert qa.answer == "She died in 1990." and qa.prompt.endswith("She sang.")
    groups = [("a", [(str(i), QA(f"q{i}", ["x"])) for i in range(100)]),
              ("b", [("0", QA("q", ["x"]))])]
    capped = cap_instructions(groups, 10, seed=0)
    assert [len(g) for _, g in capped] == [10, 1]
    assert capped == cap_instructions(groups, 10, seed=0)


@pytest.fixture(scope="module")
def tokenizer():
    from lte.modeling.tiny import train_tokenizer

    texts = [t for i in range(200) for t in (make_record(i).descriptor, f"City{i}", f"Job{i}")]
    return train_tokenizer(texts + [editing_prompt("q", ["a", "b"])], vocab_size=600)


def test_labels_cover_exactly_the_answer_tokens(tokenizer):
    examples = build(20)
    table = Tokenize(tokenizer)(examples_table(examples))
    rows = table.to_pylist()
    assert len(rows) == len(examples)
    for row, ex in zip(rows, examples, strict=True):
        ids, labels = row["input_ids"], row["labels"]
        assert len(ids) == len(labels)
        answer_pos = [i for i, lab in enumerate(labels) if lab != IGNORE_INDEX]
        start = answer_pos[0]
        assert answer_pos == list(range(start, len(ids)))  # one contiguous tail
        assert [ids[i] for i in answer_pos] == [labels[i] for i in answer_pos]
        assert ids[-1] == tokenizer.eos_token_id
        messages = json.loads(row["messages"])
        answer = messages[-1]["content"]
        assert tokenizer.decode(ids[start:-1]).strip() == answer
        if not ex.with_edit:  # everything before the answer is the chat-templated question
            prefix = tokenizer(chat_prefix(tokenizer, user_text(ex), []),
                               add_special_tokens=False)["input_ids"]
            assert ids[:start] == prefix
