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

from lte.config import ServeConfig, save_config
from lte.errors import UserError

TOKEN_ENV = "LTE_API_TOKEN"
APP_NAME = "lte"
STARTUP_TIMEOUT_S = 900
# Ray's start-up deadlines assume an idle machine: a worker gets 60 s to register and Serve's
# proxy 5 s to report ready, else they are killed and restarted. On a busy CPU box importing
# Ray alone can take longer, and the service then restarts in a loop instead of coming up.
SLOW_MACHINE_ENV = {
    "RAY_worker_register_timeout_seconds": "600",
    "RAY_agent_register_timeout_ms": "120000",
    "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "120",
    "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "60",
}
HEALTH_CHECK_TIMEOUT_S = 120  # per replica, for the same reason
# Ray Serve's throughput mode: user code on the replica's own event loop, handles over gRPC, no
# per-request log lines, the proxy passing HTTP straight to the ingress replica (which listens on
# the configured host too). Measured with tools/loadtest.py on 2 cores: serving overhead against
# the in-process editor +35% without it, +16% with it.
THROUGHPUT_ENV = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}


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
    from lte.serve.limits import RequestBounds
    from lte.serve.replicas import generator_scaling
    from lte.serve.sharding import prepare_root, root_placement
    from lte.serve.validation import Limits

    n = cfg.memory.shards
    folders = prepare_root(cfg.memory_dir, n, cfg.memory.embedder.name)
    placement = root_placement(cfg.memory_dir)
    common = {"max_ongoing_requests": cfg.max_ongoing_requests,
              "health_check_timeout_s": HEALTH_CHECK_TIMEOUT_S}
    shards = [
        EditMemoryShard.options(
            name=f"EditMemoryShard-{i}", num_replicas=1, **common,
            ray_actor_options={"num_cpus": cfg.shard_num_cpus, "num_gpus": cfg.shard_num_gpus},
        ).bind(i, n, str(folders[i]), cfg.memory, cfg.batch_size, cfg.batch_wait_s,
               cfg.torch_threads)
        for i in range(n)
    ]
    generator = Generator.options(
        **generator_scaling(cfg), **common,
        ray_actor_options={"num_cpus": cfg.generator_num_cpus, "num_gpus": cfg.generator_num_gpus},
    ).bind(cfg.model, cfg.batch_size, cfg.batch_wait_s, cfg.torch_threads)
    return Api.options(
        num_replicas=cfg.ingress_replicas,
        **{**common, "max_ongoing_requests": cfg.ingress_max_ongoing_requests},
        ray_actor_options={"num_cpus": cfg.ingress_num_cpus},
    ).bind(shards, generator, Limits.from_config(cfg), cfg.memory.top_k, token_digest(token),
           cfg.memory.embedder, cfg.batch_size, cfg.batch_wait_s, cfg.torch_threads, cfg.auth,
           RequestBounds.from_config(cfg), placement)


def deploy_failure_line(message: str) -> str:
    """The exception line of a failed deployment's constructor traceback, e.g. 'OSError: ...'."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    for line in reversed(lines):
        name, sep, rest = line.partition(":")
        short = name.rsplit(".", 1)[-1]
        if sep and " " not in name and short.endswith(("Error", "Exception")):
            return f"{short}:{rest}"
    return lines[-1][:300] if lines else "unknown failure"


def _failed_deployments(serve) -> str:
    """'Generator: ValueError: ...' for each deployment that failed (the application's own
    message only lists their names)."""
    try:
        app = serve.status().applications.get(APP_NAME)
    except Exception:  # noqa: BLE001 - only decorates the error being raised
        return ""
    if app is None:
        return ""
    return "; ".join(f"{name}: {deploy_failure_line(d.message)}"
                     for name, d in app.deployments.items()
                     if d.status in ("DEPLOY_FAILED", "UNHEALTHY"))


def _local_url(host: str, port: int) -> str:
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _wait_healthy(url: str) -> None:
    import httpx

    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=10).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the service did not answer {url}/healthz within "
                               f"{STARTUP_TIMEOUT_S} s")
        time.sleep(1)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def serve_forever(cfg: ServeConfig) -> int:
    from lte.serve import ray_security
    from lte.serve.preflight import check_model, check_port_free

    token, generated = resolve_token(cfg)
    # Ray workers inherit this process's environment; the ingress gets the token's digest.
    os.environ.pop(TOKEN_ENV, None)
    cfg = replace(cfg, memory_dir=str(Path(cfg.memory_dir).resolve()))
    check_port_free(cfg.host, cfg.port)
    check_model(cfg.model.name_or_path)
    if cfg.ray_address:
        ray_security.check_cluster_auth()
    else:
        ray_security.prepare_local_env()
    for key, value in {**SLOW_MACHINE_ENV, **THROUGHPUT_ENV}.items():
        os.environ.setdefault(key, value)

    import ray
    from ray import serve

    from lte.serve.preflight import check_shard_logs
    from lte.serve.sharding import prepare_root

    # Before Ray starts: a damaged shard log is one line in seconds, not a failed deployment.
    check_shard_logs(prepare_root(cfg.memory_dir, cfg.memory.shards, cfg.memory.embedder.name))
    save_config(replace(cfg, token="<set>" if cfg.token else None), cfg.memory_dir,
                "serve-config.yaml")
    if cfg.ray_address:
        ray.init(address=cfg.ray_address)
    else:
        ray.init(num_cpus=cfg.num_cpus, **ray_security.local_ray_init_kwargs())
    # Ctrl-C and SIGTERM both end the run through the same clean shutdown; SIGINT is set
    # explicitly because a shell starting us in the background leaves it ignored.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _raise_interrupt)
    try:
        app = build_app(cfg, token)  # after ray.init: one Generator per GPU counts its GPUs
        try:
            serve.start(http_options={"host": cfg.host, "port": cfg.port})
        except (TimeoutError, ray.exceptions.RayError) as e:
            # serve.start waits a fixed 60 s for the proxy; Serve's controller keeps starting
            # it, and readiness is checked on our own /healthz below.
            print(f"lte serve: the HTTP proxy is slow to start ({type(e).__name__}); waiting",
                  file=sys.stderr, flush=True)
        try:
            serve.run(app, name=APP_NAME, route_prefix="/")
        except RuntimeError as e:
            if "failed" not in str(e):
                raise
            raise UserError(f"the service did not start: "
                            f"{_failed_deployments(serve) or deploy_failure_line(str(e))} (the "
                            "full trace is in Ray's logs, /tmp/ray/session_*/logs/serve)",
                            field="deployment") from None
        url = f"http://{cfg.host}:{cfg.port}"
        _wait_healthy(_local_url(cfg.host, cfg.port))
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
