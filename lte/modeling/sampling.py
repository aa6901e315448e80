"""The reference's Fluency generation: bare prompt, top-k sampling to a total length, seeded.

LTE's EasyEdit fork (`test_generation_quality` -> `generate_fast`) samples from the edited model
with top-k=5 until the sequence, prompt included, is `max_out_len` (100) tokens long, and scores
the whole decoded text. Each case here gets its own seed (the run's seed and a CRC of its case
id), so a case's text is the same whatever the protocol or batch it is scored in.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

TOP_K = 5


def case_seed(seed: int, case_id: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(case_id.encode())) % (2**31)


def sample_texts(model, tokenizer, texts: Sequence[str], case_ids: Sequence[str],
                 total_tokens: int, seed: int) -> list[str]:
    """Prompt + top-k sampled continuation of each raw `text`, `total_tokens` in all, decoded."""
    import torch

    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = []
    for text, case_id in zip(texts, case_ids, strict=True):
        ids = list(tokenizer(text)["input_ids"])
        if len(ids) < total_tokens:
            devices = [device.index or 0] if device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                torch.manual_seed(case_seed(seed, case_id))
                seq = model.generate(
                    input_ids=torch.tensor([ids], device=device),
                    attention_mask=torch.ones((1, len(ids)), dtype=torch.long, device=device),
                    do_sample=True, top_k=TOP_K, top_p=1.0, temperature=1.0, num_beams=1,
                    max_length=total_tokens, pad_token_id=pad,
                    eos_token_id=tokenizer.eos_token_id)
            ids = seq[0].tolist()
        out.append(tokenizer.decode(ids, skip_special_tokens=True))
    return out
