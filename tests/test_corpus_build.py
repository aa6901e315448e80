"""`lte corpus build` end to end on small synthetic worlds: bytes, manifest, leakage, errors."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from lte.cli import main
from lte.config import CorpusConfig, CorpusSource, EmbedderConfig, ModelConfig, load_config
from lte.corpus.build import build_corpus
from lte.corpus.construct import IN_SCOPE, LINGUISTIC, OUT_OF_SCOPE
from lte.data.readers import read_records
from lte.data.synth import write_world
from lte.layout import MANIFEST, TOKENIZER_DIR

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ["id", "source", "capability", "with_edit", "n_descriptors", "messages", "input_ids",
           "labels"]


def small_cfg(out: Path, **kw) -> CorpusConfig:
    base = dict(synth_edits=60, derived_instructions=["world"], max_instructions=30,
                tokenizer="train", tokenizer_vocab_size=700,
                retriever=EmbedderConfig(name="hashing"), shards=3, row_group_size=50,
                batch_size=64, out=str(out))
    base.update(kw)
    return CorpusConfig(**base)


def read_rows(out: Path) -> list[dict]:
    rows = []
    for path in sorted(out.glob("shard-*.parquet")):
        table = pq.read_table(path)
        assert table.column_names == COLUMNS
        ids = table.column("id").to_pylist()
        assert ids == sorted(ids)
        rows += table.to_pylist()
    return rows


def shard_bytes(out: Path) -> dict[str, bytes]:
    files = sorted(out.glob("shard-*.parquet")) + sorted((out / TOKENIZER_DIR).glob("*"))
    return {p.name: p.read_bytes() for p in files}


def test_two_builds_give_identical_bytes_and_a_consistent_manifest(tmp_path):
    m1 = build_corpus(small_cfg(tmp_path / "a"), engine="local")
    m2 = build_corpus(small_cfg(tmp_path / "b"), engine="local")
    a, b = shard_bytes(tmp_path / "a"), shard_bytes(tmp_path / "b")
    assert len(a) >= 4 and a == b
    for m in (m1, m2):
        m.pop("config")
    assert m1 == m2

    rows = read_rows(tmp_path / "a")
    manifest = json.loads((tmp_path / "a" / MANIFEST).read_text())
    assert manifest["examples"] == len(rows) == sum(s["rows"] for s in manifest["shards"])
    assert len({r["id"] for r in rows}) == len(rows)
    assert manifest["per_capability"] == dict(sorted(Counter(r["capability"]
                                                             for r in rows).items()))
    assert set(manifest["per_capability"]) == {IN_SCOPE, OUT_OF_SCOPE, LINGUISTIC}
    assert manifest["tokens"]["total"] == sum(len(r["input_ids"]) for r in rows)
    assert manifest["records"]["used"] == {"world": 60}
    assert manifest["inputs_sha256"].keys() == {"world.json"}
    assert (tmp_path / "a" / "world.json").is_file()
    assert (tmp_path / "a" / "config.yaml").is_file()
    assert set(manifest["per_n_descriptors"]) == {"0", "1", "2", "3"}

    # Every with-edit example has a bare twin asking the same question, except portability
    # questions under `answers: data` (the files have no pre-edit answer for them).
    bare = {r["messages"][0]["content"] for r in rows if not r["with_edit"]}
    for r in rows:
        if r["with_edit"] and "/in/Reasoning" not in r["id"]:
            question = r["messages"][0]["content"].rsplit("[Question]:\n", 1)[1]
            assert question in bare, r["id"]


def test_evaluation_subjects_are_dropped(tmp_path):
    world = write_world(tmp_path / "world.json", 80, seed=3)
    raw = json.loads(world.read_text())
    evaluation = tmp_path / "eval.json"
    evaluation.write_text(json.dumps(raw[10:30]))
    held_out = read_records(evaluation)
    cfg = small_cfg(tmp_path / "out", synth_edits=0, derived_instructions=["descriptions"],
                    sources=[CorpusSource(path=str(world), name="w")],
                    evaluation=[str(evaluation)])
    manifest = build_corpus(cfg, engine="local")
    assert manifest["records"]["dropped_for_leakage"] == {str(evaluation): 20}
    assert manifest["records"]["used"] == {"w": 60}

    rows = read_rows(tmp_path / "out")
    held_keys = {f"w:{r.case_id}/" for r in held_out}
    held_descriptors = {r.descriptor for r in held_out}
    held_subjects = {r.subject for r in held_out}
    for row in rows:
        assert not any(row["id"].startswith(k) for k in held_keys)
        text = row["messages"][0]["content"]
        assert not any(d in text for d in held_descriptors)
        if row["capability"] == LINGUISTIC and not row["with_edit"]:  # "Tell me about <subject>"
            assert not any(s in text for s in held_subjects)


def _good_source(tmp_path: Path) -> Path:
    path = tmp_path / "edits.json"
    write_world(path, 30, seed=1)
    return path


def test_bad_record_exits_2_with_one_line_and_keeps_the_previous_corpus(tmp_path, capsys):
    out = tmp_path / "out"
    source = _good_source(tmp_path)
    cfg_path = tmp_path / "corpus.yaml"
    cfg_path.write_text(f"sources: [{{path: {source}}}]\nretriever: {{name: hashing}}\n"
                        f"tokenizer: train\ntokenizer_vocab_size: 600\nshards: 2\n")
    assert main(["corpus", "build", "--config", str(cfg_path), "--out", str(out),
                 "--engine", "local"]) == 0
    before = shard_bytes(out)
    capsys.readouterr()

    records = json.loads(source.read_text())
    del records[4]["prompt"]
    source.write_text(json.dumps(records))
    assert main(["corpus", "build", "--config", str(cfg_path), "--out", str(out),
                 "--engine", "local"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "edits.json" in err and "record 4" in err and "prompt" in err
    assert shard_bytes(out) == before


def test_a_bad_config_value_exits_2(tmp_path, capsys):
    cfg_path = tmp_path / "corpus.yaml"
    cfg_path.write_text("synth_edits: 20\nanswers: gpt4\n")
    assert main(["corpus", "build", "--config", str(cfg_path)]) == 2
    assert "corpus.answers='gpt4'" in capsys.readouterr().err


def test_instruction_file_feeds_the_linguistic_capability(tmp_path):
    instructions = tmp_path / "wizard.jsonl"
    instructions.write_text("".join(json.dumps({"instruction": f"Name a colour number {i}.",
                                                "output": f"colour {i}"}) + "\n"
                                    for i in range(12)))
    cfg = small_cfg(tmp_path / "out", synth_edits=30, derived_instructions=[],
                    instructions=str(instructions))
    manifest = build_corpus(cfg, engine="local")
    assert manifest["instructions"] == {"wizard": 12}
    assert manifest["per_source"]["wizard"] == 24
    rows = [r for r in read_rows(tmp_path / "out") if r["capability"] == LINGUISTIC]
    assert len(rows) == 24
    for r in rows:
        i = r["id"].split(":")[1].split("/")[0]
        assert r["messages"][-1]["content"] == f"colour {i}"


def test_model_answers_replace_the_files_answers(tmp_path):
    import torch

    from lte.corpus.answers import AnswerGenerator
    from lte.modeling.tiny import save_tiny, tiny_model

    world = _good_source(tmp_path)
    model, tok = tiny_model([r.descriptor for r in read_records(world)], vocab_size=400,
                            hidden_size=32, layers=1, heads=2)
    with torch.no_grad():  # an untrained model: keep it off special tokens, so answers are text
        model.get_input_embeddings().weight[: len(tok.all_special_ids) + 1] = 0.0
    model_dir = save_tiny(model, tok, tmp_path / "base")
    model_cfg = ModelConfig(name_or_path=str(model_dir), device="cpu", max_new_tokens=3)
    cfg = small_cfg(tmp_path / "out", synth_edits=0, derived_instructions=["descriptions"],
                    sources=[CorpusSource(path=str(world))], answers="model", model=model_cfg,
                    tokenizer=str(model_dir))
    manifest = build_corpus(cfg, engine="local")
    generator = AnswerGenerator(model_cfg)
    # an edit is in-scope only exactly when the model gives no answer to its own question
    own = generator.answer([r.prompt for r in read_records(world)])
    assert manifest["records"]["in_scope_only"] == sum(1 for a in own if not a) < 15
    rows = read_rows(tmp_path / "out")
    bare = [r for r in rows if not r["with_edit"]]
    questions = [r["messages"][0]["content"] for r in bare[:8]]
    assert [r["messages"][-1]["content"] for r in bare[:8]] == generator.answer(questions)
    # portability questions now have the base model's answer as a bare twin
    assert any("/in/Reasoning" in r["id"] for r in bare)


@pytest.mark.slow
def test_ray_build_matches_the_in_process_build_byte_for_byte(tmp_path):
    cfg = small_cfg(tmp_path / "ray", synth_edits=40, num_cpus=2)
    build_corpus(cfg, engine="ray")
    build_corpus(small_cfg(tmp_path / "local", synth_edits=40), engine="local")
    assert shard_bytes(tmp_path / "ray") == shard_bytes(tmp_path / "local")


@pytest.mark.data
def test_knowedit_preset_inputs_hold_no_evaluation_subject(shared_data, monkeypatch):
    from lte.corpus.sources import evaluation_subjects, load_inputs, subject_key

    monkeypatch.chdir(REPO)
    cfg = load_config(CorpusConfig, REPO / "configs/corpus/knowedit.yaml")
    # The preset names ../shared/data relative to the checkout; read it where the fixture found it.
    def rebase(path: str) -> str:
        return path.replace("../shared/data", str(shared_data))

    for source in cfg.sources:
        source.path = rebase(source.path)
    cfg.evaluation = [rebase(p) for p in cfg.evaluation]
    inputs = load_inputs(cfg)
    held = set().union(*evaluation_subjects(cfg.evaluation).values())
    assert inputs.records and inputs.leakage_total > 500
    assert not any(subject_key(r.subject) in held for r in inputs.records)
    assert all(n > 0 for n in inputs.leakage.values())
    assert {name for name, _ in inputs.instructions} == {"wikibio-train-all-continuation",
                                                         "descriptions"}
