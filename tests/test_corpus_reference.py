"""`recipe: reference` (the authors' notebook rules) and the text leakage filter, as pure functions."""

from __future__ import annotations

from collections import Counter

import numpy as np

from lte.config import CorpusConfig
from lte.corpus.construct import IN_SCOPE, OUT_OF_SCOPE, ConstructOptions
from lte.corpus.leakage import SubjectMatcher, TextLeakage, filter_record
from lte.corpus.reference_recipe import (
    BALANCE_ABOVE,
    COUNTERFACT,
    RECENT,
    WIKIBIO,
    ZSRE,
    ZSRE_MAX_EXAMPLES,
    questions_without_answers,
    reference_distractors,
    reference_examples,
    select_records,
)
from lte.data.record import QA, EditRecord


def zsre(i: int, source: str = "zsre") -> EditRecord:
    return EditRecord(str(i), f"Person{i}", f"Where does Person{i} live?", f"City{i + 1}",
                      [f"City{i}"], [f"Person{i} lives in which city?"],
                      locality={"NQ": [QA(f"Who wrote book {i}?", [f"Author{i}"])]},
                      source=source)


def knowedit(i: int, source: str, kinds: int = 1, with_gt: bool = True,
             n_loc: int = 5) -> EditRecord:
    return EditRecord(
        str(i), f"Thing{i}", f"The colour of Thing{i} is", f"red{i}",
        [f"blue{i}"] if with_gt else [],
        portability={f"P{k}": [QA(f"Thing{i} has the colour of which flag? {k}", [f"F{i}"])]
                     for k in range(kinds)},
        locality={"Relation_Specificity": [QA(f"Thing{i} is made of {j}", [f"wood{j}"])
                                           for j in range(n_loc)]},
        source=source)


def wikibio(i: int) -> EditRecord:
    return EditRecord(str(i), f"person {i}", f"Person {i} was a singer.", f"Person {i} sang.",
                      locality={"Relation_Specificity": [QA(f"Q{i}.{j}", [f"A{j}"])
                                                         for j in range(3)]},
                      source="bio")


def test_zsre_rule_30_70_with_twins_and_the_example_cap():
    opts = ConstructOptions.from_config(CorpusConfig())
    records = [zsre(i) for i in range(1500)]
    kept, stats = select_records(records, {"zsre": ZSRE}, opts)
    assert len(kept) == ZSRE_MAX_EXAMPLES // 4  # 2 in-scope + 2 out-of-scope examples each
    kinds = stats["zsre"]["in_scope_questions"]
    assert abs(kinds["rewrite"] / len(kept) - 0.3) < 0.05
    assert kinds["rewrite"] + kinds["paraphrase"] == len(kept)
    for r in kept[:50]:
        ex = reference_examples(r, ZSRE, [], opts)
        caps = Counter((e.capability, e.with_edit) for e in ex)
        assert caps == {(IN_SCOPE, True): 1, (IN_SCOPE, False): 1, (OUT_OF_SCOPE, True): 1,
                        (OUT_OF_SCOPE, False): 1}
        bare_in = next(e for e in ex if e.capability == IN_SCOPE and not e.with_edit)
        assert bare_in.messages[-1]["content"] == r.ground_truth[0]


def test_counterfact_rule_rewrite_or_portability_sorted_and_balanced():
    opts = ConstructOptions.from_config(CorpusConfig())
    records = [knowedit(i, "cf", kinds=1 + i % 3) for i in range(3000)]
    kept, _ = select_records(records, {"cf": COUNTERFACT}, opts)
    assert [len(r.portability) for r in kept] == sorted((len(r.portability) for r in kept),
                                                         reverse=True)
    with_in = with_out = 0
    for r in kept:
        ex = [e for e in reference_examples(r, COUNTERFACT, [], opts) if e.with_edit]
        ins = [e for e in ex if e.capability == IN_SCOPE]
        rewrite = any(e.id.endswith("/in/q/edit") for e in ins)
        assert rewrite != any("/in/P" in e.id for e in ins)  # the rewrite or the portability
        with_in += len(ins)
        with_out += len(ex) - len(ins)
    assert with_in > BALANCE_ABOVE
    # one question on each side per record: the counts balance at every record, so the rule
    # stops at the first record after the in-scope count passes 1,200
    balanced = [knowedit(i, "cf", kinds=1, n_loc=1) for i in range(3000)]
    kept_balanced, stats = select_records(balanced, {"cf": COUNTERFACT}, opts)
    assert len(kept_balanced) == BALANCE_ABOVE + 1
    assert stats["cf"]["records_used"] == BALANCE_ABOVE + 1
    # portability questions have no bare answer in the files: a twin only from the model
    r = next(r for r in kept if any("/in/P" in e.id for e in
                                    reference_examples(r, COUNTERFACT, [], opts)))
    assert not [e for e in reference_examples(r, COUNTERFACT, [], opts)
                if "/in/P" in e.id and not e.with_edit]
    model = reference_examples(r, COUNTERFACT, [], opts, lambda _r, q: "model")
    assert [e.messages[-1]["content"] for e in model if "/in/P" in e.id and not e.with_edit]
    assert r.portability["P0"][0].prompt in questions_without_answers([r], {"cf": COUNTERFACT},
                                                                      opts)


