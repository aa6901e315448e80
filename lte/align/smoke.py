"""A tiny model folder and corpus shards made in seconds, for tests, benchmarks and GPU checks.

The shards follow the corpus contract (columns id, source, capability, with_edit, n_descriptors,
messages, input_ids, labels + manifest.json) and are tokenized by `lte.prompts.tokenize_chat`,
exactly as `lte corpus build` does, so a run on them takes the production code path.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from lte.prompts import tokenize_chat, user_messages

_FIRST = ["Ada", "Bela", "Cato", "Dara", "Emil", "Fenna", "Goran", "Hedda", "Ivo", "Juna"]
_LAST = ["Marlow", "Quist", "Ravel", "Sorel", "Tamsin", "Ulric", "Vance", "Wren", "Yarrow"]
_CITIES = ["Lisbon", "Oslo", "Quito", "Hanoi", "Lagos", "Perth", "Tallinn", "Cusco", "Bergen"]
_JOBS = ["painter", "surgeon", "pilot", "chemist", "baker", "architect", "poet", "judge"]
_RELATIONS = [("Where was {s} born?", _CITIES), ("What is the job of {s}?", _JOBS),
              ("Which city does {s} live in?", _CITIES)]


def _fact(rng: random.Random) -> tuple[str, list[str]]:
    subject = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
    template, objects = rng.choice(_RELATIONS)
    return template.format(s=subject), objects


def smoke_examples(n: int, seed: int = 0, distractors: int = 0,
                   max_distractors: int = 0) -> list[dict]:
    """`n` chat examples: an in-scope question with its edit in the prompt, or a bare one.

    `distractors` > 0: every example carries its edit and that many unrelated descriptors, for
    long prompts of even length (GPU throughput checks). `max_distractors` > 0: instead, a
    number drawn per example (geometric, mean ~1/4 of the maximum, capped there), for the
    skewed lengths of a real corpus (knowedit: median 74, p95 118 tokens; padding benchmarks).
    """
    rng = random.Random(seed)
    out = []
    for i in range(n):
        question, objects = _fact(rng)
        old, new = rng.sample(objects, 2)
        extra = distractors
        if max_distractors:
            extra = min(int(rng.expovariate(4 / max_distractors)), max_distractors)
        with_edit = i % 2 == 0 or extra > 0
        descs = [f"{question} {new}"] if with_edit else []
        if with_edit and extra:
            descs += [f"{q} {rng.choice(objs)}" for q, objs in
                      (_fact(rng) for _ in range(extra))]
        messages = [*user_messages(question, descs),
                    {"role": "assistant", "content": new if with_edit else old}]
        out.append({"id": f"smoke/{i}/{'edit' if with_edit else 'bare'}", "source": "smoke",
                    "capability": "in_scope", "with_edit": with_edit,
                    "n_descriptors": len(descs), "messages": messages})
    return out


def write_smoke_model(out: str | Path, hidden_size: int = 64, layers: int = 2,
                      vocab_size: int = 512, seed: int = 0) -> Path:
    """A tokenizer trained on smoke text and a fresh tiny LLaMA, saved as an HF folder."""
    from lte.modeling.tiny import TinyModelConfig, build_tiny_model, save_tiny, train_tokenizer

    texts = [m["content"] for ex in smoke_examples(400, seed) for m in ex["messages"]]
    tok = train_tokenizer(texts, vocab_size)
    cfg = TinyModelConfig(vocab_size=vocab_size, hidden_size=hidden_size,
                          intermediate_size=hidden_size * 3, num_hidden_layers=layers,
                          num_attention_heads=4, num_key_value_heads=4,
                          max_position_embeddings=256, seed=seed)
    return save_tiny(build_tiny_model(cfg, tok), tok, out)


def write_smoke_corpus(out: str | Path, tokenizer, n: int = 256, shards: int = 2,
                       seed: int = 0, distractors: int = 0, max_distractors: int = 0) -> Path:
    """`n` examples in `shards` parquet files plus a manifest."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = smoke_examples(n, seed, distractors, max_distractors)
    tokens = 0
    for row in rows:
        row["input_ids"], row["labels"] = tokenize_chat(tokenizer, row["messages"])
        tokens += len(row["input_ids"])
    for s in range(shards):
        pq.write_table(pa.Table.from_pylist(rows[s::shards]), out / f"part-{s:05d}.parquet")
    manifest = {"examples": n, "tokens": tokens, "seed": seed, "source": "lte.align.smoke",
                "tokenizer": getattr(tokenizer, "name_or_path", None)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out
