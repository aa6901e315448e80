"""The paper's baselines as eval methods: ROME, ICE, FT-L/FT-M (EasyEdit's layers), fluency."""

from __future__ import annotations

import pytest
import torch
from eval_support import make_editor, make_records, tiny_model, tiny_tokenizer

from lte.config import FTLConfig, ROMEConfig
from lte.data.record import EditRecord
from lte.eval import hparams
from lte.prompts import RAW

torch.set_num_threads(1)


def test_easyedit_layers_scale_to_depth():
    # LLaMA FT layer 21 of 32 -> 2 of 3; ROME layer 5 of 32 -> 0 of 3; 32 layers unchanged.
    assert hparams.scaled_layer(21, 3) == 2
    assert hparams.scaled_layer(5, 3) == 0
    assert hparams.scaled_layer(21, 32) == 21
    assert hparams.scaled_layer(31, 40) == 39
    model = tiny_model()  # a 2-layer LLaMA
    assert hparams.resolve_layer(None, model, "ft_layer") == 1
    assert hparams.resolve_layer(-1, model, "ft_layer") == 1
    assert hparams.resolve_layer(0, model, "rome_layer") == 0
    assert hparams.ft_norm_constraint(None, model) == 0.0  # LLaMA: none
    assert hparams.ft_norm_constraint(5e-5, model) == 5e-5


def test_ft_m_is_the_target_new_objective_and_ft_l_the_configured_one():
    from lte.eval.ftl import FTL

    ed = make_editor(tiny_model(), tiny_tokenizer(), None)
    assert FTL(ed, FTLConfig(), name="ft-m").objective == "target_new"
    assert FTL(ed, FTLConfig(), name="ft-l").objective == "prompt_last"


def test_ice_puts_the_cases_own_fact_before_the_question_in_raw_text():
    from lte.eval.ice import ICE

    tok = tiny_tokenizer()
    ice = ICE(make_editor(tiny_model(), tok, None))
    rec = make_records(2)
    descs, hits = ice.contexts(["q1", "q2"], rec, 5)
    assert descs == [[rec[0].descriptor], [rec[1].descriptor]] and hits == [[], []]
    ids, _ = ice.fmt.encode(tok, "Who is it?", descs[0], "")
    assert tok.decode(ids, skip_special_tokens=True).strip() == (
        f"New Fact: {rec[0].prompt} {rec[0].target_new}\nPrompt: Who is it?")
    assert ice.insert(rec) == {}


@pytest.fixture(scope="module")
def shipped():
    from lte.modeling.load import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer("lte:tiny")
    return make_editor(model, tok, None)


def _argmax(editor, question, target):
    return editor.predict_pairs([RAW.encode(editor.tokenizer, question, [], target)])[0]


def test_one_rome_edit_makes_the_target_the_argmax_and_keeps_an_unrelated_prompt(
        shipped, tmp_path):
    from lte.data.readers import read_records
    from lte.data.synth import write_world
    from lte.eval.rome import ROME

    tok = shipped.tokenizer
    world = read_records(str(write_world(tmp_path / "w.json", 30, seed=5)))
    rome = ROME(shipped, ROMEConfig(context_templates=[[5, 2]]), seed=0)
    rome.prepare(world)  # key covariance on the world's own text
    # The scratch model has no subject -> answer recall to rewrite (it copies from context),
    # so the prompt ends in the subject and the target is one token: what ROME's update itself
    # must achieve at the subject's last token.
    prompt, subject = "The home of Zorbax Quell", "Zorbax Quell"
    target = next(w[1:] for w in sorted(tok.get_vocab())
                  if w.startswith("Ġ") and len(w) > 6 and w[1:].isalpha()
                  and len(RAW.encode(tok, prompt, [], w[1:])[1]) == 1)
    unrelated = world[0].locality and next(iter(world[0].locality.values()))[0]
    question = unrelated.prompt if unrelated else "Who wrote the book?"
    own = tok.decode(shipped.generate_ids([RAW.encode(tok, question, [], "")[0]], 4)[0])
    before = _argmax(shipped, question, own or "the")
    assert _argmax(shipped, prompt, target).accuracy == 0.0
    w0 = rome.module.weight.detach().clone()
    rome.insert([EditRecord("z", subject, prompt, target)])
    assert _argmax(shipped, prompt, target).accuracy == 1.0
    assert _argmax(shipped, question, own or "the").predicted == before.predicted
    changed = [n for n, p in shipped.model.named_parameters()
               if p.data_ptr() == rome.module.weight.data_ptr()]
    assert len(changed) == 1 and torch.linalg.matrix_rank(rome.module.weight - w0) == 1
    rome.reset()
    assert torch.equal(rome.module.weight, w0)
    assert _argmax(shipped, prompt, target).accuracy == 0.0


