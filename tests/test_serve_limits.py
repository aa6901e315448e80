"""The ingress's request bounds (lte.serve.limits) and pre-Ray checks (lte.serve.preflight),
driven directly over ASGI and real sockets, without a server."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3

import pytest

from lte.errors import UserError
from lte.layout import EDIT_LOG
from lte.serve.limits import BUSY_BODY_TIMEOUT_S, BoundedRequests, RequestBounds
from lte.serve.preflight import check_model, check_port_free, check_shard_logs


async def echo_app(scope, receive, send):
    """Reads the whole body, answers 200 with its length."""
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


def scope(client: str, body: bool = True) -> dict:
    headers = [(b"content-length", b"10")] if body else []
    return {"type": "http", "method": "POST" if body else "GET", "path": "/",
            "client": (client, 1234), "headers": headers}


class Call:
    """One request through the middleware; `stall` keeps its body from ever completing."""

    def __init__(self, mw, client: str, stall: bool, body: bool = True):
        self.sent: list[dict] = []
        self.release = asyncio.Event()

        async def receive():
            if stall:
                await self.release.wait()
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": b"0123456789", "more_body": False}

        async def send(message):
            self.sent.append(message)

        self.task = asyncio.ensure_future(mw(scope(client, body), receive, send))

    @property
    def status(self) -> int | None:
        starts = [m for m in self.sent if m["type"] == "http.response.start"]
        return starts[0]["status"] if starts else None

    def error(self) -> dict:
        return json.loads(b"".join(m.get("body", b"") for m in self.sent))["error"]


def test_stalled_bodies_are_bounded_per_client_and_in_time():
    async def run():
        bounds = RequestBounds(body_timeout_s=0.5, max_requests_per_client=3, busy_bodies=100)
        mw = BoundedRequests(echo_app, bounds)
        stalled = [Call(mw, "10.0.0.2", stall=True) for _ in range(50)]
        await asyncio.sleep(0.05)
        # Beyond the per-client limit: 429 at once, naming the field.
        refused = [c for c in stalled if c.status == 429]
        assert len(refused) == 47 and refused[0].error()["field"] == "client"
        # Another client is served meanwhile.
        other = Call(mw, "10.0.0.3", stall=False)
        await other.task
        assert other.status == 200 and other.sent[-1]["body"] == b"10"
        # The three admitted stalled bodies end with 408 after the deadline, freeing their slots.
        await asyncio.wait_for(asyncio.gather(*(c.task for c in stalled)), 5)
        assert sorted(c.status for c in stalled) == [408] * 3 + [429] * 47
        assert [c for c in stalled if c.status == 408][0].error()["field"] == "body"
        assert not mw.open and mw.reading == 0
        again = Call(mw, "10.0.0.2", stall=False)
        await again.task
        assert again.status == 200

    asyncio.run(run())


def test_many_bodies_arriving_at_once_get_the_short_deadline():
    async def run():
        bounds = RequestBounds(body_timeout_s=30, max_requests_per_client=1000, busy_bodies=4)
        mw = BoundedRequests(echo_app, bounds)
        calm = [Call(mw, "10.0.0.2", stall=True) for _ in range(4)]
        busy = [Call(mw, "10.0.0.2", stall=True) for _ in range(6)]
        get = Call(mw, "10.0.0.2", stall=True, body=False)  # no body: not counted, not bounded
        await asyncio.wait_for(asyncio.gather(*(c.task for c in busy)), BUSY_BODY_TIMEOUT_S + 2)
        assert [c.status for c in busy] == [408] * 6
        assert [c.status for c in calm] == [None] * 4  # still within their 30 s
        for c in calm:
            c.release.set()
        await asyncio.gather(*(c.task for c in calm))
        assert not get.task.done()
        get.release.set()
        await get.task
        assert mw.reading == 0 and not mw.open

    asyncio.run(run())


def test_port_in_use_is_one_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(UserError, match=f"port {port} on 127.0.0.1 is already in use"):
            check_port_free("127.0.0.1", port)
    check_port_free("127.0.0.1", port)  # free again once closed


def test_missing_model_and_damaged_shard_log_name_the_file(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="model.name_or_path.*no model folder"):
        check_model(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="has no config.json"):
        check_model(str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(UserError, match="nor in the Hugging Face cache"):
        check_model("someone/not-cached-model")
    good, bad = tmp_path / "shard-0", tmp_path / "shard-1"
    for folder in (good, bad):
        folder.mkdir()
    sqlite3.connect(good / EDIT_LOG).execute("CREATE TABLE t (x)").connection.close()
    (bad / EDIT_LOG).write_bytes(b"garbage" * 1000)
    check_shard_logs([good])
    with pytest.raises(UserError, match=f"{bad / EDIT_LOG}: not a readable edit log"):
        check_shard_logs([good, bad])


# ---- `lte serve` refuses before Ray starts ----------------------------------------------------

def _serve(tmp_path, *args):
    import os
    import subprocess
    import sys

    env = {**os.environ, "LTE_API_TOKEN": "t0ken-for-tests"}
    return subprocess.run([sys.executable, "-m", "lte", "serve", "--memory-dir",
                           str(tmp_path / "m"), *args], capture_output=True, text=True, env=env,
                          timeout=120)


def _one_line_exit_2(out, *needles):
    assert out.returncode == 2, out.stderr[-2000:]
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0]
    assert "Ray instance" not in out.stdout + out.stderr  # refused before Ray started


def test_serve_refuses_a_busy_port_a_missing_model_and_a_damaged_shard_log(tmp_path):
    from lte.config import MemoryConfig
    from lte.serve.sharding import prepare_root, shard_dir

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = _serve(tmp_path, "--port", str(port))
    _one_line_exit_2(out, "'port'", f"port {port} on 127.0.0.1 is already in use")
    assert not (tmp_path / "m").exists()  # refused before anything was written

    out = _serve(tmp_path, f"model.name_or_path={tmp_path / 'no-model'}")
    _one_line_exit_2(out, "model.name_or_path", str(tmp_path / "no-model"))

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    prepare_root(tmp_path / "m", 2, MemoryConfig().embedder.name)
    log = shard_dir(tmp_path / "m", 1) / EDIT_LOG
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"\x00garbage" * 512)
    out = _serve(tmp_path, f"model.name_or_path={model}", "memory.shards=2")
    _one_line_exit_2(out, str(log), "not a readable edit log")


def test_serve_on_a_ray_cluster_needs_ray_token_auth(tmp_path, monkeypatch):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    out = _serve(tmp_path, f"model.name_or_path={model}", "ray_address=auto")
    _one_line_exit_2(out, "'ray_address'", "RAY_AUTH_MODE=token")
