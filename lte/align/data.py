"""Corpus shards -> training examples, and the collator that pads them into batches.

Shards carry `input_ids` and `labels` (-100 except the assistant answer and its eos) made by
`lte.prompts.tokenize_chat`; shards written without them are tokenized here the same way, so
only the answer ever counts in the loss.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from lte.errors import UserError
from lte.layout import MANIFEST
from lte.prompts import IGNORE_INDEX, tokenize_chat


@dataclass
class Corpus:
    examples: list[dict]  # {"input_ids": [...], "labels": [...]}, in shard order
    manifest: dict
    manifest_sha256: str  # hash of manifest.json's bytes: names the corpus in lte_meta.json
    truncated: int  # examples cut to max_length
    dropped: int  # examples left without answer tokens after the cut

    @property
    def tokens(self) -> int:
        return sum(len(e["input_ids"]) for e in self.examples)


def _corpus_folder(folder: str | Path) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError("corpus folder not found (build one with `lte corpus build`)",
                        file=str(folder), field="corpus")
    return folder


def shard_files(folder: str | Path) -> list[Path]:
    folder = _corpus_folder(folder)
    files = sorted(folder.glob("*.parquet"))
    if not files:
        present = ", ".join(sorted(p.name for p in folder.iterdir())[:10]) or "nothing"
        raise UserError(f"no *.parquet shards in the corpus folder (found: {present})",
                        file=str(folder), field="corpus")
    return files


def read_manifest(folder: str | Path) -> tuple[dict, str]:
    path = _corpus_folder(folder) / MANIFEST
    if not path.is_file():
        raise UserError("corpus manifest.json missing; shards come with one from `lte corpus "
                        "build`", file=str(path))
    raw = path.read_bytes()
    try:
        manifest = json.loads(raw)
    except json.JSONDecodeError as e:
        raise UserError(f"not valid JSON ({e.msg})", file=str(path)) from None
    return manifest, hashlib.sha256(raw).hexdigest()


def _clip(input_ids: list[int], labels: list[int], max_length: int):
    """Cut to max_length from the right; None when no answer token survives the cut."""
    if len(input_ids) <= max_length:
        return input_ids, labels, False
    input_ids, labels = input_ids[:max_length], labels[:max_length]
    if all(t == IGNORE_INDEX for t in labels):
        return None
    return input_ids, labels, True


def load_corpus(folder: str | Path, tokenizer, max_length: int) -> Corpus:
    """All shards in file order; rows keep their order so the sampler's seed fixes data order."""
    import pyarrow.parquet as pq

    manifest, digest = read_manifest(folder)
    vocab = len(tokenizer)
    examples, truncated, dropped = [], 0, 0
    for path in shard_files(folder):
        table = pq.read_table(path)
        cols = set(table.column_names)
        if not ({"input_ids", "labels"} <= cols or "messages" in cols):
            raise UserError(f"shard has neither input_ids+labels nor messages (columns: "
                            f"{', '.join(sorted(cols))})", file=str(path))
        tokenized = {"input_ids", "labels"} <= cols
        rows = table.select(["input_ids", "labels"] if tokenized else ["messages"]).to_pylist()
        for i, row in enumerate(rows):
            if tokenized:
                ids, labels = list(row["input_ids"]), list(row["labels"])
            else:
                ids, labels = tokenize_chat(tokenizer, row["messages"])
            if len(ids) != len(labels):
                raise UserError(f"input_ids has {len(ids)} tokens but labels {len(labels)}",
                                file=str(path), record=i, field="labels")
            if ids and max(ids) >= vocab:
                raise UserError(f"token id {max(ids)} is outside the tokenizer's vocabulary "
                                f"({vocab}); the corpus was tokenized with another tokenizer "
                                f"(manifest: {manifest.get('tokenizer', 'unrecorded')})",
                                file=str(path), record=i, field="input_ids")
            clipped = _clip(ids, labels, max_length)
            if clipped is None:
                dropped += 1
                continue
            ids, labels, cut = clipped
            truncated += cut
            examples.append({"input_ids": ids, "labels": labels})
    if not examples:
        raise UserError(f"no example has answer tokens within max_length={max_length}",
                        file=str(folder), field="max_length")
    return Corpus(examples, manifest, digest, truncated, dropped)


class ExampleDataset:
    """Map-style dataset over tokenized examples (the Trainer's sampler shuffles by seed)."""

    def __init__(self, examples: list[dict]):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict:
        return self.examples[i]
