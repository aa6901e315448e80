"""Chat formats by name, chosen in the config (`model.chat_format`), never guessed from a model name.

- `tokenizer`: the tokenizer's own chat template (Llama-3.x-Instruct, Qwen2.5-Instruct, Qwen3 with
  thinking off, Mistral-Instruct, the tiny model).
- `llama-2`: FastChat's `llama-2` conversation with an empty system message, as the reference
  trains LLaMA-2-Chat (`FastChat/fastchat/train/train.py`): `<s>[INST] {user} [/INST] {answer} </s>`.
- `qwen`: ChatML with the system turn "You are a helpful assistant.", as the reference trains
  Qwen-7B-Chat (`Qwen/finetune.py`, `preprocess`); Qwen v1 ships no chat template at all.

The named formats are installed as the tokenizer's chat template, so every later step (corpus,
alignment, evaluation, serving) runs one code path (`apply_chat_template`), and the aligned
checkpoint's saved tokenizer carries the format it was trained with.
"""

from __future__ import annotations

from lte.errors import UserError

QWEN_SYSTEM = "You are a helpful assistant."

# FastChat `llama-2`: roles [INST]/[/INST], seps (" ", " </s><s>"), a system message (when given)
# inside the first [INST] between <<SYS>> markers.
LLAMA2_TEMPLATE = (
    "{% if messages and messages[0]['role'] == 'system' and messages[0]['content'] %}"
    "{% set system = '<<SYS>>\\n' + messages[0]['content'] + '\\n<</SYS>>\\n\\n' %}"
    "{% else %}{% set system = '' %}{% endif %}"
    "{% set ns = namespace(first=true) %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}"
    "{{ bos_token }}[INST] {% if ns.first %}{{ system }}{% endif %}{{ m['content'] }} [/INST]"
    "{% set ns.first = false %}"
    "{% elif m['role'] == 'assistant' %} {{ m['content'] }} {{ eos_token }}{% endif %}"
    "{% endfor %}"
)

# Qwen's ChatML as `Qwen/finetune.py` builds it: a system turn first (the reference's default
# unless the conversation brings its own), each turn closed by <|im_end|> and a newline.
QWEN_TEMPLATE = (
    "{% if not messages or messages[0]['role'] != 'system' %}"
    "<|im_start|>system\n" + QWEN_SYSTEM + "<|im_end|>\n{% endif %}"
    "{% for m in messages %}"
    "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

TEMPLATES = {"tokenizer": None, "llama-2": LLAMA2_TEMPLATE, "qwen": QWEN_TEMPLATE}
CHAT_FORMATS = tuple(TEMPLATES)
# Tokens a named format writes that the tokenizer must know as single tokens.
_REQUIRED_TOKENS = {"qwen": ("<|im_start|>", "<|im_end|>")}


def apply_chat_format(tokenizer, chat_format: str, source: str = "tokenizer"):
    """Install the named format's template on `tokenizer` (in place; returned for chaining)."""
    if chat_format not in TEMPLATES:
        raise UserError(f"unknown chat format '{chat_format}'; choose one of "
                        f"{', '.join(CHAT_FORMATS)}", field="model.chat_format")
    template = TEMPLATES[chat_format]
    if template is None:
        if not getattr(tokenizer, "chat_template", None):
            raise UserError(f"{source} has no chat template of its own; set model.chat_format "
                            f"to one of {', '.join(f for f in CHAT_FORMATS if f != 'tokenizer')}",
                            field="model.chat_format")
        return tokenizer
    unknown = [t for t in _REQUIRED_TOKENS.get(chat_format, ())
               if len(tokenizer.encode(t, add_special_tokens=False)) != 1]
    if unknown:
        raise UserError(f"{source} lacks the special tokens of the '{chat_format}' format "
                        f"({', '.join(unknown)})", field="model.chat_format")
    tokenizer.chat_template = template
    return tokenizer