def test_recent_and_wikibio_keep_their_out_of_scope_side():
    opts = ConstructOptions.from_config(CorpusConfig())
    r = knowedit(1, "recent", kinds=2, with_gt=False)
    ex = reference_examples(r, RECENT, [], opts)
    outs = [e for e in ex if e.capability == OUT_OF_SCOPE]
    assert len(outs) == 2 * 3  # 3 locality questions of the kind, with and without the edit
    assert all(e.with_edit for e in ex if e.capability == IN_SCOPE)  # answers: data
    records = [wikibio(i) for i in range(300)]
    kept, _ = select_records(records, {"bio": WIKIBIO}, opts)
    assert len(kept) == 250
    ex = reference_examples(kept[0], WIKIBIO, [], opts, lambda _r, q: "model")
    assert Counter((e.capability, e.with_edit) for e in ex) == {
        (IN_SCOPE, True): 1, (IN_SCOPE, False): 1, (OUT_OF_SCOPE, True): 1,
        (OUT_OF_SCOPE, False): 1}


def test_one_draw_per_record_reused_and_the_true_fact_alone_when_short():
    opts = ConstructOptions.from_config(CorpusConfig())
    candidates = [f"other fact {k}" for k in range(4)]
    draws = Counter()
    for i in range(400):
        r = knowedit(i, "recent", kinds=2, with_gt=False)
        ex = [e for e in reference_examples(r, RECENT, candidates, opts) if e.with_edit]
        prompts = {e.messages[0]["content"].split("[Question]")[0] for e in ex}
        assert len(prompts) == 1  # the same descriptors for every question of the record
        draws[ex[0].n_descriptors] += 1
        assert {e.n_descriptors for e in ex} == {ex[0].n_descriptors}
        short = reference_examples(r, RECENT, candidates[:1], opts)
        assert all(e.n_descriptors in (0, 1) or e.n_descriptors == 2 for e in short)
        if ex[0].n_descriptors == 3:  # two distractors asked, one available: the fact alone
            assert all(e.n_descriptors in (0, 1) for e in short)
    assert abs(draws[1] / 400 - 0.5) < 0.08 and draws[2] and draws[3]


def test_distractors_keyed_on_descriptors_within_each_source():
    vocab: dict[str, int] = {}

    def encode(texts):
        vecs = np.zeros((len(texts), 64), dtype=np.float32)
        for row, t in enumerate(texts):
            for w in t.lower().split():
                vecs[row, vocab.setdefault(w, len(vocab)) % 64] += 1
        return vecs

    a = [EditRecord(str(i), f"S{i}", "The capital city of this place is", f"Town{i}", source="a")
         for i in range(6)]
    b = [EditRecord(str(i), f"T{i}", "The capital city of this place is", f"Town{i}",
                    source="b") for i in range(6)]
    same = EditRecord("9", "S0", "The capital city of this place is", "Elsewhere", source="a")
    out = reference_distractors([*a, *b, same], encode)
    for r in a:
        got = out[f"a:{r.case_id}"]
        assert 0 < len(got) <= 4
        assert all(d in {x.descriptor for x in a + [same]} for d in got)  # own source only
        assert r.descriptor not in got
    assert same.descriptor not in out["a:0"]  # the same subject is no distractor


def test_text_leakage_drops_questions_naming_an_evaluation_subject():
    matcher = SubjectMatcher(["Mark Isham", "People's Republic of China", "Go"])
    assert matcher.find("The official religion of Mark Isham is") == "mark isham"
    assert matcher.find("Mark Ishamson plays the piano") is None  # whole words only
    assert matcher.find("people's republic of china is located in") is not None
    assert matcher.find("Go is a board game") is None  # under 6 characters: subjects only
    r = EditRecord("1", "Tom Hanks", "Tom Hanks is a citizen of", "France", ["USA"],
                   ["Which country is Tom Hanks a citizen of?"],
                   portability={"R": [QA("Tom Hanks worked with Mark Isham in", ["film"])]},
                   locality={"N": [QA("The religion of Mark Isham is", ["Scientology"]),
                                   QA("The capital of Peru is", ["Lima"])]}, source="cf")
    leak = TextLeakage()
    kept = filter_record(r, matcher, leak)
    assert kept.locality == {"N": [QA("The capital of Peru is", ["Lima"])]}
    assert kept.portability == {} and kept.rephrase_prompts == r.rephrase_prompts
    assert leak.to_dict()["questions"] == {"cf": {"in_scope": 1, "out_of_scope": 1}}
    named = EditRecord("2", "Ann", "Ann composed with Mark Isham for", "Pixar", source="cf")
    assert filter_record(named, matcher, leak) is None
    assert leak.to_dict()["records"] == {"cf": 1}
    answer = EditRecord("3", "Bo", "Bo was born in", "Mark Isham", source="cf")  # an answer only
    assert filter_record(answer, matcher, leak) == answer
