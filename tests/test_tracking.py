"""W&B runs with WANDB_MODE=offline: each command's run folder holds the keys users watch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from eval_support import tiny_model, tiny_tokenizer
from wandb_support import offline_runs, read_run

from lte.cli import main

torch.set_num_threads(2)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def _has_prefix(keys: set, prefix: str) -> bool:
    return any(k == prefix or k.startswith(prefix + "/") for k in keys)


def test_no_project_means_no_run(tmp_path):
    from lte.tracking import wandb_run

    with wandb_run(None, "eval", folder=tmp_path / "x") as run:
        assert run is None
    assert not offline_runs(tmp_path)


def test_eval_run_has_tables_plots_config_and_memory_size(tmp_path):
    from lte.data.synth import write_world

    model = tmp_path / "model"
    tiny_model().save_pretrained(model)
    tiny_tokenizer().save_pretrained(model)
    world = write_world(tmp_path / "world.json", 4, seed=3)
    out = tmp_path / "eval"
    assert main(["eval", "--config", str(ROOT / "configs/eval/tiny.yaml"), "--model", str(model),
                 "--data", str(world), "--methods", "lte,no-edit", "--sizes", "2,3",
                 "--out", str(out), "memory.embedder.name=hashing",
                 "fluency_cases=1", "fluency_tokens=4",
                 "model.max_new_tokens=3", "wandb_project=lte-test"]) == 0
    [run_dir] = offline_runs(out)
    run = read_run(run_dir)
    assert run["job_type"] == "eval"
    assert {"model", "memory", "methods", "sizes", "backend"} <= run["config"]
    for key in ("results", "results/lte", "results/no-edit", "plots/metric_edit_succ",
                "plots/metric_locality"):
        assert _has_prefix(run["history"], key), key
    for key in ("world/lte/batch-final/N3/edit_succ", "world/no-edit/batch-final/N2/locality",
                "memory/max_edits_held", "memory/live", "memory/deleted", "memory/disk_bytes"):
        assert key in run["summary"], key


def test_load_test_run_has_throughput_and_latency_over_time(tmp_path):
    from lte.serve.loadtest import RunStats, log_wandb

    timeline = [(0.1 * i, "edit" if i % 2 else "query", 0.01 * (1 + i % 5)) for i in range(1, 60)]
    stats = RunStats("serve", 6.0, edits=30, queries=29, errors=0,
                     latencies={"edit": [0.01], "query": [0.02]}, timeline=timeline)
    result = {"url": "http://x", "concurrency": 4, "serve": stats.summary(),
              "baseline": stats.summary(), "wall_ratio": 1.1, "overhead_pct": 10.0}
    log_wandb("lte-test", result, [stats], folder=tmp_path)
    [run_dir] = offline_runs(tmp_path)
    run = read_run(run_dir)
    assert run["job_type"] == "bench-serve"
    assert {"time_s", "serve/ops_per_s", "serve/edit_p50_ms", "serve/query_p99_ms"} <= \
        run["history"]
    assert {"wall_ratio", "serve/edits_per_s", "baseline/query_p50_ms"} <= run["summary"]
    assert {"url", "concurrency"} <= run["config"]


@pytest.mark.slow
def test_memory_benchmark_run_logs_each_size(tmp_path):
    cmd = [sys.executable, str(ROOT / "tools/bench_memory.py"), "--sizes", "300",
           "--index", "Flat", "--embedder", "hashing", "--queries", "20", "--text-queries", "3",
           "--no-baseline", "--cache", str(tmp_path / "cache"), "--workdir", str(tmp_path),
           "--wandb-project", "lte-test"]
    subprocess.run(cmd, check=True, cwd=tmp_path, capture_output=True, timeout=600)
    [run_dir] = offline_runs(tmp_path)
    run = read_run(run_dir)
    assert run["job_type"] == "bench-memory"
    assert any(k.startswith("search/") for k in run["history"]), sorted(run["history"])
    assert any(k.startswith("ingest/") for k in run["history"]), sorted(run["history"])
    assert "open_seconds" in run["summary"]