@pytest.mark.parametrize("update_key", ["bare", "templates"])
def test_rome_writes_the_new_value_at_the_key_its_update_key_names(shipped, tmp_path, update_key):
    from lte.data.readers import read_records
    from lte.data.synth import write_world
    from lte.eval.rome import ROME

    world = read_records(str(write_world(tmp_path / "w.json", 20, seed=3)))
    rome = ROME(shipped, ROMEConfig(context_templates=[[5, 2]], v_steps=3,
                                    update_key=update_key), seed=0)
    rome.prepare(world)
    t = rome.value(world[0])
    assert not torch.allclose(t.k_star, t.k_bare)  # the templates move the key
    rome.rewrite(t)
    w = rome.module.weight.float()
    solved, other = (t.k_star, t.k_bare) if update_key == "templates" else (t.k_bare, t.k_star)
    scale = t.v_star.norm()
    assert (w @ solved - t.v_star).norm() / scale < 1e-4  # W' k = v* at the named key
    assert (w @ other - t.v_star).norm() / scale > 1e-3  # and only there
    rome.reset()


def test_reference_fluency_is_seeded_per_case_and_counts_the_prompt(shipped):
    from lte.modeling.sampling import sample_texts

    tok = shipped.tokenizer
    a = sample_texts(shipped.model, tok, ["Who is Ann?", "Who is Bob?"], ["1", "2"], 20, seed=0)
    b = sample_texts(shipped.model, tok, ["Who is Bob?"], ["2"], 20, seed=0)
    assert a[1] == b[0]  # a case's text does not depend on what else is scored
    assert a[0].strip().startswith("Who is Ann?")  # the prompt is part of the scored text
    assert len(tok(a[0])["input_ids"]) <= 20 + 1  # 20 tokens in total (re-tokenizing may merge)
    c = sample_texts(shipped.model, tok, ["Who is Ann?"], ["1"], 20, seed=1)
    assert c[0] != a[0]


def test_reference_single_wording_is_a_switch():
    from lte import prompts
    from lte.config import EvalConfig

    text = prompts.editing_prompt("Q?", ["P T"], variant="reference_single")
    assert text == ("Please acknowledge the updated information provided below and respond to "
                    "the subsequent query.\n\n[Updated Information]:\nP T\n\n[Query]:\nQ?")
    assert prompts.editing_prompt("Q?", ["P T"]) != text  # training wording by default
    assert EvalConfig(prompt_variant="reference_single").prompt_variant == "reference_single"
    from lte.errors import UserError

    with pytest.raises(UserError):
        EvalConfig(prompt_variant="mine")


def _target_logprob(editor, fmt, question, target):
    """Mean teacher-forced log-prob of the target's tokens after `question`."""
    prompt, t_ids = fmt.encode(editor.tokenizer, question, [], target)
    with torch.no_grad():
        logits = editor.model(input_ids=torch.tensor([prompt + t_ids[:-1]])).logits[0]
    lp = torch.log_softmax(logits[len(prompt) - 1:], -1)
    return lp[torch.arange(len(t_ids)), torch.tensor(t_ids)].mean().item()


def _next_tokens(editor, prompts):
    with torch.no_grad():
        return [editor.model(input_ids=torch.tensor([p])).logits[0, -1].argmax().item()
                for p in prompts]


@pytest.mark.data
def test_rome_on_a_real_zsre_edit_finds_the_subject_and_raises_the_target(shipped, shared_data):
    from lte.data.readers import read_records
    from lte.eval.rome import ROME, subject_last_in_ids
    from lte.prompts import CHAT

    tok = shipped.tokenizer
    records = read_records(str(shared_data / "knowedit" / "ZsRE-test-all.json"))
    edit = records[0]  # Which family does Epaspidoceras belong to? -> Noctuidae
    # The key is read at the subject's last token however the prompt is templated.
    for fmt in (RAW, CHAT):
        ids = fmt.encode(tok, edit.prompt, [], "")[0]
        at = subject_last_in_ids(tok, ids, edit.subject)
        assert tok.decode(ids[:at + 1]).endswith(edit.subject)
        assert not tok.decode(ids[:at]).endswith(edit.subject)
    rome = ROME(shipped, ROMEConfig(layer=0, context_templates=[[5, 2]]), seed=0)
    rome.prepare(records[:50])
    unrelated = [RAW.encode(tok, r.prompt, [], "")[0] for r in records[1:6]]
    before = _target_logprob(shipped, RAW, edit.prompt, edit.target_new)
    answers = _next_tokens(shipped, unrelated)
    rome.insert([edit])
    # The 3-layer scratch model reads little of the subject's position at the answer (see the
    # README), so a real multi-token ZsRE target rises without becoming the argmax.
    assert _target_logprob(shipped, RAW, edit.prompt, edit.target_new) > before + 1.0
    assert _next_tokens(shipped, unrelated) == answers  # other subjects' answers stay
    rome.reset()
    assert _target_logprob(shipped, RAW, edit.prompt, edit.target_new) == pytest.approx(before)
