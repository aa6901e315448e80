"""`lte corpus import FILE...`: conversation files -> the same shards + manifest as a build.

Reads what the authors' notebook writes and what they released as their training data
(FastChat/ShareGPT: `[{"id", "conversations": [{"from": "human"|"gpt", "value"}]}]`), and
OpenAI-style `{"messages": [{"role", "content"}]}` records (JSON array or JSON Lines). For each
conversation the editing prompt of its last user turn gives `with_edit` and `n_descriptors`;
`source` and `capability` come from the record where it says so (fields `source`/`capability`,
or an id written by `lte corpus build`, `source:case/in|out|ling...`), the source from the
notebook's ids (`identity_<n>_<source>`), else the file name and `unknown`.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from lte.config import CorpusConfig, save_config
from lte.corpus.construct import CAPABILITIES, Example
from lte.corpus.shards import Tokenize, examples_table, write_shards
from lte.errors import UserError
from lte.prompts import EDIT_PROMPT_TEMPLATE, parse_editing_prompt

UNKNOWN = "unknown"  # capability of an imported example whose file does not say
_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
          "chatgpt": "assistant", "bard": "assistant", "system": "system"}
_NOTEBOOK_ID = re.compile(r"^identity_\d+_(?P<source>.+)$")
_LTE_ID = re.compile(r"^(?P<source>[^:/]+):[^/]+/(?P<scope>in|out|ling)\b")
_SCOPES = {"in": "in_scope", "out": "out_of_scope", "ling": "linguistic"}


def _records(path: Path) -> Iterator[tuple[int, object]]:
    """(index, raw record) of a JSON array or a JSON Lines file."""
    from lte.data.jsonarray import iter_json_array

    with open(path, encoding="utf-8") as f:
        first = f.read(1 << 12).lstrip()[:1]
    if first == "[":
        yield from enumerate(iter_json_array(path))
        return
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if not line.strip():
                continue
            try:
                yield i, json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"not valid JSON ({e.msg})", file=str(path), record=i) from None


def _messages(raw: dict, path: str, index: int) -> list[dict]:
    if "conversations" in raw:
        turns, role_key, text_key, name = raw["conversations"], "from", "value", "conversations"
    elif "messages" in raw:
        turns, role_key, text_key, name = raw["messages"], "role", "content", "messages"
    else:
        raise UserError("has neither 'conversations' (ShareGPT) nor 'messages' (OpenAI)",
                        file=path, record=index)
    if not isinstance(turns, list) or not turns:
        raise UserError("must be a non-empty list of turns", file=path, record=index, field=name)
    out = []
    for j, turn in enumerate(turns):
        where = f"{name}[{j}]"
        if not isinstance(turn, dict):
            raise UserError("a turn must be an object", file=path, record=index, field=where)
        role = _ROLES.get(str(turn.get(role_key, "")).lower())
        if role is None:
            raise UserError(f"unknown {role_key} {turn.get(role_key)!r}; expected one of "
                            f"{', '.join(sorted(_ROLES))}", file=path, record=index,
                            field=f"{where}.{role_key}")
        text = turn.get(text_key)
        if not isinstance(text, str):
            raise UserError("must be a string", file=path, record=index,
                            field=f"{where}.{text_key}")
        out.append({"role": role, "content": text})
    if out[-1]["role"] != "assistant" or not any(m["role"] == "user" for m in out):
        raise UserError("must hold a user turn and end with an assistant turn", file=path,
                        record=index, field=name)
    if not out[-1]["content"].strip():
        raise UserError("the last assistant turn is empty", file=path, record=index, field=name)
    return out


def _labels(raw: dict, path: Path, index: int) -> tuple[str, str, str]:
    """(id, source, capability) of a record."""
    rid = raw.get("id")
    if rid is not None and not isinstance(rid, (str, int)):
        raise UserError("must be a string", file=str(path), record=index, field="id")
    rid = str(rid) if rid is not None else f"{path.stem}:{index:08d}"
    source, capability = path.stem, UNKNOWN
    if m := _LTE_ID.match(rid):
        source, capability = m["source"], _SCOPES[m["scope"]]
    elif m := _NOTEBOOK_ID.match(rid):
        source = m["source"]
    for name in ("source", "capability"):
        value = raw.get(name)
        if value is not None and not isinstance(value, str):
            raise UserError("must be a string", file=str(path), record=index, field=name)
    source = raw.get("source") or source
    capability = raw.get("capability") or capability
    if capability not in (*CAPABILITIES, UNKNOWN):
        raise UserError(f"unknown capability {capability!r}; expected one of "
                        f"{', '.join((*CAPABILITIES, UNKNOWN))}", file=str(path), record=index,
                        field="capability")
    return rid, source, capability


def read_conversations(paths: list[str]) -> tuple[list[Example], dict[str, int]]:
    """Every conversation of `paths` as a corpus example; records read per file."""
    examples, read, seen = [], {}, {}
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise UserError("conversation file not found", file=name)
        n = 0
        for index, raw in _records(path):
            if not isinstance(raw, dict):
                raise UserError("a record must be an object", file=name, record=index)
            messages = _messages(raw, name, index)
            rid, source, capability = _labels(raw, path, index)
            if rid in seen:
                raise UserError(f"repeats the id of {seen[rid]}", file=name, record=index,
                                field="id")
            seen[rid] = f"{name} record {index}"
            user = next(m["content"] for m in reversed(messages) if m["role"] == "user")
            parsed = parse_editing_prompt(user)
            n_desc = len(parsed[1]) if parsed else 0
            examples.append(Example(rid, source, capability, parsed is not None, n_desc,
                                    messages))
            n += 1
        read[name] = n
    return examples, read


def _tokenizer(cfg: CorpusConfig, examples: list[Example], work: Path):
    if cfg.tokenizer is None:
        return None
    if cfg.tokenizer == "train":
        from lte.corpus.build import TOKENIZER_DIR
        from lte.modeling.tiny import train_tokenizer

        texts = [EDIT_PROMPT_TEMPLATE, *(m["content"] for e in examples for m in e.messages)]
        tok = train_tokenizer(texts, cfg.tokenizer_vocab_size)
        tok.save_pretrained(str(work / TOKENIZER_DIR))
        return tok
    from lte.modeling.load import load_tokenizer

    return load_tokenizer(cfg.tokenizer, cfg.model.chat_format, cfg.model.trust_remote_code)


def import_corpus(paths: list[str], cfg: CorpusConfig, out_dir: str | Path | None = None) -> dict:
    """Write the conversations of `paths` as corpus shards + manifest into `out_dir`; a bad
    record stops the import before anything is replaced."""
    from lte.corpus.build import MANIFEST, _publish

    out = Path(out_dir or cfg.out)
    examples, read = read_conversations(paths)
    examples.sort(key=lambda e: e.id)
    out.mkdir(parents=True, exist_ok=True)
    work = out / ".building"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    tokenizer = _tokenizer(cfg, examples, work)
    tokenize = Tokenize(tokenizer) if tokenizer is not None else None

    def batches():
        for start in range(0, len(examples), cfg.batch_size):
            table = examples_table(examples[start:start + cfg.batch_size])
            yield tokenize(table) if tokenize else table

    stats = write_shards(batches() if examples else iter(()), work, cfg.shards,
                         cfg.row_group_size)
    manifest = {
        "format": "lte-corpus/1",
        **stats.to_dict(),
        "imported": {"records_read": read,
                     "capability_unknown": sum(1 for e in examples if e.capability == UNKNOWN),
                     "per_source_capability": _per_source_capability(examples)},
        "tokenizer": cfg.tokenizer,
        "inputs_sha256": {p: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths},
        "config": asdict(cfg),
    }
    (work / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    save_config(cfg, work)
    _publish(work, out)
    return manifest


def _per_source_capability(examples: list[Example]) -> dict[str, dict[str, int]]:
    counts: dict[str, Counter] = {}
    for e in examples:
        counts.setdefault(e.source, Counter())[e.capability] += 1
    return {s: dict(sorted(c.items())) for s, c in sorted(counts.items())}


__all__ = ["import_corpus", "read_conversations", "UNKNOWN"]
