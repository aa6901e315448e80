"""Load a causal LM and its tokenizer by hub id, local folder, or `lte:tiny` (the shipped one)."""

from __future__ import annotations

from pathlib import Path

from lte.config import ModelConfig
from lte.errors import UserError

ASSETS = Path(__file__).resolve().parents[1] / "assets"
# Names of checkpoints shipped inside the package.
PACKAGED = {"lte:tiny": ASSETS / "tiny-lte"}

_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def resolve_model_path(name_or_path: str) -> str:
    """`lte:<name>` -> the packaged folder; a local folder as is; anything else (a hub id) as is."""
    if name_or_path.startswith("lte:"):
        if name_or_path not in PACKAGED:
            raise UserError(f"unknown packaged model '{name_or_path}'; packaged: "
                            f"{', '.join(sorted(PACKAGED))}", field="model.name_or_path")
        path = PACKAGED[name_or_path]
        if not (path / "config.json").is_file():
            raise UserError(f"packaged model '{name_or_path}' is missing from {path}; rebuild it "
                            "with tools/make_tiny_checkpoint.py", field="model.name_or_path")
        return str(path)
    return name_or_path


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# Qwen v1 has neither EOS nor UNK; its own fine-tuning script pads with <|endoftext|>.
_PAD_FALLBACKS = ("<|endoftext|>",)


def load_tokenizer(name_or_path: str, chat_format: str | None = None,
                   trust_remote_code: bool = False):
    """The tokenizer, with a pad token (EOS where the model has none) and the configured chat
    format installed (`lte.chat_formats`; None: the tokenizer as saved, template or not); padding
    side is the caller's choice (left for batched generation)."""
    from transformers import AutoTokenizer

    from lte.chat_formats import apply_chat_format

    path = resolve_model_path(name_or_path)
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load tokenizer '{name_or_path}' ({str(e).splitlines()[0]})",
                        field="model.name_or_path") from None
    if tok.pad_token is None:
        fallback = tok.eos_token if tok.eos_token is not None else tok.unk_token
        for token in _PAD_FALLBACKS:
            if fallback is None and len(tok.encode(token, add_special_tokens=False)) == 1:
                fallback = token
        if fallback is not None:
            tok.pad_token = fallback
    if chat_format is not None:
        apply_chat_format(tok, chat_format, source=f"tokenizer '{name_or_path}'")
    return tok


def load_model_and_tokenizer(cfg: ModelConfig | str):
    """(model in eval mode on cfg.device with cfg.dtype, tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM

    if isinstance(cfg, str):
        cfg = ModelConfig(name_or_path=cfg)
    path = resolve_model_path(cfg.name_or_path)
    tok = load_tokenizer(cfg.name_or_path, cfg.chat_format, cfg.trust_remote_code)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, _DTYPES[cfg.dtype]),
                                                     trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load model '{cfg.name_or_path}' ({str(e).splitlines()[0]})",
                        field="model.name_or_path") from None
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    model.to(resolve_device(cfg.device))
    model.eval()
    return model, tok
