"""A tiny end-to-end evaluation on the synthetic world: `lte eval` from flags to reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from eval_support import make_editor, tiny_model, tiny_tokenizer

from lte.cli import main
from lte.config import EvalConfig, load_config

torch.set_num_threads(2)
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "eval"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny-model")
    tiny_model().save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from lte.data.synth import write_world

    return write_world(tmp_path_factory.mktemp("world") / "world.json", 12, seed=3)


def test_lte_eval_writes_every_metric_for_every_method(model_dir, world, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = main(["eval", "--config", str(CONFIGS / "tiny.yaml"), "--model", str(model_dir),
               "--base-model", str(model_dir), "--data", str(world),
               "--protocol", "batch,sequential", "--sizes", "2,4", "--out", str(out),
               "memory.embedder.name=hashing", "fluency_cases=2",
               "fluency_tokens=8", "ftl.steps=2",
               "rome.v_steps=2", "rome.context_templates=[[3, 1]]",
               "model.max_new_tokens=4"])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    runs = results["runs"]
    methods = {"lte", "no-edit", "prompt-only", "gold-context", "ft-l", "ft-m", "ice", "rome"}
    assert {r["method"] for r in runs} == methods
    # batch: 1 phase, sequential: 2 phases; 2 sizes; 8 methods; 3 aggregations.
    assert len(runs) == 8 * 2 * 3 * 3
    assert {r["aggregation"] for r in runs} == {"lte", "knowedit", "easyedit"}
    assert {(r["protocol"], r["phase"]) for r in runs} == {
        ("batch", "final"), ("sequential", "after_insert"), ("sequential", "after_stream")}
    for r in runs:
        m = r["metrics"]
        for key in ("edit_succ", "portability", "locality", "fluency", "fluency_gen",
                    "rephrase_succ", "gen_em", "latency_ms", "edit_time_ms", "edit_time_p50_ms",
                    "edit_time_p95_ms"):
            assert m[key] is not None, (r["method"], key)
        assert 0.0 <= m["edit_succ"] <= 1.0 and 0.0 <= m["locality"] <= 1.0
        assert (m["retrieval_hit1"] is not None) == (r["method"] in ("lte", "prompt-only"))
        assert r["n_cases"] == r["size"]
    no_edit = [r for r in runs if r["method"] == "no-edit"]
    assert all(r["metrics"]["locality"] == 1.0 for r in no_edit)  # nothing changed
    assert all(r["metrics"]["edit_time_ms"] < 5.0 for r in no_edit)  # stores nothing
    rome = [r for r in runs if r["method"] == "rome"]
    assert all(r["metrics"]["edit_time_p50_ms"] > 0.0 for r in rome)  # a weight update per edit
    # 6 tables (size x phase) for each of the two rendered aggregations.
    assert (out / "results.md").read_text().count("| ft-l |") == 12
    assert "aggregation: knowedit" in (out / "results.md").read_text()
    assert (out / "metric_edit_succ.png").stat().st_size > 1000
    assert (out / "config.yaml").is_file()

    capsys.readouterr()
    assert main(["eval", "report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "## world - sequential (after_insert) - N=4 - aggregation: lte" in printed
    assert "| gold-context |" in printed


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    assert main(["eval", "report", str(tmp_path)]) == 2
    assert "results.json" in capsys.readouterr().err
    assert main(["eval", "--config", str(CONFIGS / "tiny.yaml"), "--protocol", "weekly",
                 "--out", str(tmp_path)]) == 2
    assert "weekly" in capsys.readouterr().err
    assert main(["eval", "--config", str(CONFIGS / "tiny.yaml"), "--data",
                 str(tmp_path / "missing.json"), "--out", str(tmp_path / "o")]) == 2


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_eval_presets_load(path):
    cfg = load_config(EvalConfig, path)
    assert cfg.sizes and cfg.protocols
    assert path.read_text().startswith("# lte eval") or path.read_text().startswith("# tools/")


def test_evaluate_for_the_demo(model_dir, world, tmp_path):
    """`evaluate(editor, records)` returns the demo's three numbers on a real EditMemory."""
    from lte.config import EmbedderConfig, MemoryConfig
    from lte.data.readers import read_records
    from lte.eval import evaluate
    from lte.memory import EditMemory
    from lte.modeling.load import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(str(model_dir))
    memory = EditMemory.create(tmp_path / "mem", MemoryConfig(embedder=EmbedderConfig(
        name="hashing")))
    kept = memory.add(read_records(world)[8:9])
    editor = make_editor(model, tok, memory, batch_size=8)
    out = evaluate(editor, read_records(world)[:4], protocol="batch")
    for key in ("edit_succ", "locality", "retrieval_hit1"):
        assert 0.0 <= out[key] <= 1.0
    assert out["n_cases"] == 4
    assert len(memory) == len(kept)  # the memory's earlier edits stay, the run's are gone
    memory.close()


@pytest.mark.data
def test_eval_on_real_knowedit_zsre_and_counterfact(shared_data, model_dir, tmp_path):
    out = tmp_path / "real"
    rc = main(["eval", "--model", str(model_dir), "--methods", "lte,no-edit",
               "--data", str(shared_data / "knowedit" / "ZsRE-test-all.json"),
               str(shared_data / "counterfact" / "counterfact-edit-1k.json"),
               "--sizes", "3", "--out", str(out), "memory.embedder.name=hashing",
               "fluency_cases=0", "model.max_new_tokens=2"])
    assert rc == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    zsre = next(r for r in runs if r["dataset"] == "ZsRE-test-all" and r["method"] == "lte")
    # KnowEdit ZsRE: portability kinds among the three of KnowEdit, Relation_Specificity locality.
    kinds = {k for k, v in zsre["metrics"].items() if v is not None}
    port = {k for k in kinds if k.startswith("portability_")}
    assert port and port <= {"portability_Reasoning", "portability_Subject_Aliasing",
                             "portability_Logical_Generalization"}
    assert "locality_Relation_Specificity" in kinds and zsre["metrics"]["portability"] is not None
    cf = next(r for r in runs if r["dataset"] == "counterfact-edit-1k" and r["method"] == "lte")
    assert cf["metrics"]["locality"] is not None and cf["metrics"]["portability"] is None
    assert cf["metrics"]["fluency"] is None  # fluency_cases=0
