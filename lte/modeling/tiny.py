"""The tiny LLaMA-architecture model of the embedded default, and its locally trained tokenizer.

Both are ordinary Hugging Face objects (a `LlamaForCausalLM`, a `PreTrainedTokenizerFast` with a
chat template), saved as an ordinary folder, so no later code special-cases the tiny model.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lte.layout import write_meta

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
USER, ASSISTANT, SYSTEM = "<|user|>", "<|assistant|>", "<|system|>"
SPECIAL_TOKENS = (PAD, BOS, EOS, USER, ASSISTANT, SYSTEM)

# The minimal chat template: role markers are single special tokens, so a chat costs 2-3 tokens
# of markup. Assistant turns end with EOS (the model learns where to stop), as in Llama/Qwen.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}<|system|>{{ m['content'] }}"
    "{% elif m['role'] == 'user' %}<|user|>{{ m['content'] }}"
    "{% else %}<|assistant|>{{ m['content'] }}{{ eos_token }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@dataclass
class TinyModelConfig:
    vocab_size: int = 2048  # BPE vocabulary trained on the corpus (special tokens included)
    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 3
    num_attention_heads: int = 4
    num_key_value_heads: int = 4
    max_position_embeddings: int = 256
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = True  # halves the parameter count of a small-vocabulary model
    seed: int = 0  # weight initialisation


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048):
    """A byte-level BPE tokenizer trained on `texts`, with bos/eos/pad and the chat template.

    Words carry their leading space (`add_prefix_space`, as SentencePiece does for Llama), so a
    name tokenizes the same at the start of an answer as inside a sentence: an answer can be
    copied token for token from an edit descriptor.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), min_frequency=2,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, bos_id)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
        additional_special_tokens=[USER, ASSISTANT, SYSTEM],
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(cfg: TinyModelConfig, tokenizer):
    """A freshly initialised `LlamaForCausalLM` sized by `cfg`, with the tokenizer's special ids."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        max_position_embeddings=cfg.max_position_embeddings, rope_theta=cfg.rope_theta,
        tie_word_embeddings=cfg.tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        model = LlamaForCausalLM(config)
    return model


def tiny_model(texts: Iterable[str], vocab_size: int = 512, hidden_size: int = 64,
               layers: int = 2, heads: int = 4, seed: int = 0):
    """(fresh tiny LLaMA, tokenizer trained on `texts`): the small model of tests, smoke runs and
    benchmarks (the shipped one is sized by tools/make_tiny_checkpoint.py)."""
    tok = train_tokenizer(texts, vocab_size)
    cfg = TinyModelConfig(vocab_size=vocab_size, hidden_size=hidden_size,
                          intermediate_size=hidden_size * 2, num_hidden_layers=layers,
                          num_attention_heads=heads, num_key_value_heads=heads,
                          max_position_embeddings=512, seed=seed)
    return build_tiny_model(cfg, tok), tok


def write_tiny_model(out: str | Path, texts: Iterable[str], **sizes) -> Path:
    """`tiny_model(texts, **sizes)` saved as an HF folder."""
    return save_tiny(*tiny_model(texts, **sizes), out)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def save_tiny(model, tokenizer, out_dir: str | Path, meta: dict | None = None) -> Path:
    """Save as an ordinary HF folder (safetensors + tokenizer) plus `lte_meta.json`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    if meta is not None:
        write_meta(out, meta)
    return out
