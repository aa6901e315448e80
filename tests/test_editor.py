"""LTEEditor: prompts, retrieval, left-padded teacher-forced scoring and generation."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from eval_support import WordMemory, make_editor, make_records, tiny_model, tiny_tokenizer

from lte import prompts
from lte.editor import LTEEditor
from lte.modeling.batching import left_pad

torch.set_num_threads(2)


class ShiftModel(torch.nn.Module):
    """Predicts token t+1 after token t wherever it is, so accuracies can be computed by hand."""

    def __init__(self, vocab: int = 50, keeps_logits: bool = True):
        super().__init__()
        self.vocab = vocab
        self.w = torch.nn.Parameter(torch.zeros(1))
        if not keeps_logits:
            self.forward = self._forward_all

    def forward(self, input_ids, attention_mask=None, position_ids=None, logits_to_keep=0):
        logits = torch.nn.functional.one_hot((input_ids + 1) % self.vocab, self.vocab).float()
        if logits_to_keep:
            logits = logits[:, -logits_to_keep:]
        return SimpleNamespace(logits=logits)

    def _forward_all(self, input_ids, attention_mask=None, position_ids=None):
        return SimpleNamespace(logits=torch.nn.functional.one_hot(
            (input_ids + 1) % self.vocab, self.vocab).float())


@pytest.fixture(scope="module")
def editor():
    return make_editor(tiny_model(), tiny_tokenizer(), WordMemory(), batch_size=3)


def test_left_pad_positions_count_real_tokens_only():
    ids, mask, pos = left_pad([[5, 6, 7], [9]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 9]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert pos.tolist() == [[0, 1, 2], [0, 0, 0]]


@pytest.mark.parametrize("keeps_logits", [True, False])
def test_predict_pairs_hand_computed_with_padding_and_multi_token_targets(keeps_logits):
    ed = make_editor(ShiftModel(keeps_logits=keeps_logits),
                   SimpleNamespace(pad_token_id=0, eos_token_id=1), None, batch_size=8)
    pairs = [([5, 6, 7], [8, 9, 3]),      # 7->8 ok, 8->9 ok, 9->10 != 3: 2/3
             ([20], [21]),                 # 1/1
             ([30, 31], [40, 33, 34, 35]),  # 31->32 != 40, 40->41 != 33, 33->34 ok, 34->35 ok
             ([10, 11], [])]               # empty target: undefined
    preds = ed.predict_pairs(pairs)
    assert [p.accuracy for p in preds] == [pytest.approx(2 / 3), 1.0, 0.5, None]
    assert preds[0].predicted == [8, 9, 10]
    assert preds[2].predicted == [32, 41, 34, 35]
    assert preds[3].predicted == []


def test_padded_batch_equals_unbatched_scoring(editor):
    recs = make_records(6)
    qs = [r.prompt for r in recs] + [r.rephrase_prompts[0] for r in recs[:3]]
    ts = [r.target_new for r in recs] + ["x", "a much longer target answer here", "Rome"]
    descs = [[r.descriptor] for r in recs] + [[], [recs[0].descriptor, recs[1].descriptor], []]
    batched = make_editor(editor.model, editor.tokenizer, None, batch_size=16)
    single = make_editor(editor.model, editor.tokenizer, None, batch_size=1)
    b = batched.predict_tokens(qs, ts, descs)
    s = single.predict_tokens(qs, ts, descs)
    assert [p.predicted for p in b] == [p.predicted for p in s]
    assert [p.target for p in b] == [p.target for p in s]


def test_padded_logits_match_unbatched_logits(editor):
    tok = editor.tokenizer
    seqs = [prompts.prompt_and_target_ids(tok, q, d, "")[0]
            for q, d in [("Where?", []), ("Who wrote it?", ["A long descriptor here."])]]
    ids, mask, pos = left_pad(seqs, editor.pad_id)
    with torch.no_grad():
        batched = editor.model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        for i, s in enumerate(seqs):
            alone = editor.model(input_ids=torch.tensor([s])).logits[0]
            torch.testing.assert_close(batched[i, -len(s):], alone, atol=1e-5, rtol=1e-4)


def test_padded_batch_equals_unbatched_generation(editor):
    qs = ["Where?", "Who wrote the very long book about Person1 Zorb?", "Why?"]
    ids = [editor.prompt_ids(q, []) for q in qs]
    batched = make_editor(editor.model, editor.tokenizer, None, batch_size=8).generate_ids(ids, 6)
    single = make_editor(editor.model, editor.tokenizer, None, batch_size=1).generate_ids(ids, 6)
    assert batched == single
    assert all(len(g) <= 6 for g in batched)
    forced = editor.generate_ids(ids, 7, min_new_tokens=7)
    assert [len(g) for g in forced] == [7, 7, 7]


def test_prompt_matches_alignment_tokenization(editor):
    q, d, t = "Where was X born?", ["Where was X born? Rome"], "Rome"
    text = editor.build_prompt(q, d)
    assert "[Updated Information]:\nWhere was X born? Rome\n\n[Question]:\nWhere was X born?" in text
    ids, labels = prompts.tokenize_chat(editor.tokenizer, prompts.user_messages(q, d)
                                        + [{"role": "assistant", "content": t}])
    prompt_ids = editor.prompt_ids(q, d)
    assert ids[:len(prompt_ids)] == prompt_ids
    assert all(x == prompts.IGNORE_INDEX for x in labels[:len(prompt_ids)])


def test_edit_retrieve_forget_and_answer_use_memory():
    recs = make_records(4)
    ed = make_editor(tiny_model(), tiny_tokenizer(), WordMemory(), top_k=1, batch_size=2)
    ids = ed.edit(recs)
    hits = ed.retrieve([r.prompt for r in recs], k=2)
    assert [h[0].id for h in hits] == ids
    descs, hits = ed.contexts([recs[2].prompt], k=3)
    assert descs == [[recs[2].descriptor]] and len(hits[0]) == 3
    answers = ed.answer([recs[2].prompt, recs[3].prompt])
    assert answers[0].hits[0].id == ids[2] and isinstance(answers[0].text, str)
    # Retrieved context changes the scores: the same call with the gold context agrees.
    assert ed.score(recs[2].prompt, recs[2].target_new) == ed.score(
        [recs[2].prompt], [recs[2].target_new], [[recs[2].descriptor]])
    assert ed.forget(ids[:2]) == 2
    assert ids[0] not in [h.id for h in ed.retrieve(recs[0].prompt, k=4)[0]]


def test_from_config_creates_then_reopens_a_memory(tmp_path):
    from lte.config import EditorConfig, EmbedderConfig, MemoryConfig

    cfg = EditorConfig(memory=MemoryConfig(embedder=EmbedderConfig(name="hashing"), top_k=2),
                       memory_dir=str(tmp_path / "mem"), batch_size=4)
    ed = LTEEditor.from_config(cfg, model=tiny_model(), tokenizer=tiny_tokenizer())
    assert ed.top_k == 2 and ed.batch_size == 4
    ids = ed.edit(make_records(3))
    ed.memory.close()
    again = LTEEditor.from_config(cfg, model=ed.model, tokenizer=ed.tokenizer)
    assert [h[0].id for h in again.retrieve([r.prompt for r in make_records(3)])] == ids
    again.memory.close()
