"""A real `lte serve` process for HTTP tests: free port, start, wait for /healthz, SIGKILL tree."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

START_TIMEOUT_S = float(os.environ.get("LTE_TEST_SERVE_TIMEOUT", "600"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_model_path(tmp_dir: Path) -> str:
    """The shipped `lte:tiny` when present, else a tiny random model built here."""
    from lte.errors import UserError
    from lte.modeling.load import resolve_model_path

    try:
        resolve_model_path("lte:tiny")
        return "lte:tiny"
    except UserError:
        pass
    from lte.data.synth import record_texts, synth_records
    from lte.modeling.tiny import write_tiny_model

    texts = record_texts(synth_records(200, 0))
    return str(write_tiny_model(tmp_dir / "tiny-model", texts, vocab_size=512, heads=2))


class ServerProcess:
    """`python -m lte serve` in its own session; the whole process tree can be SIGKILLed."""

    def __init__(self, memory_dir: Path, model: str, token: str, shards: int, log: Path,
                 extra: tuple[str, ...] = ()):
        self.memory_dir, self.model, self.token, self.shards = memory_dir, model, token, shards
        self.log_path, self.extra = log, extra
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    def start(self) -> None:
        self.port = free_port()
        env = {**os.environ, "LTE_API_TOKEN": self.token, "RAY_AUTH_MODE": "disabled"}
        cmd = [sys.executable, "-m", "lte", "serve", "--port", str(self.port),
               "--memory-dir", str(self.memory_dir), f"memory.shards={self.shards}",
               f"model.name_or_path={self.model}", *self.extra]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"lte serve exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        self.kill_tree()
        raise RuntimeError(f"lte serve not healthy after {START_TIMEOUT_S}s:\n{self.tail()}")

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def tree(self) -> list[psutil.Process]:
        if self.proc is None:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill_tree(self) -> list[psutil.Process]:
        """SIGKILL the server and every process below it; returns the processes killed."""
        procs = self.tree()
        _kill(procs)
        if self.proc is not None:
            self.proc.wait(timeout=30)
        return procs

    def stop(self) -> None:
        """SIGTERM (the clean shutdown path), then SIGKILL whatever is left."""
        if self.proc is None or self.proc.poll() is not None:
            self.kill_tree()
            return
        procs = self.tree()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        _kill(procs)


def _kill(procs: list[psutil.Process]) -> None:
    """SIGKILL each process still alive and wait for them all."""
    for p in procs:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=30)
