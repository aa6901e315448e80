"""A real `lte serve` process for HTTP tests: free port, start, wait for /healthz, SIGKILL tree."""

from __future__ import annotations

import os
import re
import shutil
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

    def __init__(self, memory_dir: Path, model: str, token: str, shards: int | None, log: Path,
                 extra: tuple[str, ...] = (), config: Path | None = None,
                 env: dict | None = None):
        """`shards` None: the config's; `env` is added to the server's (e.g. Ray's auth)."""
        self.memory_dir, self.model, self.token, self.shards = memory_dir, model, token, shards
        self.log_path, self.extra, self.config, self.env = log, extra, config, env or {}
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
        env = {**os.environ, "LTE_API_TOKEN": self.token, "RAY_AUTH_MODE": "disabled",
               **self.env}
        cmd = [sys.executable, "-m", "lte", "serve", "--port", str(self.port),
               "--memory-dir", str(self.memory_dir),
               *(["--config", str(self.config)] if self.config else []),
               f"model.name_or_path={self.model}",
               *([f"memory.shards={self.shards}"] if self.shards is not None else []),
               *self.extra]
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
        return _tree(self.proc)

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
        _terminate(self.proc, timeout=60)


class RayHead:
    """`ray start --head --block` with Ray's token auth, for `lte serve ray_address=...` runs.

    Its temp folder is its own (so `ray_address=auto` elsewhere on the machine never finds it)
    and it is stopped by killing its own process tree, never with `ray stop`, which would stop
    every Ray instance of the machine.
    """

    def __init__(self, root: Path, num_cpus: int, env: dict | None = None):
        """`env`: the head's environment beyond Ray's auth; the cluster's actors (Serve's
        controller, proxy, replicas) inherit it, not the driver's."""
        import secrets
        import tempfile

        self.root, self.num_cpus = root, num_cpus
        # short: Ray's socket paths under the temp folder must fit in 107 bytes
        self.temp_dir = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
        token = root / "ray-auth-token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        self.env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
        self.head_env = {**(env or {}), **self.env}
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = root / "ray-head.log"

    @property
    def address(self) -> str:
        return f"{self._node_ip}:{self.port}"

    def start(self, attempts: int = 3) -> None:
        """Up to `attempts` starts: Ray gives its raylet a fixed 30 s to register with the GCS,
        which a loaded 2-core box can miss; the start then fails and is simply retried."""
        for attempt in range(1, attempts + 1):
            if self._start_once():
                return
            self._kill_tree()
            if attempt < attempts:
                self.port = free_port()
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        raise RuntimeError(f"ray start failed {attempts} times:\n"
                           f"{self.log_path.read_text(errors='replace')[-3000:]}")

    def _start_once(self) -> bool:
        ray = Path(sys.executable).with_name("ray")
        cmd = [str(ray), "start", "--head", f"--port={self.port}", f"--num-cpus={self.num_cpus}",
               "--num-gpus=0", "--include-dashboard=false", f"--temp-dir={self.temp_dir}",
               "--disable-usage-stats", "--block"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         env={**os.environ, **self.head_env},
                                         start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        ready = re.compile(rf"ray start --address='([^']+):{self.port}'")
        while time.monotonic() < deadline and self.proc.poll() is None:
            found = ready.search(self.log_path.read_text(errors="replace"))
            if found:
                self._node_ip = found.group(1)
                return True
            time.sleep(0.5)
        return False

    def stop(self) -> None:
        self._kill_tree()
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def _kill_tree(self) -> None:
        """SIGTERM (ray start stops its processes), then SIGKILL the tree as it was."""
        if self.proc is None:
            return
        _terminate(self.proc, timeout=30)
        self.proc = None


def _tree(proc: subprocess.Popen | None) -> list[psutil.Process]:
    """proc and every process below it, as they are now."""
    if proc is None:
        return []
    try:
        root = psutil.Process(proc.pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _terminate(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM proc, wait up to `timeout`, then SIGKILL its tree as it was before the signal
    (collected first: children such as Ray's agents outlive their parent, re-parented to init)."""
    procs = _tree(proc)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
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
