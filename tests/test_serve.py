"""lte.serve without a server: request validation, shard placement and ids, token rules, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lte.config import ServeConfig, load_config
from lte.errors import UserError
from lte.serve import sharding
from lte.serve.server import deploy_failure_line, is_loopback, resolve_token
from lte.serve.validation import (
    ApiError,
    Limits,
    parse_edit_id,
    parse_edits,
    parse_json,
    parse_query,
)

LIMITS = Limits(max_body_bytes=1000, max_edits_per_request=3, max_field_chars=50, max_k=4,
                max_new_tokens=512)
EDIT = {"subject": "Ada", "prompt": "Where was Ada born?", "target_new": "Paris"}


def _error(fn, *args) -> ApiError:
    with pytest.raises(ApiError) as info:
        fn(*args)
    return info.value


# ---- validation ------------------------------------------------------------------------------

def test_valid_edits_become_records():
    records = parse_edits({"edits": [EDIT, {**EDIT, "case_id": "c1",
                                            "rephrase_prompts": ["Ada's birthplace?"]}]}, LIMITS)
    assert [r.target_new for r in records] == ["Paris", "Paris"]
    assert records[1].case_id == "c1" and records[1].rephrase_prompts == ["Ada's birthplace?"]
    assert records[0].case_id != records[1].case_id  # generated ids are unique
    assert records[0].descriptor == "Where was Ada born? Paris"


@pytest.mark.parametrize("payload, field, status", [
    ([], "body", 422),
    ({}, "edits", 422),
    ({"edits": {}}, "edits", 422),
    ({"edits": []}, "edits", 422),
    ({"edits": [EDIT] * 4}, "edits", 413),
    ({"edits": [EDIT], "extra": 1}, "extra", 422),
    ({"edits": [EDIT, {"subject": "Ada", "prompt": "Q?"}]}, "edits[1].target_new", 422),
    ({"edits": [{**EDIT, "prompt": 3}]}, "edits[0].prompt", 422),
    ({"edits": [{**EDIT, "prompt": "   "}]}, "edits[0].prompt", 422),
    ({"edits": [{**EDIT, "prompt": "x" * 51}]}, "edits[0].prompt", 422),
    ({"edits": [{**EDIT, "prompt": "a\x00b"}]}, "edits[0].prompt", 422),
    ({"edits": [{**EDIT, "prompt": "a\ud800b"}]}, "edits[0].prompt", 422),
    ({"edits": [{**EDIT, "prompt": "\u200b"}]}, "edits[0].prompt", 422),
    ({"edits": [{**EDIT, "target_new": "\x1b[31m"}]}, "edits[0].target_new", 422),
    ({"edits": [{**EDIT, "subject": "\x1b[1m\u200b\ufeff \x1b]0;t\x07"}]}, "edits[0].subject", 422),
    ({"edits": [{**EDIT, "colour": "red"}]}, "edits[0].colour", 422),
    ({"edits": [{**EDIT, "rephrase_prompts": "one"}]}, "edits[0].rephrase_prompts", 422),
    ({"edits": [{**EDIT, "rephrase_prompts": ["ok", 5]}]}, "edits[0].rephrase_prompts[1]", 422),
    ({"edits": ["not an object"]}, "edits[0]", 422),
])
def test_bad_edits_name_the_field(payload, field, status):
    err = _error(parse_edits, payload, LIMITS)
    assert (err.field, err.status) == (field, status)
    assert err.body() == {"error": {"field": field, "message": err.message}}


def test_query_defaults_and_checks():
    # Visible text around invisible characters is kept as sent.
    assert parse_query({"question": "Where\u200b is \x1b[1mAda\x1b[0m?"}, LIMITS, 1).question \
        == "Where\u200b is \x1b[1mAda\x1b[0m?"
    q = parse_query({"question": "Where was Ada born?"}, LIMITS, default_k=2)
    assert (q.k, q.target, q.generate) == (2, None, True)
    q = parse_query({"question": "Q?", "k": 4, "target": "Paris", "generate": False}, LIMITS, 1)
    assert (q.k, q.target, q.generate) == (4, "Paris", False)
    for payload, field in [({"k": 1}, "question"), ({"question": "Q?", "k": 0}, "k"),
                           ({"question": "Q?", "k": 5}, "k"), ({"question": "Q?", "k": True}, "k"),
                           ({"question": "Q?", "k": 1.0}, "k"),
                           ({"question": "Q?", "generate": "yes"}, "generate"),
                           ({"question": "Q?", "target": ""}, "target"),
                           ({"question": "\u200b"}, "question"),
                           ({"question": "\x1b[31m"}, "question"),
                           ({"question": "Q?", "top": 3}, "top")]:
        assert _error(parse_query, payload, LIMITS, 1).field == field


def test_query_scoring_fields():
    q = parse_query({"question": "Q?"}, LIMITS, 1)
    assert (q.targets, q.hits_k, q.descriptors, q.max_new_tokens, q.min_new_tokens) == \
        ((), None, None, None, 0)
    q = parse_query({"question": "Q?", "k": 2, "hits_k": 3, "targets": ["a", "b"],
                     "descriptors": [], "max_new_tokens": 8, "min_new_tokens": 8}, LIMITS, 1)
    assert (q.targets, q.hits_k, q.descriptors, q.max_new_tokens, q.min_new_tokens) == \
        (("a", "b"), 3, (), 8, 8)
    for payload, field in [({"question": "Q?", "k": 2, "hits_k": 1}, "hits_k"),
                           ({"question": "Q?", "hits_k": 99}, "hits_k"),
                           ({"question": "Q?", "targets": []}, "targets"),
                           ({"question": "Q?", "targets": "a"}, "targets"),
                           ({"question": "Q?", "targets": ["a", ""]}, "targets[1]"),
                           ({"question": "Q?", "descriptors": [3]}, "descriptors[0]"),
                           ({"question": "Q?", "max_new_tokens": 0}, "max_new_tokens"),
                           ({"question": "Q?", "max_new_tokens": 10_000}, "max_new_tokens"),
                           ({"question": "Q?", "max_new_tokens": 4, "min_new_tokens": 5},
                            "min_new_tokens")]:
        assert _error(parse_query, payload, LIMITS, 1).field == field


@pytest.mark.parametrize("raw, status", [
    (b"", 400), (b"  ", 400), (b"{", 400), (b"\xff\xfe{}", 400), (b"[" * 5000 + b"]" * 5000, 400),
    (b'{"k": 1' + b"0" * 5000 + b"}", 400), (b"x" * 100_001, 413),
])
def test_bad_bodies(raw, status):
    err = _error(parse_json, raw, Limits.from_config(ServeConfig(max_body_bytes=100_000)))
    assert (err.field, err.status) == ("body", status)


def test_edit_ids():
    assert parse_edit_id("17") == 17
    for bad in ("-1", "abc", "1.5", "", "١٢", "9" * 19):
        assert _error(parse_edit_id, bad).field == "id"


# ---- sharding --------------------------------------------------------------------------------

def test_ids_encode_the_shard_and_never_collide():
    n = 3
    seen = set()
    for shard in range(n):
        for local in range(1, 50):
            gid = sharding.to_global(local, shard, n)
            assert sharding.from_global(gid, n) == (shard, local)
            seen.add(gid)
    assert len(seen) == 3 * 49


def test_placement_is_stable_and_spreads():
    # Stable across processes (no salted hash): a fixed value pins the function.
    assert sharding.shard_of("Ada", "Where was Ada born?", 4) == \
        sharding.shard_of("Ada", "Where was Ada born?", 4)
    code = ("from lte.serve.sharding import shard_of; "
            "print(shard_of('Ada', 'Where was Ada born?', 7))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={**os.environ, "PYTHONHASHSEED": "123"}, check=True)
    assert int(other.stdout) == sharding.shard_of("Ada", "Where was Ada born?", 7)
    counts = [0] * 4
    for i in range(400):
        counts[sharding.shard_of(f"s{i}", f"q{i}?", 4)] += 1
    assert min(counts) > 60


def test_edits_that_may_conflict_meet_in_one_shard(tmp_path):
    """One subject (case and spaces folded) -> one shard, whatever the question: that shard's
    log decides whether a new wording of a fact supersedes the old one."""
    shard = sharding.shard_of("Ada", "Where was Ada born?", 8)
    assert all(sharding.shard_of(s, q, 8) == shard for s, q in [
        ("ada ", "Ada's birthplace?"), ("ADA", "What did Ada study?")])
    # No subject: the question (folded) places it.
    assert sharding.shard_of("", "Is it raining?", 8) == sharding.shard_of(" ", "is it RAINING?", 8)
    assert len({sharding.shard_of("", f"q{i}?", 8) for i in range(64)}) > 1
    # A folder first served before (no placement in serve.json) keeps its subject+question rule.
    root = tmp_path / "old"
    root.mkdir()
    (root / "serve.json").write_text(json.dumps({"shards": 8, "embedder": "all-MiniLM-L6-v2"}))
    sharding.prepare_root(root, 8, "all-MiniLM-L6-v2")
    assert sharding.root_placement(root) == sharding.SUBJECT_QUESTION
    legacy = [sharding.shard_of("Ada", f"question {i}?", 8, sharding.SUBJECT_QUESTION)
              for i in range(32)]
    assert len(set(legacy)) > 1


def test_merge_hits_takes_the_global_top_k():
    a = [{"id": 0, "score": 0.9}, {"id": 3, "score": 0.2}]
    b = [{"id": 1, "score": 0.5}, {"id": 4, "score": 0.5}]
    assert [h["id"] for h in sharding.merge_hits([a, b], 3)] == [0, 1, 4]


def test_memory_root_remembers_its_shard_count_and_embedder(tmp_path):
    root = tmp_path / "mem"
    folders = sharding.prepare_root(root, 3, "all-MiniLM-L6-v2")
    assert [f.name for f in folders] == ["shard-000", "shard-001", "shard-002"]
    assert json.loads((root / "serve.json").read_text()) == {
        "shards": 3, "embedder": "all-MiniLM-L6-v2", "placement": "subject"}
    assert sharding.root_placement(root) == "subject"
    assert sharding.prepare_root(root, 3, "all-MiniLM-L6-v2") == folders
    with pytest.raises(UserError, match="memory.shards=3"):
        sharding.prepare_root(root, 2, "all-MiniLM-L6-v2")
    # the ingress embeds questions for every shard: another embedder would search in vain
    with pytest.raises(UserError, match="all-MiniLM-L6-v2"):
        sharding.prepare_root(root, 3, "multi-qa-mpnet-base-dot-v1")
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.txt").write_text("x")
    with pytest.raises(UserError, match="serve.json"):
        sharding.prepare_root(other, 1)


# ---- token and host ----------------------------------------------------------------------------

def test_token_rules(monkeypatch):
    monkeypatch.delenv("LTE_API_TOKEN", raising=False)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    token, generated = resolve_token(ServeConfig())
    assert generated and len(token) >= 24
    assert resolve_token(ServeConfig(token="cfg")) == ("cfg", False)
    with pytest.raises(UserError, match="non-loopback"):
        resolve_token(ServeConfig(host="0.0.0.0"))
    monkeypatch.setenv("LTE_API_TOKEN", "env")
    assert resolve_token(ServeConfig(host="0.0.0.0", token="cfg")) == ("env", False)


def test_config_checks():
    with pytest.raises(UserError) as info:
        load_config(ServeConfig, None, ["port=0", "batch_wait_s=-1", "token=' '", "colour=1"])
    for part in ("serve.port", "serve.batch_wait_s", "serve.token", "colour"):
        assert part in str(info.value)
    with pytest.raises(UserError) as info:
        load_config(ServeConfig, None, ["auth=reads", "body_timeout_s=0",
                                        "max_requests_per_client=0"])
    for part in ("serve.auth", "serve.body_timeout_s", "serve.max_requests_per_client"):
        assert part in str(info.value)
    assert load_config(ServeConfig, None, ["auth=all"]).auth == "all"


def test_cli_refuses_public_host_without_token(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "LTE_API_TOKEN"}
    out = subprocess.run([sys.executable, "-m", "lte", "serve", "--host", "0.0.0.0",
                          "--memory-dir", str(tmp_path / "m")], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 2
    assert "non-loopback" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "m").exists()  # refused before anything was written


def test_bench_needs_a_token():
    env = {k: v for k, v in os.environ.items() if k != "LTE_API_TOKEN"}
    out = subprocess.run([sys.executable, "-m", "lte", "bench", "serve", "--url",
                          "http://127.0.0.1:9"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 2 and "LTE_API_TOKEN" in out.stderr


def test_bench_reads_the_token_from_a_file_never_a_flag(tmp_path):
    from lte.serve.cli import read_token_file

    (tmp_path / "token").write_text("s3cret\n")
    assert read_token_file(str(tmp_path / "token")) == "s3cret"
    (tmp_path / "empty").write_text(" \n")
    for name, message in (("empty", "empty"), ("missing", "cannot read")):
        with pytest.raises(UserError, match=message):
            read_token_file(str(tmp_path / name))
    out = subprocess.run([sys.executable, "-m", "lte", "bench", "serve", "--url",
                          "http://127.0.0.1:9", "--token", "s3cret"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2 and "--token-file" in out.stderr and "Traceback" not in out.stderr


def test_a_failed_deployment_becomes_its_exception_line():
    message = ("Deploying application lte failed: The deployment failed to start 3 times in a "
               "row. See controller logs for details. Error:\nTraceback (most recent call last):"
               "\n  File \"x.py\", line 3, in __init__\n    open(path)\n"
               "lte.errors.UserError: /m/shard-000/edits.sqlite: not a readable edit log\n")
    assert deploy_failure_line(message) == "UserError: /m/shard-000/edits.sqlite: not a " \
        "readable edit log"
    assert deploy_failure_line("something odd happened") == "something odd happened"


def test_generator_replicas_from_the_config():
    from lte.config import MemoryConfig, ServeConfig
    from lte.serve.replicas import generator_scaling, replicas_per_gpu

    assert generator_scaling(ServeConfig()) == {"num_replicas": 1}
    assert generator_scaling(ServeConfig(generator_replicas=2)) == {"num_replicas": 2}
    auto = generator_scaling(ServeConfig(generator_replicas=1, generator_max_replicas=4))
    assert auto["autoscaling_config"]["min_replicas"] == 1
    assert auto["autoscaling_config"]["max_replicas"] == 4
    gpu = ServeConfig(memory=MemoryConfig(shards=4), generator_replicas=0, generator_num_gpus=0.9,
                      shard_num_gpus=0.1)
    assert replicas_per_gpu(gpu, 8) == 8  # one per GPU; the shards' 0.4 fit beside them
    assert replicas_per_gpu(gpu, 16) == 16
    assert generator_scaling(gpu, cluster_gpus=8) == {"num_replicas": 8}
    with pytest.raises(UserError, match="generator_replicas"):
        replicas_per_gpu(gpu, 0)
