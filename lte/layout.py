"""Names of the files and folders that stages hand to each other, defined once.

A stage writes a folder and a later stage (often on another machine) reads it, so these names are
the contract between them (DESIGN.md "Layout"); `lte_meta.json` is read and written only here.
"""

from __future__ import annotations

import json
from pathlib import Path

# corpus folder (lte corpus build -> lte align)
MANIFEST = "manifest.json"
TOKENIZER_DIR = "tokenizer"  # a tokenizer the corpus build trained itself (tokenizer: train)
SHARD_GLOB = "shard-*-of-*.parquet"

# memory folder (lte memory / lte serve shards)
EDIT_LOG = "edits.sqlite"  # the edit log, source of truth
INDEX_FILE = "index.faiss"
INDEX_META_FILE = "index.json"
MEMORY_CONFIG = "config.yaml"
SERVE_MANIFEST = "serve.json"  # root of a sharded serving memory

# model folders (lte align final/, the shipped tiny checkpoint)
FINAL_DIR = "final"
META_FILE = "lte_meta.json"


def shard_name(i: int, n: int) -> str:
    return f"shard-{i:05d}-of-{n:05d}.parquet"


def write_meta(folder: str | Path, meta: dict) -> Path:
    path = Path(folder) / META_FILE
    path.write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
    return path


def read_meta(folder: str | Path) -> dict:
    return json.loads((Path(folder) / META_FILE).read_text())
