"""`lte serve`: start (or join) Ray, deploy the application, stay in the foreground.

Order of a run: check the config and the token, prepare the memory folder, start Ray and Serve's
HTTP proxy on the configured host and port, deploy (EditMemoryShard x shards, Generator, Api),
print the URL, wait for Ctrl-C or SIGTERM, then shut Serve and Ray down.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

from lte.config import ServeConfig
from lte.errors import UserError

TOKEN_ENV = "LTE_API_TOKEN"
APP_NAME = "lte"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_token(cfg: ServeConfig) -> tuple[str, bool]:
    """(token, generated): env LTE_API_TOKEN, else the config's, else (loopback only) a new one."""
    token = os.environ.get(TOKEN_ENV) or cfg.token
    if token:
        return token, False
    if not is_loopback(cfg.host):
        raise UserError(f"refusing to listen on non-loopback host {cfg.host!r} without a token; "
                        f"set {TOKEN_ENV} or serve.token", field="host")
    return secrets.token_urlsafe(24), True


def build_app(cfg: ServeConfig, token: str):
    """The Serve application graph: one shard deployment per memory shard, Generator, Api."""
    from lte.serve.api import Api, token_digest
    from lte.serve.deployments import EditMemoryShard, Generator
    from lte.serve.sharding import prepare_root
    from lte.serve.validation import Limits

    n = cfg.memory.shards
    folders = prepare_root(cfg.memory_dir, n)
    common = {"max_ongoing_requests": cfg.max_ongoing_requests}
    shards = [
        EditMemoryShard.options(
            name=f"EditMemoryShard-{i}", num_replicas=1, **common,
            ray_actor_options={"num_cpus": cfg.shard_num_cpus, "num_gpus": cfg.shard_num_gpus},
        ).bind(i, n, str(folders[i]), cfg.memory, cfg.batch_size, cfg.batch_wait_s,
               cfg.torch_threads)
        for i in range(n)
    ]
    generator = Generator.options(
        num_replicas=1, **common,
        ray_actor_options={"num_cpus": cfg.generator_num_cpus, "num_gpus": cfg.generator_num_gpus},
    ).bind(cfg.model, cfg.batch_size, cfg.batch_wait_s, cfg.torch_threads)
    return Api.options(
        num_replicas=cfg.ingress_replicas, **common,
        ray_actor_options={"num_cpus": cfg.ingress_num_cpus},
    ).bind(shards, generator, Limits.from_config(cfg), cfg.memory.top_k, token_digest(token))


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def serve_forever(cfg: ServeConfig) -> int:
    token, generated = resolve_token(cfg)
    cfg = replace(cfg, memory_dir=str(Path(cfg.memory_dir).resolve()))
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    import ray
    from ray import serve

    app = build_app(cfg, token)  # checks the memory folder before Ray starts
    if cfg.ray_address:
        ray.init(address=cfg.ray_address)
    else:
        ray.init(address="local", num_cpus=cfg.num_cpus, include_dashboard=False)
    # Ctrl-C and SIGTERM both end the run through the same clean shutdown; SIGINT is set
    # explicitly because a shell starting us in the background leaves it ignored.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _raise_interrupt)
    try:
        serve.start(http_options={"host": cfg.host, "port": cfg.port})
        serve.run(app, name=APP_NAME, route_prefix="/")
        url = f"http://{cfg.host}:{cfg.port}"
        print(f"lte serve: ready at {url} ({cfg.memory.shards} shards, memory {cfg.memory_dir})",
              flush=True)
        if generated:
            print(f"lte serve: no {TOKEN_ENV} set; write token for this run: {token}",
                  file=sys.stderr, flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("lte serve: shutting down", file=sys.stderr, flush=True)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
    return 0
