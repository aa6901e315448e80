"""Each metric against hand-computed values (lte/eval/metrics.py)."""

from __future__ import annotations

import math

import pytest

from lte.eval import metrics as M


def test_token_accuracy_multi_token_and_empty():
    assert M.token_accuracy([8, 9, 10], [8, 9, 3]) == pytest.approx(2 / 3)
    assert M.token_accuracy([1], [1]) == 1.0
    assert M.token_accuracy([], []) is None
    with pytest.raises(ValueError):
        M.token_accuracy([1, 2], [1])


def test_locality_is_agreement_with_pre_edit_not_correctness():
    pre, post = [4, 5, 6, 7], [4, 5, 0, 7]
    assert M.agreement(pre, post) == pytest.approx(3 / 4)
    assert M.agreement(pre, pre) == 1.0


def test_n_gram_entropy_hand_computed():
    # bigrams of "a b a b": (a,b) x2, (b,a) x1 -> H2 = -(2/3 log2 2/3 + 1/3 log2 1/3);
    # trigrams: (a,b,a), (b,a,b) -> H3 = 1; entropy = mean(2/3 H2, 4/3 H3).
    h2 = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))
    expected = (2 / 3 * h2 + 4 / 3 * 1.0) / 2
    assert M.compute_n_gram_entropy("a b a b") == pytest.approx(expected)
    # Punctuation is a word of its own; a repeated word has zero entropy.
    assert M.compute_n_gram_entropy("x x x x x") == 0.0
    assert M.compute_n_gram_entropy("") == 0.0
    assert M.n_gram_entropy(["a b a b", "x x x x"]) == pytest.approx(expected / 2)
    assert M.n_gram_entropy([]) is None


def test_exact_match_any_alias_normalized():
    assert M.exact_match("The Eiffel Tower.", ["eiffel tower"]) == 1.0
    assert M.exact_match("Paris", ["Lyon", "paris"]) == 1.0
    assert M.exact_match("Paris, France", ["Paris"]) == 0.0


def test_hit_at_k():
    assert M.hit_at_k([3, 7, 9], 7, 1) == 0.0
    assert M.hit_at_k([3, 7, 9], 7, 2) == 1.0
    assert M.hit_at_k([], 7, 5) == 0.0


def test_aggregate_averages_per_case_then_over_cases_then_over_kinds():
    a = M.CaseResult("a", edit_succ=1.0, rephrase=[1.0, 0.0],
                     portability={"Reasoning": [1.0, 0.0, 0.5], "Subject_Aliasing": [1.0]},
                     locality={"Relation_Specificity": [1.0]}, fluency=5.0, gen_em=1.0,
                     hit1=1.0, hitk=1.0)
    b = M.CaseResult("b", edit_succ=0.5, rephrase=[],
                     portability={"Reasoning": [0.0]},
                     locality={"Relation_Specificity": [0.5, 0.0], "Forgetfulness": [1.0]},
                     fluency=None, gen_em=0.0, hit1=0.0, hitk=1.0)
    m = M.aggregate([a, b])
    assert m["edit_succ"] == pytest.approx(0.75)
    assert m["rephrase_succ"] == pytest.approx(0.5)  # case b has no rephrase: skipped
    # Reasoning: case a mean 0.5, case b 0.0 -> 0.25; Subject_Aliasing: only a -> 1.0.
    assert m["portability_Reasoning"] == pytest.approx(0.25)
    assert m["portability_Subject_Aliasing"] == pytest.approx(1.0)
    assert m["portability"] == pytest.approx((0.25 + 1.0) / 2)
    # Relation_Specificity: a 1.0, b 0.25 -> 0.625; Forgetfulness: b 1.0.
    assert m["locality_Relation_Specificity"] == pytest.approx(0.625)
    assert m["locality"] == pytest.approx((0.625 + 1.0) / 2)
    assert m["fluency"] == pytest.approx(500.0)  # x100, case b has no sample
    assert m["gen_em"] == 0.5 and m["retrieval_hit1"] == 0.5 and m["retrieval_hitk"] == 1.0


