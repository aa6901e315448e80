"""Each model family's training string, written out literally, its token ids, and its loss mask.

The reference's formats (`llama-2`: FastChat's, `qwen`: `Qwen/finetune.py`'s ChatML with the system
turn) are installed by `lte.chat_formats`; today's families use their own templates. Tokenizers
are trained here with each family's special tokens (tests/chat_support.py).
"""

from __future__ import annotations

import pytest
from chat_support import FAMILIES, family_tokenizer

from lte.chat_formats import apply_chat_format
from lte.config import ModelConfig, load_config
from lte.errors import UserError
from lte.prompts import (
    IGNORE_INDEX,
    editing_prompt,
    prompt_and_target_ids,
    stop_token_ids,
    tokenize_chat,
    user_messages,
)

QUESTION = "Who is the employer of Latra Fisuk?"
EDIT = "Which company employs Latra Fisuk? Tapan Works"
ANSWER = "Tapan Works"
USER = editing_prompt(QUESTION, [EDIT])

# (the whole training string, the learned part: the answer and its end-of-turn token)
EXPECTED = {
    "llama-2": (f"<s>[INST] {USER} [/INST] {ANSWER} </s>", f" {ANSWER} </s>"),
    "qwen": ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
             f"<|im_start|>user\n{USER}<|im_end|>\n"
             f"<|im_start|>assistant\n{ANSWER}<|im_end|>\n", f"{ANSWER}<|im_end|>"),
    "llama-3.1": ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                  "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
                  f"<|start_header_id|>user<|end_header_id|>\n\n{USER}<|eot_id|>"
                  f"<|start_header_id|>assistant<|end_header_id|>\n\n{ANSWER}<|eot_id|>",
                  f"{ANSWER}<|eot_id|>"),
    "qwen2.5": ("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
                f"assistant.<|im_end|>\n<|im_start|>user\n{USER}<|im_end|>\n"
                f"<|im_start|>assistant\n{ANSWER}<|im_end|>\n", f"{ANSWER}<|im_end|>"),
    "qwen3": (f"<|im_start|>user\n{USER}<|im_end|>\n"
              f"<|im_start|>assistant\n<think>\n\n</think>\n\n{ANSWER}<|im_end|>\n",
              f"{ANSWER}<|im_end|>"),
    "mistral": (f"<s>[INST] {USER} [/INST]{ANSWER}</s>", f"{ANSWER}</s>"),
}


def _tokenizer(name: str):
    family = FAMILIES[name]
    tok = family_tokenizer(family, [EXPECTED[name][0], USER, ANSWER] * 5)
    return apply_chat_format(tok, family.chat_format)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_training_string_ids_and_loss_mask(name):
    tok = _tokenizer(name)
    text, learned = EXPECTED[name]
    messages = [*user_messages(QUESTION, [EDIT]), {"role": "assistant", "content": ANSWER}]
    ids, labels = tokenize_chat(tok, messages)

    assert tok.decode(ids) == text
    assert ids == tok(text, add_special_tokens=False)["input_ids"]
    counted = [i for i, lab in enumerate(labels) if lab != IGNORE_INDEX]
    assert counted == list(range(counted[0], counted[-1] + 1))  # one span
    assert [labels[i] for i in counted] == [ids[i] for i in counted]
    assert tok.decode([ids[i] for i in counted]) == learned
    assert text.startswith(tok.decode(ids[:counted[0]]) + learned)
    # Scoring sees the same prompt and the answer without its end of turn; generation stops there.
    prompt_ids, target_ids = prompt_and_target_ids(tok, QUESTION, [EDIT], ANSWER)
    assert prompt_ids == ids[:counted[0]]
    assert tok.decode(target_ids).strip() == ANSWER
    assert ids[counted[-1]] in stop_token_ids(tok)


def test_bare_question_has_no_editing_prompt():
    tok = _tokenizer("qwen")
    ids, _ = tokenize_chat(tok, [*user_messages(QUESTION, []),
                                 {"role": "assistant", "content": ANSWER}])
    assert tok.decode(ids) == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                               f"<|im_start|>user\n{QUESTION}<|im_end|>\n"
                               f"<|im_start|>assistant\n{ANSWER}<|im_end|>\n")


def test_llama2_system_message_goes_inside_the_first_inst():
    tok = _tokenizer("llama-2")
    text = tok.apply_chat_template([{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": "Hi"},
                                    {"role": "assistant", "content": "Hello"},
                                    {"role": "user", "content": "Bye"}], tokenize=False)
    assert text == "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello </s><s>[INST] Bye [/INST]"


def test_loader_installs_the_format_and_pads_qwen_v1(tmp_path):
    from lte.modeling.load import load_tokenizer

    family_tokenizer(FAMILIES["qwen"], [EXPECTED["qwen"][0]] * 3).save_pretrained(tmp_path)
    tok = load_tokenizer(str(tmp_path), "qwen")
    assert tok.pad_token == "<|endoftext|>"  # Qwen v1 has no EOS: its own script pads so
    assert tok.chat_template == apply_chat_format(tok, "qwen").chat_template
    with pytest.raises(UserError, match="model.chat_format"):
        load_tokenizer(str(tmp_path), "tokenizer")  # Qwen v1 ships no template


def test_a_format_needs_its_special_tokens():
    tok = family_tokenizer(FAMILIES["llama-2"], [EXPECTED["llama-2"][0]] * 3)
    with pytest.raises(UserError, match="<|im_start|>"):
        apply_chat_format(tok, "qwen")


def test_an_unknown_chat_format_is_refused_by_the_registry():
    # The config imports no stage, so the name is checked where the registry lives (the loader).
    from lte.chat_formats import apply_chat_format

    with pytest.raises(UserError, match="unknown chat format 'llama2'") as info:
        apply_chat_format(None, "llama2")
    assert info.value.field == "model.chat_format"
    assert load_config(ModelConfig, None, ["chat_format=qwen", "trust_remote_code=true"]
                       ).trust_remote_code is True


def test_presets_name_their_chat_format():
    from pathlib import Path

    from lte.config import AlignConfig, CorpusConfig, ServeConfig

    configs = Path(__file__).resolve().parents[1] / "configs"
    expected = {"llama2-7b-chat": ("llama-2", False), "qwen-7b-chat": ("qwen", True),
                "llama3.1-8b-instruct": ("tokenizer", False),
                "qwen2.5-7b-instruct": ("tokenizer", False)}
    corpus_of = {"llama2-7b-chat": "paper"}
    for preset, (fmt, remote) in expected.items():
        align = load_config(AlignConfig, configs / f"align/{preset}.yaml")
        corpus = load_config(CorpusConfig, configs / f"corpus/{corpus_of.get(preset, preset)}.yaml")
        serve = load_config(ServeConfig, configs / f"serve/{preset}.yaml")
        assert (align.model.chat_format, align.model.trust_remote_code) == (fmt, remote)
        assert (corpus.model.chat_format, corpus.model.trust_remote_code) == (fmt, remote)
        assert corpus.tokenizer == align.model.name_or_path == corpus.model.name_or_path
        # the aligned checkpoint's saved tokenizer carries the format it was trained with
        assert serve.model.chat_format == "tokenizer"
        assert serve.model.trust_remote_code == remote
