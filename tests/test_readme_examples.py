"""The README's serving examples, run as written against a live `lte serve` of the shipped
default: every edit they store is answered with its new object by the queries that follow.

The curl lines are read out of the README's code blocks and sent with httpx (curl itself may be
missing on a fresh machine); the `python -c` line with the openai client runs as a subprocess.
Only the port and the token differ from the README.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from serve_support import ServerProcess

from lte.demo import gives_answer

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
README_PORT = "8765"
README_TOKEN = "secret"
TOKEN = "readme-token-0123456789"


def readme_commands() -> list[str]:
    """Shell commands of the README's code blocks that talk to the server on README_PORT."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", (REPO / "README.md").read_text(), re.M | re.S)
    commands = []
    for block in blocks:
        joined = re.sub(r"\\\n\s*", " ", block)  # shell line continuations
        # `python -c '...'` spans lines inside its quotes: keep each command whole.
        for cmd in re.findall(r"^(curl .*?$|python -c '.*?'.*?$)", joined, re.M | re.S):
            if f":{README_PORT}" in cmd:
                commands.append(cmd)
    return commands


def curl_request(cmd: str) -> dict:
    """The method, URL, headers and JSON body of a curl command (the flags the README uses)."""
    args = shlex.split(cmd)[1:]
    req = {"method": None, "headers": {}, "body": None, "url": None}
    it = iter(args)
    for a in it:
        if a == "-s":
            continue
        if a == "-X":
            req["method"] = next(it)
        elif a == "-H":
            name, value = next(it).split(":", 1)
            req["headers"][name.strip()] = value.strip()
        elif a in ("-d", "--data"):
            req["body"] = json.loads(next(it))
        elif a.startswith("-"):
            raise AssertionError(f"README curl flag {a} is not handled by this test: {cmd}")
        else:
            req["url"] = a
    req["method"] = req["method"] or ("POST" if req["body"] is not None else "GET")
    return req


def test_readme_parsing_finds_the_serving_examples():
    """Not about the server: the README still holds an edit, a query and a chat example."""
    cmds = readme_commands()
    paths = [curl_request(c)["url"].split(README_PORT, 1)[1] for c in cmds if c.startswith("curl")]
    assert "/v1/edits" in paths and "/v1/query" in paths and "/v1/chat/completions" in paths
    assert any(c.startswith("python -c") and "openai" in c for c in cmds)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("readme")
    srv = ServerProcess(tmp / "memory", "lte:tiny", TOKEN, None, tmp / "serve.log",
                        config=REPO / "configs" / "serve" / "tiny.yaml")
    srv.start()
    yield srv
    srv.stop()


def test_readme_serving_examples_answer_with_the_new_object(server):
    stored: dict[str, str] = {}  # descriptor -> new object, of the edits the README stores
    answered = 0
    base = f"http://127.0.0.1:{server.port}"
    for cmd in readme_commands():
        cmd = cmd.replace(f"localhost:{README_PORT}", f"127.0.0.1:{server.port}") \
                 .replace(f"127.0.0.1:{README_PORT}", f"127.0.0.1:{server.port}")
        if cmd.startswith("python -c"):
            cmd = cmd.replace("python -c", f"{sys.executable} -c", 1)
            out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=300)
            assert out.returncode == 0, out.stderr
            answer = out.stdout.strip()
            assert any(gives_answer(answer, t) for t in stored.values()), (cmd, answer)
            answered += 1
            continue
        req = curl_request(cmd.replace(f"Bearer {README_TOKEN}", f"Bearer {TOKEN}"))
        url = req["url"] if "://" in req["url"] else f"http://{req['url']}"
        r = httpx.request(req["method"], url, headers=req["headers"], json=req["body"],
                          timeout=300)
        assert r.status_code == 200, (cmd, r.text)
        path = url.removeprefix(base)
        body = r.json()
        if path == "/v1/edits":
            for e in req["body"]["edits"]:
                stored[f"{e['prompt']} {e['target_new']}"] = e["target_new"]
        elif path == "/v1/query":
            top = body["retrieved"][0]["descriptor"]
            assert top in stored, (cmd, body)
            assert gives_answer(body["answer"], stored[top]), (cmd, body["answer"], stored[top])
            answered += 1
        elif path == "/v1/chat/completions":
            top = body["retrieved"][0]["descriptor"]
            content = body["choices"][0]["message"]["content"]
            assert top in stored and gives_answer(content, stored[top]), (cmd, content)
            answered += 1
    assert stored and answered >= 3
