"""Tokenizers trained here that carry a model family's special tokens and chat template.

Nothing is downloaded: a small byte-level BPE learns the test's text, the family's special tokens
are added as single tokens, and the family's published template (reduced to the parts a user /
assistant exchange touches) is set as `chat_template`, or none where the family ships none.
"""

from __future__ import annotations

from dataclasses import dataclass

LLAMA3_TEMPLATE = (  # Llama-3.1-Instruct's, without tool calls
    "{{- bos_token }}"
    "{%- if not date_string is defined %}{%- set date_string = '26 Jul 2024' %}{%- endif %}"
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- set system_message = messages[0]['content']|trim %}{%- set messages = messages[1:] %}"
    "{%- else %}{%- set system_message = '' %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{{- 'Cutting Knowledge Date: December 2023\\n' }}"
    "{{- 'Today Date: ' + date_string + '\\n\\n' }}"
    "{{- system_message }}{{- '<|eot_id|>' }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + "
    "message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{%- endif %}"
)

QWEN25_TEMPLATE = (  # Qwen2.5-Instruct's, without tools
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
    "assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role != 'system' %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

QWEN3_TEMPLATE = (  # Qwen3's, without tools: the last assistant turn carries its thinking block
    "{%- set ns = namespace(last_query_index=messages|length - 1) %}"
    "{%- for message in messages[::-1] %}"
    "{%- set index = (messages|length - 1) - loop.index0 %}"
    "{%- if message.role == 'user' and ns.last_query_index == messages|length - 1 %}"
    "{%- set ns.last_query_index = index %}{%- endif %}"
    "{%- endfor %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'user' or message.role == 'system' %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- elif message.role == 'assistant' %}"
    "{%- set reasoning_content = '' %}"
    "{%- if loop.index0 > ns.last_query_index and loop.last %}"
    "{{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content.strip('\\n') + "
    "'\\n</think>\\n\\n' + message.content.lstrip('\\n') }}"
    "{%- else %}{{- '<|im_start|>' + message.role + '\\n' + message.content }}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}{%- endif %}"
)

MISTRAL_TEMPLATE = (  # Mistral-7B-Instruct-v0.2's
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}{% endif %}"
    "{% endfor %}"
)


@dataclass(frozen=True)
class Family:
    name: str
    chat_format: str  # lte.chat_formats name
    specials: tuple[str, ...]
    bos: str | None
    eos: str | None
    pad: str | None
    template: str | None  # the tokenizer's own template (None: ships none)
    think_tokens: tuple[str, ...] = ()


FAMILIES = {
    "llama-2": Family("llama-2", "llama-2", ("<unk>", "<s>", "</s>"), "<s>", "</s>", None,
                      None),
    "qwen": Family("qwen", "qwen", ("<|endoftext|>", "<|im_start|>", "<|im_end|>"), None, None,
                   None, None),
    "llama-3.1": Family("llama-3.1", "tokenizer",
                        ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                         "<|end_header_id|>", "<|eot_id|>"),
                        "<|begin_of_text|>", "<|eot_id|>", None, LLAMA3_TEMPLATE),
    "qwen2.5": Family("qwen2.5", "tokenizer", ("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
                      None, "<|im_end|>", "<|endoftext|>", QWEN25_TEMPLATE),
    "qwen3": Family("qwen3", "tokenizer", ("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
                    None, "<|im_end|>", "<|endoftext|>", QWEN3_TEMPLATE,
                    think_tokens=("<think>", "</think>")),
    "mistral": Family("mistral", "tokenizer", ("<unk>", "<s>", "</s>"), "<s>", "</s>", None,
                      MISTRAL_TEMPLATE),
}


def family_tokenizer(family: Family, texts: list[str], vocab_size: int = 600):
    """A byte-level BPE on `texts` with the family's special tokens and template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = [*family.specials, *family.think_tokens]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(family.specials),
                                  show_progress=False, min_frequency=1,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, clean_up_tokenization_spaces=False)
    fast.add_special_tokens({"additional_special_tokens": [t for t in family.specials
                                                           if t not in (family.bos, family.eos,
                                                                        family.pad)]})
    if family.think_tokens:  # Qwen3's are added tokens, not special ones
        fast.add_tokens(list(family.think_tokens))
    for role, token in (("bos_token", family.bos), ("eos_token", family.eos),
                        ("pad_token", family.pad)):
        if token is not None:
            fast.add_special_tokens({role: token})
    assert all(len(fast.encode(t, add_special_tokens=False)) == 1 for t in specials)
    fast.chat_template = family.template
    return fast
