"""A tiny model folder and corpus shards made in seconds, for tests, benchmarks and GPU checks.

The examples come from the synthetic world (`lte.data.synth`), the model from the tiny-model
factory (`lte.modeling.tiny`). The shards follow the corpus contract (columns id, source,
capability, with_edit, n_descriptors, messages, input_ids, labels + manifest.json) and are
tokenized by `lte.prompts.tokenize_chat`, exactly as `lte corpus build` does, so a run on them
takes the production code path.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from lte.data.synth import record_texts, synth_records
from lte.layout import MANIFEST, shard_name
from lte.prompts import tokenize_chat, user_messages


def smoke_examples(n: int, seed: int = 0, distractors: int = 0,
                   max_distractors: int = 0) -> list[dict]:
    """`n` chat examples: an in-scope question with its edit in the prompt, or a bare one.

    `distractors` > 0: every example carries its edit and that many unrelated descriptors, for
    long prompts of even length (GPU throughput checks). `max_distractors` > 0: instead, a
    number drawn per example (geometric, mean ~1/4 of the maximum, capped there), for the
    skewed lengths of a real corpus (knowedit: median 74, p95 118 tokens; padding benchmarks).
    """
    rng = random.Random(seed)
    records = synth_records(n, seed)
    descriptors = [r.descriptor for r in records]
    out = []
    for i, rec in enumerate(records):
        extra = distractors
        if max_distractors:
            extra = min(int(rng.expovariate(4 / max_distractors)), max_distractors)
        with_edit = i % 2 == 0 or extra > 0
        descs = [rec.descriptor] if with_edit else []
        if with_edit and extra:
            descs += [d for d in rng.sample(descriptors, min(extra + 1, n))
                      if d != rec.descriptor][:extra]
        answer = rec.target_new if with_edit else rec.ground_truth[0]
        messages = [*user_messages(rec.prompt, descs), {"role": "assistant", "content": answer}]
        out.append({"id": f"smoke/{i}/{'edit' if with_edit else 'bare'}", "source": "smoke",
                    "capability": "in_scope", "with_edit": with_edit,
                    "n_descriptors": len(descs), "messages": messages})
    return out


def write_smoke_model(out: str | Path, hidden_size: int = 64, layers: int = 2,
                      vocab_size: int = 512, seed: int = 0) -> Path:
    """A tokenizer trained on the smoke world's text and a fresh tiny LLaMA, as an HF folder."""
    from lte.modeling.tiny import write_tiny_model

    return write_tiny_model(out, record_texts(synth_records(400, seed)), vocab_size=vocab_size,
                            hidden_size=hidden_size, layers=layers, seed=seed)


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
        pq.write_table(pa.Table.from_pylist(rows[s::shards]), out / shard_name(s, shards))
    manifest = {"examples": n, "tokens": tokens, "seed": seed, "source": "lte.align.smoke",
                "tokenizer": getattr(tokenizer, "name_or_path", None)}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out
