"""The editing prompt is DESIGN.md's byte for byte; tokenized chats count only the answer."""

from __future__ import annotations

import pytest

from lte.prompts import (
    IGNORE_INDEX,
    chat_prefix,
    editing_prompt,
    format_descriptors,
    prompt_and_target_ids,
    tokenize_chat,
    user_messages,
)

# Copied from DESIGN.md ("Editing prompt"), the paper's wording.
DESIGN_PROMPT = """Please acknowledge the updated information provided below and respond to the subsequent question.

[Updated Information]:
{descriptors}

[Question]:
{question}"""

EDIT = "Which company employs Latra Fisuk? Tapan Works"
OTHER = "What is the occupation of Sola Fimes? carpenter"
THIRD = "Where was Kase Pomen born? Limin"
QUESTION = "Who is the employer of Latra Fisuk?"


def test_single_descriptor_as_is():
    expected = (
        "Please acknowledge the updated information provided below and respond to the "
        "subsequent question.\n\n[Updated Information]:\n"
        "Which company employs Latra Fisuk? Tapan Works\n\n"
        "[Question]:\nWho is the employer of Latra Fisuk?"
    )
    assert editing_prompt(QUESTION, [EDIT]) == expected
    assert expected == DESIGN_PROMPT.format(descriptors=EDIT, question=QUESTION)
    assert editing_prompt(QUESTION, [EDIT]).encode() == expected.encode()


def test_several_descriptors_numbered_on_their_own_lines():
    got = editing_prompt(QUESTION, [EDIT, OTHER, THIRD])
    numbered = f"1. {EDIT}\n2. {OTHER}\n3. {THIRD}"
    assert got == DESIGN_PROMPT.format(descriptors=numbered, question=QUESTION)
    assert format_descriptors([EDIT, OTHER]) == f"1. {EDIT}\n2. {OTHER}"
    assert format_descriptors([EDIT]) == EDIT


def test_no_descriptor_gives_the_bare_question():
    assert editing_prompt(QUESTION, []) == QUESTION
    assert user_messages(QUESTION, []) == [{"role": "user", "content": QUESTION}]
    assert user_messages(QUESTION, [EDIT]) == [
        {"role": "user", "content": editing_prompt(QUESTION, [EDIT])}]


@pytest.fixture(scope="module")
def tokenizer():
    from lte.modeling.tiny import train_tokenizer

    texts = [editing_prompt(QUESTION, [EDIT, OTHER, THIRD]), OTHER, THIRD, "Tapan Works"] * 20
    return train_tokenizer(texts, vocab_size=400)


@pytest.fixture(params=["tiny", "llama-2"])
def chat_tokenizer(request, tokenizer):
    """The tiny model's own template, and the reference's Llama-2 format on the same vocabulary."""
    tok = tokenizer
    if request.param == "llama-2":
        import copy

        from lte.chat_formats import apply_chat_format

        tok = apply_chat_format(copy.deepcopy(tokenizer), "llama-2")
    return tok


def _ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("descs", [[], [EDIT], [EDIT, OTHER]])
def test_tokenize_chat_labels_cover_exactly_the_answer_and_eos(chat_tokenizer, descs):
    tok = chat_tokenizer
    answer = "Tapan Works"
    messages = [*user_messages(QUESTION, descs), {"role": "assistant", "content": answer}]
    input_ids, labels = tokenize_chat(tok, messages)

    prefix_ids = _ids(tok, chat_prefix(tok, QUESTION, descs))
    assert input_ids[:len(prefix_ids)] == prefix_ids
    assert labels[:len(prefix_ids)] == [IGNORE_INDEX] * len(prefix_ids)
    counted = [t for t in labels if t != IGNORE_INDEX]
    assert counted == input_ids[len(prefix_ids):]
    assert counted[-1] == tok.eos_token_id
    assert tok.decode(counted, skip_special_tokens=True).strip() == answer
    # The prompt part holds the whole editing prompt, descriptors included.
    assert editing_prompt(QUESTION, descs) in tok.decode(prefix_ids)


def test_prompt_and_target_ids_match_training_tokenization(chat_tokenizer):
    tok = chat_tokenizer
    messages = [*user_messages(QUESTION, [EDIT]), {"role": "assistant", "content": "Tapan Works"}]
    input_ids, labels = tokenize_chat(tok, messages)
    prompt_ids, target_ids = prompt_and_target_ids(tok, QUESTION, [EDIT], "Tapan Works")
    assert input_ids[:len(prompt_ids) + len(target_ids)] == prompt_ids + target_ids
    assert tok.decode(target_ids).strip() == "Tapan Works"
    assert labels[len(prompt_ids)] == target_ids[0]


def test_chat_prefix_ends_where_the_answer_starts(tokenizer):
    prefix = chat_prefix(tokenizer, QUESTION, [EDIT])
    assert prefix.startswith(tokenizer.bos_token)
    assert prefix.endswith("<|assistant|>")
    assert editing_prompt(QUESTION, [EDIT]) in prefix


def test_tokenize_chat_needs_an_assistant_turn(tokenizer):
    with pytest.raises(ValueError, match="assistant"):
        tokenize_chat(tokenizer, user_messages(QUESTION, [EDIT]))
    with pytest.raises(ValueError, match="assistant"):
        tokenize_chat(tokenizer, [])
