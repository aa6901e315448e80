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


_HEAD, _QUESTION = EDIT_PROMPT_TEMPLATE.split("{descriptors}")
_QUESTION = _QUESTION.replace("{question}", "")


def parse_editing_prompt(text: str) -> tuple[str, list[str]] | None:
    """(question, descriptors) of a user turn written by `editing_prompt`; None for a bare one.

    Several descriptors are recognised by their numbering `1. `, `2. `, ... on their own lines;
    anything else between the markers is one descriptor.
    """
    if not text.startswith(_HEAD) or _QUESTION not in text[len(_HEAD):]:
        return None
    block, question = text[len(_HEAD):].rsplit(_QUESTION, 1)
    lines = block.split("\n")
    if len(lines) > 1 and all(line.startswith(f"{i}. ") for i, line in enumerate(lines, 1)):
        return question, [line[len(f"{i}. "):] for i, line in enumerate(lines, 1)]
    return question, [block]


def user_messages(question: str, descriptors: Sequence[str],
                  variant: str = "training") -> list[dict]:
    return [{"role": "user", "content": editing_prompt(question, descriptors, variant)}]


# Passed to every chat template: Qwen3's template then writes its empty thinking block (thinking
# off); templates that do not know the variable ignore it.
TEMPLATE_KWARGS = {"enable_thinking": False}


def _render(tokenizer, messages: Sequence[dict], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(list(messages), tokenize=False,
                                         add_generation_prompt=generation_prompt,
                                         **TEMPLATE_KWARGS)


def chat_prefix(tokenizer, question: str, descriptors: Sequence[str],
                variant: str = "training") -> str:
    """The chat-templated text up to where the assistant's answer starts."""
    return _render(tokenizer, user_messages(question, descriptors, variant), True)


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def special_ids(tokenizer) -> set[int]:
    """Ids of every special token, registered the HF way or (Qwen v1's remote code) its own."""
    ids = set(tokenizer.all_special_ids)
    for i, token in getattr(tokenizer, "added_tokens_decoder", {}).items():
        if getattr(token, "special", False):
            ids.add(int(i))
    own = getattr(tokenizer, "special_tokens", None)
    if isinstance(own, dict):
        ids.update(v for v in own.values() if isinstance(v, int))
    return ids


def _answer_span(tokenizer, rest: list[int]) -> tuple[list[int], int]:
    """(ids after the prompt, how many of them are learned): the answer up to and including
    the first special token after it, the end of the turn. A template that closes no turn gets
    EOS appended, so the model still learns where to stop."""
    specials = special_ids(tokenizer)
    for i, t in enumerate(rest):
        if t in specials:
            return rest, i + 1
    if tokenizer.eos_token_id is None:
        return rest, len(rest)
    return [*rest, tokenizer.eos_token_id], len(rest) + 1


def tokenize_chat(tokenizer, messages: Sequence[dict]) -> tuple[list[int], list[int]]:
    """Token ids of a user/assistant exchange and labels that count only the assistant answer
    and its end-of-turn token.

    The text is the chat template's rendering of the whole exchange, tokenized as one string
    (SentencePiece tokenizers join a prompt and an answer differently from two strings); the
    prompt is where the template with the generation prompt ends. Whatever the template writes
    after the end-of-turn token (ChatML's newline) is in the ids but not learned.
    """
    if not messages or messages[-1]["role"] != "assistant":
        raise ValueError("messages must end with an assistant turn")
    prompt_text = _render(tokenizer, messages[:-1], True)
    full_text = _render(tokenizer, messages, False)
    if not full_text.startswith(prompt_text):
        raise ValueError("the chat template renders the prompt differently with and without "
                         "the answer; lte needs a template whose prompt is a prefix")
    prompt_ids = _ids(tokenizer, prompt_text)
    full_ids = _ids(tokenizer, full_text)
    if full_ids[:len(prompt_ids)] == prompt_ids:
        rest = full_ids[len(prompt_ids):]
    else:  # the answer merged into the prompt's last token: tokenize the two apart
        rest = _ids(tokenizer, full_text[len(prompt_text):])
    rest, learned = _answer_span(tokenizer, rest)
    labels = [IGNORE_INDEX] * len(prompt_ids) + rest[:learned] + [IGNORE_INDEX] * (
        len(rest) - learned)
    return prompt_ids + rest, labels


def prompt_and_target_ids(tokenizer, question: str, descriptors: Sequence[str],
                          target: str, variant: str = "training") -> tuple[list[int], list[int]]:
    """(prompt ids, target ids) for teacher-forced scoring, tokenized exactly as in training:
    the target is the learned span without its end-of-turn token and without the whitespace
    a template puts before it (FastChat's `{answer} </s>`)."""
    if not target:
        return _ids(tokenizer, chat_prefix(tokenizer, question, descriptors, variant)), []
    messages = [*user_messages(question, descriptors, variant),
                {"role": "assistant", "content": target}]
    ids, labels = tokenize_chat(tokenizer, messages)
    start = next(i for i, lab in enumerate(labels) if lab != IGNORE_INDEX)
    end = max(i for i, lab in enumerate(labels) if lab != IGNORE_INDEX)  # the end of turn
    answer = ids[start:end]
    while answer and not tokenizer.decode(answer[-1:]).strip():
        answer = answer[:-1]
    return ids[:start], answer


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


def stop_token_ids(tokenizer) -> list[int]:
    """EOS and the template's end-of-turn token (Llama-3 `<|eot_id|>`, ChatML `<|im_end|>`):
    generation stops at either."""
    ids, labels = tokenize_chat(tokenizer, [{"role": "user", "content": "q"},
                                            {"role": "assistant", "content": "a"}])
    stops = [ids[max(i for i, lab in enumerate(labels) if lab != IGNORE_INDEX)]]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in stops:
        stops.append(tokenizer.eos_token_id)
    return stops
