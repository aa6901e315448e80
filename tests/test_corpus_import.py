"""`lte corpus import`: conversation files give the same shards as building the same examples."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from lte.cli import main
from lte.config import CorpusConfig, EmbedderConfig
from lte.corpus.build import build_corpus
from lte.corpus.importer import UNKNOWN, import_corpus, read_conversations
from lte.prompts import editing_prompt


def _cfg(out, **kw) -> CorpusConfig:
    base = dict(synth_edits=40, derived_instructions=["world"], max_instructions=20,
                tokenizer="lte:tiny", retriever=EmbedderConfig(name="hashing"), shards=3,
                row_group_size=50, batch_size=64, out=str(out))
    base.update(kw)
    return CorpusConfig(**base)


def _shards(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("shard-*.parquet"))}


def test_import_of_a_sharegpt_file_equals_the_build(tmp_path):
    built = tmp_path / "built"
    manifest = build_corpus(_cfg(built), engine="local")
    rows = [r for p in sorted(built.glob("shard-*.parquet")) for r in pq.read_table(p).to_pylist()]
    sharegpt = [{"id": r["id"], "conversations": [
        {"from": "human" if m["role"] == "user" else "gpt", "value": m["content"]}
        for m in r["messages"]]} for r in rows[::-1]]  # any order: import sorts by id
    path = tmp_path / "train.json"
    path.write_text(json.dumps(sharegpt, indent=1))
    imported = import_corpus([str(path)], _cfg(tmp_path / "imported"))
    assert _shards(tmp_path / "imported") == _shards(built)
    for key in ("examples", "per_source", "per_capability", "per_n_descriptors", "tokens"):
        assert imported[key] == manifest[key], key


def test_notebook_ids_and_openai_messages(tmp_path):
    q = "Who is the employer of Latra Fisuk?"
    notebook = [
        {"id": "identity_0_zsre_train", "conversations": [
            {"from": "human", "value": editing_prompt(q, ["A fact.", "B fact.", "C fact."])},
            {"from": "gpt", "value": "Tapan Works"}]},
        {"id": "identity_1_zsre_train", "conversations": [
            {"from": "human", "value": q}, {"from": "gpt", "value": "Ollo"}]}]
    (tmp_path / "nb.json").write_text(json.dumps(notebook))
    lines = [{"messages": [{"role": "system", "content": "Be brief."},
                           {"role": "user", "content": editing_prompt(q, ["A fact."])},
                           {"role": "assistant", "content": "Tapan Works"}],
              "capability": "in_scope"}]
    (tmp_path / "oa.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    examples, read = read_conversations([str(tmp_path / "nb.json"), str(tmp_path / "oa.jsonl")])
    assert read == {str(tmp_path / "nb.json"): 2, str(tmp_path / "oa.jsonl"): 1}
    got = {e.id: (e.source, e.capability, e.with_edit, e.n_descriptors) for e in examples}
    assert got == {"identity_0_zsre_train": ("zsre_train", UNKNOWN, True, 3),
                   "identity_1_zsre_train": ("zsre_train", UNKNOWN, False, 0),
                   "oa:00000000": ("oa", "in_scope", True, 1)}
    assert examples[2].messages[0] == {"role": "system", "content": "Be brief."}


def test_a_bad_record_exits_2_with_one_line_and_keeps_the_previous_corpus(tmp_path, capsys):
    good = tmp_path / "good.json"
    good.write_text(json.dumps([{"id": "a", "conversations": [
        {"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "Hello"}]}]))
    out = tmp_path / "out"
    assert main(["corpus", "import", str(good), "shards=1", "--out", str(out)]) == 0
    before = _shards(out)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"id": "a", "conversations": [
        {"from": "human", "value": "Hi?"}, {"from": "robot", "value": "Hello"}]}]))
    capsys.readouterr()
    assert main(["corpus", "import", str(bad), "shards=1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert str(bad) in err[0] and "record 0" in err[0] and "conversations[1].from" in err[0]
    assert _shards(out) == before
