"""How many Generator replicas to deploy, and Ray Serve's scaling options for them.

`generator_replicas: N` deploys N replicas; `generator_max_replicas: M > N` lets Ray Serve
autoscale between N and M on the requests in flight per replica (a batch's worth each);
`generator_replicas: 0` deploys one per GPU: the cluster's GPUs, less what the memory shards
take, divided by `generator_num_gpus` (a GPU preset sets it just under 1, so two never share a
GPU while the shards' fractions fit beside them).
"""

from __future__ import annotations

import math

from lte.config import ServeConfig
from lte.errors import UserError


def replicas_per_gpu(cfg: ServeConfig, cluster_gpus: float) -> int:
    spare = cluster_gpus - cfg.memory.shards * cfg.shard_num_gpus
    # At most one per GPU: two replicas of more than half a GPU never share one.
    n = min(math.floor(spare / cfg.generator_num_gpus + 1e-9), math.floor(cluster_gpus))
    if n < 1:
        raise UserError(f"generator_replicas=0 asks for one Generator per GPU, but the cluster "
                        f"has {cluster_gpus:g} GPUs and the {cfg.memory.shards} shards take "
                        f"{cfg.memory.shards * cfg.shard_num_gpus:g}; set generator_replicas",
                        field="generator_replicas")
    return n


def generator_scaling(cfg: ServeConfig, cluster_gpus: float | None = None) -> dict:
    """`Deployment.options` keywords for the Generator: num_replicas or autoscaling_config."""
    base = cfg.generator_replicas
    if base == 0:
        import ray

        gpus = cluster_gpus if cluster_gpus is not None else ray.cluster_resources().get("GPU", 0)
        base = replicas_per_gpu(cfg, gpus)
    if cfg.generator_max_replicas > base:
        return {"autoscaling_config": {
            "min_replicas": base, "initial_replicas": base,
            "max_replicas": cfg.generator_max_replicas,
            "target_ongoing_requests": cfg.batch_size}}
    return {"num_replicas": base}