def test_aggregate_of_cases_without_kinds_reports_none():
    m = M.aggregate([M.CaseResult("a", edit_succ=1.0)])
    assert m["portability"] is None and m["locality"] is None and m["fluency"] is None


def test_repeated_case_ids_are_made_unique():
    from eval_support import make_records

    from lte.eval.run import unique_case_ids

    recs = make_records(2) + make_records(2)
    assert [r.case_id for r in unique_case_ids(recs)] == ["0", "1", "0#1", "1#1"]


def _two_cases():
    # a: Reasoning [1, 0, 0.5], Subject_Aliasing [1]; locality RS [1].
    # b: Reasoning [0]; locality RS [0.5, 0], Forgetfulness [1].
    a = M.CaseResult("a", edit_succ=1.0,
                     portability={"Reasoning": [1.0, 0.0, 0.5], "Subject_Aliasing": [1.0]},
                     locality={"Relation_Specificity": [1.0]})
    b = M.CaseResult("b", edit_succ=0.5, portability={"Reasoning": [0.0]},
                     locality={"Relation_Specificity": [0.5, 0.0], "Forgetfulness": [1.0]})
    return [a, b]


def test_aggregations_lte_knowedit_easyedit_by_hand():
    from lte.eval.aggregate import aggregate_as

    cases = _two_cases()
    lte = aggregate_as("lte", cases)
    # Every question: Reasoning = mean(mean(1,0,.5)=.5, 0) = .25; SA = 1 -> portability .625.
    # RS = mean(1, mean(.5, 0)=.25) = .625; F = 1 -> locality .8125.
    assert lte["portability_Reasoning"] == pytest.approx(0.25)
    assert lte["portability"] == pytest.approx(0.625)
    assert lte["locality"] == pytest.approx(0.8125)
    knowedit = aggregate_as("knowedit", cases)
    # First question only: Reasoning = mean(1, 0) = .5; SA = 1 -> .75.
    # RS = mean(1, .5) = .75; F = 1 -> .875.
    assert knowedit["portability_Reasoning"] == pytest.approx(0.5)
    assert knowedit["portability"] == pytest.approx(0.75)
    assert knowedit["locality_Relation_Specificity"] == pytest.approx(0.75)
    assert knowedit["locality"] == pytest.approx(0.875)
    easyedit = aggregate_as("easyedit", cases)
    # Kinds averaged within each case first: a: mean(.5, 1) = .75, b: 0 -> .375;
    # locality a: 1, b: mean(.25, 1) = .625 -> .8125 (per kind as lte's).
    assert easyedit["portability"] == pytest.approx(0.375)
    assert easyedit["locality"] == pytest.approx(0.8125)
    assert easyedit["portability_Reasoning"] == pytest.approx(0.25)
    for m in (lte, knowedit, easyedit):
        assert m["edit_succ"] == pytest.approx(0.75)
    with pytest.raises(ValueError):
        aggregate_as("mean-of-everything", cases)


def test_reference_fluency_uses_nltk_words_of_the_whole_text():
    # nltk: sentences, then Treebank words: "can't" -> ca / n't, the final period apart.
    words = M.nltk_words("I can't. I can't.")
    assert words == ["I", "ca", "n't", ".", "I", "ca", "n't", "."]
    # 7 bigrams: (I,ca) x2, (ca,n't) x2, (n't,.) x2, (.,I) x1.
    h2 = -(3 * (2 / 7 * math.log2(2 / 7)) + 1 / 7 * math.log2(1 / 7))
    # 6 trigrams: (I,ca,n't) x2, (ca,n't,.) x2, (n't,.,I), (.,I,ca).
    h3 = -(2 * (2 / 6 * math.log2(2 / 6)) + 2 * (1 / 6 * math.log2(1 / 6)))
    expected = (2 / 3 * h2 + 4 / 3 * h3) / 2
    got = M.compute_n_gram_entropy("I can't. I can't.", words=M.nltk_words)
    assert got == pytest.approx(expected)
    assert got != pytest.approx(M.compute_n_gram_entropy("I can't. I can't."))
