"""The editing prompt of the paper, descriptor numbering, and chat-template wrapping.

Everything that turns (descriptors, question, answer) into text or token ids goes through this
module, so that alignment data and inference see byte-identical prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

EDIT_PROMPT_TEMPLATE = (
    "Please acknowledge the updated information provided below and respond to the subsequent "
    "question.\n\n[Updated Information]:\n{descriptors}\n\n[Question]:\n{question}"
)

# The reference's single-edit evaluation wording (YJiangcm/LTE, EasyEdit/easyeditor/evaluate/
# evaluate.py `knowledge_edit_template`): "query" and [Query] where training says "question".
REFERENCE_SINGLE_TEMPLATE = (
    "Please acknowledge the updated information provided below and respond to the subsequent "
    "query.\n\n[Updated Information]:\n{descriptors}\n\n[Query]:\n{question}"
)
# ICE (EasyEdit IKE with use_icl_examples=False): the new fact before the question, raw text.
ICE_TEMPLATE = "New Fact: {descriptors}\nPrompt: {question}"
PROMPT_VARIANTS = {"training": EDIT_PROMPT_TEMPLATE, "reference_single": REFERENCE_SINGLE_TEMPLATE,
                   "ice": ICE_TEMPLATE}

IGNORE_INDEX = -100


def format_descriptors(descriptors: Sequence[str]) -> str:
    """One descriptor as is; several numbered `1. ...` on their own lines."""
    if len(descriptors) == 1:
        return descriptors[0]
    return "\n".join(f"{i}. {d}" for i, d in enumerate(descriptors, start=1))


def editing_prompt(question: str, descriptors: Sequence[str], variant: str = "training") -> str:
    """The user turn: the paper's editing prompt, or the bare question when there is no edit.

    `variant` picks the wording (PROMPT_VARIANTS); training data always uses `training`.
    """
    if not descriptors:
        return question
    return PROMPT_VARIANTS[variant].format(
        descriptors=format_descriptors(descriptors), question=question
    )


def user_messages(question: str, descriptors: Sequence[str],
                  variant: str = "training") -> list[dict]:
    return [{"role": "user", "content": editing_prompt(question, descriptors, variant)}]


def chat_prefix(tokenizer, question: str, descriptors: Sequence[str],
                variant: str = "training") -> str:
    """The chat-templated text up to where the assistant's answer starts."""
    return tokenizer.apply_chat_template(
        user_messages(question, descriptors, variant), tokenize=False, add_generation_prompt=True
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
                          target: str, variant: str = "training") -> tuple[list[int], list[int]]:
    """(prompt ids, target ids) for teacher-forced scoring, tokenized exactly as in training."""
    prompt_ids = _ids(tokenizer, chat_prefix(tokenizer, question, descriptors, variant))
    return prompt_ids, _ids(tokenizer, target)


def raw_prompt_and_target_ids(tokenizer, question: str, descriptors: Sequence[str],
                              target: str, variant: str = "training"
                              ) -> tuple[list[int], list[int]]:
    """(prompt ids, target ids) without a chat template, as EasyEdit scores its baselines.

    EasyEdit tokenizes `f"{prompt} {target}"` with the tokenizer's special tokens (BOS) and
    takes the target as what follows the prompt's own tokenization; so do we, falling back to
    the target tokenized alone where the two tokenizations do not share the prompt's ids.
    """
    text = editing_prompt(question, descriptors, variant)
    prompt_ids = list(tokenizer(text)["input_ids"])
    if not target:
        return prompt_ids, []
    full = list(tokenizer(f"{text} {target}")["input_ids"])
    if full[:len(prompt_ids)] == prompt_ids and len(full) > len(prompt_ids):
        return prompt_ids, full[len(prompt_ids):]
    return prompt_ids, _ids(tokenizer, target)


# How a question becomes token ids: chat template or raw text, and which wording. LTE is
# scored as it was aligned (chat, training wording); EasyEdit scores its baselines on raw text.
@dataclass(frozen=True)
class PromptFormat:
    template: str = "chat"  # chat | raw
    variant: str = "training"  # a key of PROMPT_VARIANTS

    def encode(self, tokenizer, question: str, descriptors, target: str
               ) -> tuple[list[int], list[int]]:
        """(prompt ids, target ids) of `question` with `descriptors`, for scoring `target`."""
        if self.template == "raw":
            return raw_prompt_and_target_ids(tokenizer, question, list(descriptors),
                                                     target, self.variant)
        return prompt_and_target_ids(tokenizer, question, list(descriptors), target,
                                             self.variant)


CHAT = PromptFormat()
RAW = PromptFormat(template="raw")
