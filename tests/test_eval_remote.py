"""`lte eval --serve`: the same metrics through a live `lte serve` as in this process."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from serve_support import ServerProcess, tiny_model_path
from wandb_support import offline_runs, read_run

from lte.cli import main
from lte.eval.remote import TOKEN_ENV

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "eval"
TOKEN = "eval-token-0123456789"
TIMING = {"latency_ms", "edit_time_ms", "edit_time_p50_ms", "edit_time_p95_ms"}  # wall-clock figures: the only keys allowed to differ


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


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One live `lte serve` (2 shards, the tiny model) for every test of this module."""
    tmp = tmp_path_factory.mktemp("serve")
    proc = ServerProcess(tmp / "memory", tiny_model_path(tmp), TOKEN, 2, tmp / "serve.log",
                         extra=("batch_wait_s=0.002",))
    proc.start()
    yield proc
    proc.stop()


@pytest.mark.slow
def test_serve_backend_gives_the_in_process_metrics(server, tmp_path, monkeypatch):
    from lte.data.synth import write_world

    world = write_world(tmp_path / "world.json", 50, seed=11)
    common = ["eval", "--config", str(CONFIGS / "tiny.yaml"), "--model", server.model,
              "--data", str(world), "fluency_cases=4", "fluency_tokens=24"]
    # Batch at N=50 for LTE and a baseline with given descriptors (no-edit is the same path with
    # none, as in the pre-edit pass); sequential (insert, evaluate, in order) on a shorter
    # stream, to keep the test short on 2 cores.
    runs = {"batch": ["--methods", "lte,gold-context", "--protocol", "batch", "--sizes", "50"],
            "sequential": ["--methods", "lte", "--protocol", "sequential", "--sizes", "5"]}
    for name, flags in runs.items():
        assert main([*common, *flags, "--out", str(tmp_path / f"local-{name}")]) == 0
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    monkeypatch.setenv("WANDB_MODE", "offline")
    for name, flags in runs.items():
        assert main([*common, *flags, "--serve", server.url, "serve_concurrency=8",
                     "serve_edit_batch=16", "wandb_project=lte-test",
                     "--out", str(tmp_path / f"remote-{name}")]) == 0
    # Every edit the evaluation stored was removed again (each protocol resets the memory).
    assert httpx.get(f"{server.url}/healthz").json()["edits"] == 0
    for name in runs:
        local = _metrics(tmp_path / f"local-{name}" / "results.json")
        remote = _metrics(tmp_path / f"remote-{name}" / "results.json")
        assert local.keys() == remote.keys() and len(local) == 2
        for key, metrics in local.items():
            assert remote[key] == metrics, key
    lte50 = _metrics(tmp_path / "local-batch" / "results.json")[("world", "lte", "batch",
                                                                  "final", 50)]
    assert lte50["retrieval_hit1"] > 0.5 and lte50["edit_succ"] > 0.5  # a real signal, not zeros
    [wandb_dir] = offline_runs(tmp_path / "remote-batch")
    run = read_run(wandb_dir)
    assert run["job_type"] == "eval-serve" and {"serve_url", "backend"} <= run["config"]
    assert "world/lte/batch-final/N50/edit_succ" in run["summary"]
    assert "memory/live" in run["summary"]


@pytest.mark.slow
def test_openai_client_gets_the_edited_answer(server):
    import openai

    from lte.data.synth import synth_records

    records = synth_records(3, seed=5)
    body = {"edits": [{"subject": r.subject, "prompt": r.prompt, "target_new": r.target_new}
                      for r in records]}
    ids = httpx.post(f"{server.url}/v1/edits", json=body, headers=server.auth).json()["ids"]
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="reads-need-no-token")
    assert [m.id for m in client.models.list()] == ["lte"]
    edited = 0
    for edit_id, r in zip(ids, records, strict=True):
        done = client.chat.completions.create(
            model="lte", messages=[{"role": "system", "content": "ignored"},
                                   {"role": "user", "content": r.prompt}])
        content = done.choices[0].message.content
        assert done.model_extra["retrieved"][0]["id"] == edit_id
        query = httpx.post(f"{server.url}/v1/query", json={"question": r.prompt}).json()
        assert content == query["answer"]  # the same editing prompt, the same greedy answer
        edited += content == r.target_new
    assert edited >= 2, "the tiny model should answer most stored edits with the new target"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user",
                                                                  "content": "q"}])
