"""Where Ray listens, and who may talk to it.

A local `lte serve` keeps every Ray socket on 127.0.0.1 (GCS, raylet, object manager, workers,
dashboard and runtime-env agents, metrics export, Serve controller, proxy and replicas), so Ray's
unauthenticated gRPC and the dashboard agent's job API are not reachable from the network. A
cluster deployment (`ray_address`) cannot do that: its nodes must reach each other, so it runs
with Ray's token authentication (`RAY_AUTH_MODE=token`) and the Ray ports must stay on a private
network (README "Serving").
"""

from __future__ import annotations

import os

from lte.errors import UserError

LOOPBACK = "127.0.0.1"
# Ray treats a node as cluster-capable unless this is off (it is off by default on macOS and
# Windows): off, the node's address is the loopback one, and the GCS, raylet, workers and agents
# bind 127.0.0.1 instead of every interface.
LOCAL_ONLY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
SETUP_HOOK = "lte.serve.ray_security.bind_replica_grpc_to_loopback"


def local_ray_init_kwargs() -> dict:
    """`ray.init` arguments of a local instance that nothing beyond this machine can reach."""
    return {"address": "local", "include_dashboard": False, "_node_ip_address": LOOPBACK,
            "runtime_env": {"worker_process_setup_hook": SETUP_HOOK}}


def prepare_local_env() -> None:
    """Before `import ray`: Ray reads these at import, in the driver and in every worker."""
    os.environ.update(LOCAL_ONLY_ENV)
    # Nothing but this machine can reach a local instance, so Ray's own tokens add nothing.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def check_cluster_auth() -> None:
    """A shared cluster's Ray ports take code from anyone who reaches them unless tokens are on."""
    mode = os.environ.get("RAY_AUTH_MODE", "disabled").lower()
    if mode != "token":
        raise UserError(f"ray_address is set but RAY_AUTH_MODE={mode!r}: a Ray cluster runs code "
                        "for anyone who reaches its ports; start it and lte serve with "
                        "RAY_AUTH_MODE=token (slurm/serve.sh does)", field="ray_address")


def bind_replica_grpc_to_loopback() -> None:
    """Ray worker setup hook: Serve replicas open their inter-deployment gRPC on 127.0.0.1.

    Ray Serve binds that server to "[::]:0" whatever the node's address; on a local instance
    every caller (proxy, other replicas) is on this machine and reaches it through the node's
    address, which is the loopback one.
    """
    from ray.serve._private import replica

    original = replica.add_port_to_grpc_server
    if getattr(original, "_lte_loopback", False):
        return

    def add_port(server, address: str):
        if address.startswith("[::]:"):
            address = f"{LOOPBACK}:{address.rsplit(':', 1)[1]}"
        return original(server, address)

    add_port._lte_loopback = True
    replica.add_port_to_grpc_server = add_port
