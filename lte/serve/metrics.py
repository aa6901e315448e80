"""Prometheus metrics of the HTTP ingress: requests, latency histograms, edits stored.

One private registry per ingress replica process (`ingress_metrics()`), rendered by
GET /metrics. It lives here, in an importable module, because Serve pickles the ingress class
by value: a global of the class's own module would be copied into each method's globals, so the
middleware and the endpoints would count into different registries. Endpoints are labelled by route template, so ids in paths do not blow up
label cardinality.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("lte_requests", "HTTP requests by endpoint, method and status",
                                ["endpoint", "method", "status"], registry=self.registry)
        self.latency = Histogram("lte_request_latency_seconds", "HTTP request latency",
                                 ["endpoint", "method"], buckets=LATENCY_BUCKETS,
                                 registry=self.registry)
        self.edits_added = Counter("lte_edits_added", "edits acknowledged by POST /v1/edits",
                                   registry=self.registry)
        self.edits_stored = Gauge("lte_edits_stored", "live edits over all shards",
                                  registry=self.registry)
        self.shard_edits = Gauge("lte_shard_edits_stored", "live edits per shard", ["shard"],
                                 registry=self.registry)

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint, method).observe(seconds)

    def set_stored(self, per_shard: list[int]) -> None:
        for shard, n in enumerate(per_shard):
            self.shard_edits.labels(str(shard)).set(n)
        self.edits_stored.set(sum(per_shard))

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


_INGRESS: Metrics | None = None


def ingress_metrics() -> Metrics:
    global _INGRESS
    if _INGRESS is None:
        _INGRESS = Metrics()
    return _INGRESS
