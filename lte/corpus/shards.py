"""Corpus rows as Arrow tables, and the deterministic parquet shard writer.

Identical inputs give identical shard bytes: rows arrive sorted by id, each goes to the shard
named by a hash of its id, row groups hold a fixed number of rows, and nothing time- or
host-dependent is written (parquet's footer carries only the schema and the writer version).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lte.corpus.construct import Example
from lte.layout import shard_name
from lte.prompts import IGNORE_INDEX, tokenize_chat

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
# Between stages messages travel as JSON text: one flat string column, whatever the batch.
ROW_SCHEMA = pa.schema([("id", pa.string()), ("source", pa.string()),
                        ("capability", pa.string()), ("with_edit", pa.bool_()),
                        ("n_descriptors", pa.int32()), ("messages", pa.string())])
TOKEN_FIELDS = [("input_ids", pa.list_(pa.int32())), ("labels", pa.list_(pa.int32()))]
SHARD_SCHEMA = pa.schema([*[f for f in ROW_SCHEMA if f.name != "messages"],
                          ("messages", pa.list_(MESSAGE))])
TOKENIZED_SHARD_SCHEMA = pa.schema([*SHARD_SCHEMA, *TOKEN_FIELDS])


def examples_table(examples: Iterable[Example]) -> pa.Table:
    cols: dict[str, list] = {name: [] for name in ROW_SCHEMA.names}
    for ex in examples:
        cols["id"].append(ex.id)
        cols["source"].append(ex.source)
        cols["capability"].append(ex.capability)
        cols["with_edit"].append(ex.with_edit)
        cols["n_descriptors"].append(ex.n_descriptors)
        cols["messages"].append(json.dumps(ex.messages, ensure_ascii=False))
    return pa.table(cols, schema=ROW_SCHEMA)


class Tokenize:
    """Adds `input_ids` and `labels` (answer + eos only) through `lte.prompts.tokenize_chat`."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, batch: pa.Table) -> pa.Table:
        ids, labels = [], []
        for text in batch.column("messages").to_pylist():
            i, lab = tokenize_chat(self.tokenizer, json.loads(text))
            ids.append(i)
            labels.append(lab)
        batch = batch.append_column(pa.field(*TOKEN_FIELDS[0]), pa.array(ids, TOKEN_FIELDS[0][1]))
        return batch.append_column(pa.field(*TOKEN_FIELDS[1]),
                                   pa.array(labels, TOKEN_FIELDS[1][1]))


def shard_of(example_id: str, n_shards: int) -> int:
    return zlib.crc32(example_id.encode()) % n_shards


@dataclass
class ShardStats:
    """Counts over the rows written; the manifest's body."""

    examples: int = 0
    duplicates: int = 0  # rows whose messages repeat an earlier (lower-id) row, not written
    source: Counter = field(default_factory=Counter)
    capability: Counter = field(default_factory=Counter)
    n_descriptors: Counter = field(default_factory=Counter)
    with_edit: Counter = field(default_factory=Counter)
    capability_with_edit: Counter = field(default_factory=Counter)
    tokens: int = 0
    answer_tokens: int = 0
    max_tokens: int = 0
    min_tokens: int | None = None
    shards: list[dict] = field(default_factory=list)

    def add(self, row: dict) -> None:
        self.examples += 1
        self.source[row["source"]] += 1
        self.capability[row["capability"]] += 1
        self.n_descriptors[str(row["n_descriptors"])] += 1
        edit = "with_edit" if row["with_edit"] else "bare"
        self.with_edit[edit] += 1
        self.capability_with_edit[f"{row['capability']}/{edit}"] += 1
        if "input_ids" in row:
            n = len(row["input_ids"])
            self.tokens += n
            self.answer_tokens += sum(1 for t in row["labels"] if t != IGNORE_INDEX)
            self.max_tokens = max(self.max_tokens, n)
            self.min_tokens = n if self.min_tokens is None else min(self.min_tokens, n)

    def to_dict(self) -> dict:
        with_edit = sum(v for k, v in self.n_descriptors.items() if k != "0")
        tokens = None
        if self.min_tokens is not None:
            tokens = {"total": self.tokens, "answer": self.answer_tokens,
                      "mean": round(self.tokens / max(self.examples, 1), 2),
                      "min": self.min_tokens, "max": self.max_tokens}
        return {
            "examples": self.examples,
            "duplicates_dropped": self.duplicates,
            "per_source": dict(sorted(self.source.items())),
            "per_capability": dict(sorted(self.capability.items())),
            "per_with_edit": dict(sorted(self.with_edit.items())),
            "per_capability_with_edit": dict(sorted(self.capability_with_edit.items())),
            "per_n_descriptors": dict(sorted(self.n_descriptors.items())),
            "n_descriptors_share_of_with_edit": {
                k: round(v / with_edit, 4) for k, v in sorted(self.n_descriptors.items())
                if k != "0" and with_edit},
            "tokens": tokens,
            "shards": self.shards,
        }


def write_shards(batches: Iterable[pa.Table], out_dir: str | Path, n_shards: int,
                 row_group_size: int) -> ShardStats:
    """Write id-sorted row batches into `n_shards` parquet files; drop repeated examples.

    Of examples with identical messages the lowest id is kept, so the result does not depend on
    how rows were partitioned.
    """
    out = Path(out_dir)
    stats = ShardStats()
    seen: set[bytes] = set()
    writers: list[pq.ParquetWriter] = []
    buffers: list[list[dict]] = [[] for _ in range(n_shards)]
    schema = None
    last_id = None

    def flush(i: int) -> None:
        if buffers[i]:
            writers[i].write_table(pa.Table.from_pylist(buffers[i], schema=schema),
                                   row_group_size=row_group_size)
            buffers[i] = []

    try:
        for batch in batches:
            if schema is None:
                schema = (TOKENIZED_SHARD_SCHEMA if "input_ids" in batch.column_names
                          else SHARD_SCHEMA)
                writers = [pq.ParquetWriter(out / shard_name(i, n_shards), schema,
                                            compression="zstd", compression_level=3,
                                            write_statistics=True, store_schema=True)
                           for i in range(n_shards)]
            for row in batch.to_pylist():
                if last_id is not None and row["id"] <= last_id:
                    raise RuntimeError(f"rows reached the writer out of id order: "
                                       f"{row['id']!r} after {last_id!r}")
                last_id = row["id"]
                digest = hashlib.blake2b(row["messages"].encode(), digest_size=16).digest()
                if digest in seen:
                    stats.duplicates += 1
                    continue
                seen.add(digest)
                row["messages"] = json.loads(row["messages"])
                stats.add(row)
                i = shard_of(row["id"], n_shards)
                buffers[i].append(row)
                if len(buffers[i]) >= row_group_size:
                    flush(i)
        if schema is None:  # no rows at all: still one readable (empty) file per shard
            schema = SHARD_SCHEMA
            writers = [pq.ParquetWriter(out / shard_name(i, n_shards), schema)
                       for i in range(n_shards)]
        for i in range(n_shards):
            flush(i)
    finally:
        for w in writers:
            w.close()
    for i in range(n_shards):
        path = out / shard_name(i, n_shards)
        stats.shards.append({"file": path.name, "rows": pq.ParquetFile(path).metadata.num_rows,
                             "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    return stats
