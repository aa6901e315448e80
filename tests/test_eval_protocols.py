"""Protocol ordering: what is in memory when each case is scored; FT-L applies and undoes."""

from __future__ import annotations

import pytest
import torch
from eval_support import WordMemory, make_editor, make_records, tiny_model, tiny_tokenizer

from lte.config import EvalConfig, FTLConfig, ModelConfig
from lte.eval import protocols
from lte.eval.ftl import FTL
from lte.eval.methods import GoldContext, NoEdit, RetrievalMethod
from lte.eval.metrics import CaseResult
from lte.eval.scoring import ScoreOptions, pre_edit_locality, score_cases

torch.set_num_threads(2)


def options(**fields) -> ScoreOptions:
    return ScoreOptions.from_config(EvalConfig(**fields))


@pytest.fixture
def recorded(monkeypatch):
    """Replace scoring by a log of (case ids scored, edits in memory at that moment)."""
    log = []

    def fake_score(method, records, ids, pre, opts):
        log.append(([r.case_id for r in records], len(method.editor.memory),
                    sorted(ids), opts.fluency_cases))
        return [CaseResult(r.case_id, edit_succ=1.0) for r in records], 2.0

    monkeypatch.setattr(protocols, "score_cases", fake_score)
    return log


@pytest.fixture(scope="module")
def editor():
    return make_editor(tiny_model(), tiny_tokenizer(), WordMemory(), batch_size=8)


def test_sequential_scores_each_case_right_after_its_insert_then_all(recorded, editor):
    recs = make_records(4)
    method = RetrievalMethod("lte", editor)
    phases = protocols.run_protocol("sequential", method, recs, {}, options(fluency_cases=2))
    assert [(p.protocol, p.phase) for p in phases] == [("sequential", "after_insert"),
                                                        ("sequential", "after_stream")]
    # Case i is scored with exactly i+1 edits stored; then all four with four stored.
    assert [entry[:2] for entry in recorded] == [
        (["0"], 1), (["1"], 2), (["2"], 3), (["3"], 4), (["0", "1", "2", "3"], 4)]
    assert recorded[2][2] == ["0", "1", "2"]  # memory ids known for hit@k
    assert [entry[3] for entry in recorded[:4]] == [2, 2, 0, 0]  # fluency on first 2 only
    assert len(editor.memory) == 0  # reset afterwards
    assert phases[0].metrics()["edit_succ"] == 1.0 and len(phases[1].cases) == 4


def test_single_holds_one_edit_and_batch_holds_all(recorded, editor):
    recs = make_records(3)
    method = RetrievalMethod("lte", editor)
    (single,) = protocols.run_protocol("single", method, recs, {}, options())
    assert [entry[:2] for entry in recorded] == [(["0"], 1), (["1"], 1), (["2"], 1)]
    assert single.metrics()["latency_ms"] == 2.0
    recorded.clear()
    (batch,) = protocols.run_protocol("batch", method, recs, {}, options())
    assert [entry[:2] for entry in recorded] == [(["0", "1", "2"], 3)]
    assert batch.n_edits == 3 and batch.metrics()["edit_time_ms"] >= 0
    assert len(editor.memory) == 0


def test_reset_forgets_only_the_methods_own_edits(editor):
    keep = editor.edit(make_records(1))
    method = RetrievalMethod("lte", editor)
    method.insert(make_records(3)[1:])
    method.reset()
    assert len(editor.memory) == 1
    editor.forget(keep)


def test_scoring_gold_context_beats_nothing_only_through_context(editor):
    """Real scoring: gold-context and lte with perfect retrieval see identical prompts."""
    recs = make_records(3)
    pre = pre_edit_locality(editor, recs)
    opts = options(fluency_cases=1, fluency_tokens=8, model=ModelConfig(max_new_tokens=4))
    lte = RetrievalMethod("lte", editor)
    ids = lte.insert(recs)
    lte_res, latency = score_cases(lte, recs, ids, pre, opts)
    gold_res, _ = score_cases(GoldContext(editor), recs, {}, pre, opts)
    lte.reset()
    none_res, _ = score_cases(NoEdit(editor), recs, {}, pre, opts)
    assert [r.edit_succ for r in lte_res] == [r.edit_succ for r in gold_res]
    assert [r.hit1 for r in lte_res] == [1.0, 1.0, 1.0] and gold_res[0].hit1 is None
    # No context at all: the locality questions are asked exactly as before the edit.
    assert all(v == 1.0 for r in none_res for vals in r.locality.values() for v in vals)
    assert lte_res[0].fluency is not None and lte_res[1].fluency is None
    assert set(lte_res[0].portability) == {"Reasoning"}
    assert len(lte_res[0].rephrase) == len(recs[0].rephrase_prompts)
    assert latency > 0


def test_ftl_changes_one_matrix_within_the_constraint_and_reset_restores():
    model = tiny_model(seed=1)
    ed = make_editor(model, tiny_tokenizer(), None, batch_size=4)
    ftl = FTL(ed, FTLConfig(steps=3, lr=1e-2, norm_constraint=1e-3))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ftl.insert(make_records(2))
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert changed == ["model.layers.1.mlp.down_proj.weight"]
    delta = (ftl.param - before[changed[0]]).abs().max().item()
    assert 0 < delta <= 1e-3 + 1e-7
    assert all(p.requires_grad for p in model.parameters())  # flags restored
    ftl.reset()
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_ftl_target_new_objective_raises_the_target_accuracy():
    model = tiny_model(seed=2)
    ed = make_editor(model, tiny_tokenizer(), None, batch_size=4)
    rec = make_records(1)
    ftl = FTL(ed, FTLConfig(steps=30, lr=5e-2, norm_constraint=0, objective="target_new"))
    before = ed.score([rec[0].prompt], [rec[0].target_new], [[]])[0]
    ftl.insert(rec)
    after = ed.score([rec[0].prompt], [rec[0].target_new], [[]])[0]
    assert after > before
    ftl.reset()
    assert ed.score([rec[0].prompt], [rec[0].target_new], [[]])[0] == before
