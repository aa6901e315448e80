"""The editing prompt of the paper, descriptor numbering, and chat-template wrapping.

Everything that turns (descriptors, question, answer) into text or token ids goes through this
module, so that alignment data and inference see byte-identical prompts.
"""

from __future__ import annotations

from collections.abc import Sequence

EDIT_PROMPT_TEMPLATE = (
    "Please acknowledge the updated information provided below and respond to the subsequent "
    "question.\n\n[Updated Information]:\n{descriptors}\n\n[Question]:\n{question}"
)

IGNORE_INDEX = -100


def format_descriptors(descriptors: Sequence[str]) -> str:
    """One descriptor as is; several numbered `1. ...` on their own lines."""
    if len(descriptors) == 1:
        return descriptors[0]
    return "\n".join(f"{i}. {d}" for i, d in enumerate(descriptors, start=1))


def editing_prompt(question: str, descriptors: Sequence[str]) -> str:
    """The user turn: the paper's editing prompt, or the bare question when there is no edit."""
    if not descriptors:
        return question
    return EDIT_PROMPT_TEMPLATE.format(
        descriptors=format_descriptors(descriptors), question=question
    )


def user_messages(question: str, descriptors: Sequence[str]) -> list[dict]:
    return [{"role": "user", "content": editing_prompt(question, descriptors)}]


def chat_prefix(tokenizer, question: str, descriptors: Sequence[str]) -> str:
    """The chat-templated text up to where the assistant's answer starts."""
    return tokenizer.apply_chat_template(
        user_messages(question, descriptors), tokenize=False, add_generation_prompt=True
    )


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def tokenize_chat(tokenizer, messages: Sequence[dict]) -> tuple[list[int], list[int]]:
    """Token ids of a user/assistant exchange and labels that count only the assistant answer.

    The prompt part is the chat template with the generation prompt; the answer is appended with
    the end-of-sequence token, so the model learns where to stop.
    """
    if not messages or messages[-1]["role"] != "assistant":
        raise ValueError("messages must end with an assistant turn")
    prompt_text = tokenizer.apply_chat_template(
        list(messages[:-1]), tokenize=False, add_generation_prompt=True
    )
    prompt_ids = _ids(tokenizer, prompt_text)
    answer_ids = _ids(tokenizer, messages[-1]["content"])
    if tokenizer.eos_token_id is not None:
        answer_ids.append(tokenizer.eos_token_id)
    return prompt_ids + answer_ids, [IGNORE_INDEX] * len(prompt_ids) + answer_ids


def prompt_and_target_ids(tokenizer, question: str, descriptors: Sequence[str],
                          target: str) -> tuple[list[int], list[int]]:
    """(prompt ids, target ids) for teacher-forced scoring, tokenized exactly as in training."""
    prompt_ids = _ids(tokenizer, chat_prefix(tokenizer, question, descriptors))
    return prompt_ids, _ids(tokenizer, target)
