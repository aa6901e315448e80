"""`lte eval --serve`: the same metrics through a live `lte serve` as in this process."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from serve_support import ServerProcess, tiny_model_path

from lte.cli import main
from lte.eval.remote import TOKEN_ENV

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "eval"
TOKEN = "eval-token-0123456789"
TIMING = {"latency_ms", "edit_time_ms"}  # wall-clock figures: the only keys allowed to differ


def test_token_variable_is_the_servers():
    from lte.serve.server import TOKEN_ENV as SERVER_TOKEN_ENV

    assert TOKEN_ENV == SERVER_TOKEN_ENV


@pytest.mark.parametrize("method", ["ft-l", "prompt-only"])
def test_methods_that_cannot_run_remotely_are_refused(method, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    world = tmp_path / "w.json"
    world.write_text(json.dumps([{"subject": "A", "prompt": "Who is A?", "target_new": "B",
                                         "ground_truth": ["C"]}]))
    rc = main(["eval", "--serve", "http://127.0.0.1:9", "--data", str(world),
               "--methods", f"lte,{method}", "--out", str(tmp_path / "out")])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and method in err[0] and "--serve" in err[0]
    assert not (tmp_path / "out" / "results.json").exists()


def _metrics(path: Path) -> dict:
    runs = json.loads(path.read_text())["runs"]
    return {(r["dataset"], r["method"], r["protocol"], r["phase"], r["size"]):
            {k: v for k, v in r["metrics"].items() if k not in TIMING} for r in runs}


@pytest.mark.slow
def test_serve_backend_gives_the_in_process_metrics(tmp_path, monkeypatch):
    from lte.data.synth import write_world

    world = write_world(tmp_path / "world.json", 50, seed=11)
    model = tiny_model_path(tmp_path)
    common = ["eval", "--config", str(CONFIGS / "tiny.yaml"), "--model", model,
              "--data", str(world), "--set", "fluency_cases=4", "--set", "fluency_tokens=24"]
    # Batch at N=50 for every method that can run remotely; sequential (insert, evaluate, in
    # order) on a shorter stream, to keep the test within a minute or two on 2 cores.
    runs = {"batch": ["--methods", "lte,no-edit,gold-context", "--protocol", "batch",
                      "--sizes", "50"],
            "sequential": ["--methods", "lte", "--protocol", "sequential", "--sizes", "6"]}
    for name, flags in runs.items():
        assert main([*common, *flags, "--out", str(tmp_path / f"local-{name}")]) == 0

    server = ServerProcess(tmp_path / "memory", model, TOKEN, 2, tmp_path / "serve.log",
                           extra=("--set", "batch_wait_s=0.002"))
    server.start()
    try:
        monkeypatch.setenv(TOKEN_ENV, TOKEN)
        for name, flags in runs.items():
            assert main([*common, *flags, "--serve", server.url, "--set", "serve_concurrency=8",
                         "--set", "serve_edit_batch=16",
                         "--out", str(tmp_path / f"remote-{name}")]) == 0
        # Every edit the evaluation stored was removed again (each protocol resets the memory).
        assert httpx.get(f"{server.url}/healthz").json()["edits"] == 0
    finally:
        server.stop()
    for name in runs:
        local = _metrics(tmp_path / f"local-{name}" / "results.json")
        remote = _metrics(tmp_path / f"remote-{name}" / "results.json")
        assert local.keys() == remote.keys() and len(local) == (3 if name == "batch" else 2)
        for key, metrics in local.items():
            assert remote[key] == metrics, key
    lte50 = _metrics(tmp_path / "local-batch" / "results.json")[("world", "lte", "batch",
                                                                  "final", 50)]
    assert lte50["retrieval_hit1"] > 0.5 and lte50["edit_succ"] > 0.5  # a real signal, not zeros
