"""Ray Serve deployments and the HTTP API.

    LTE_API_TOKEN=secret lte serve --config configs/serve/tiny.yaml --port 8765
    curl -H "Authorization: Bearer secret" -d '{"edits": [{"subject": "Ada",
         "prompt": "Where was Ada born?", "target_new": "Paris"}]}' localhost:8765/v1/edits
    curl -d '{"question": "What is the birthplace of Ada?", "k": 2}' localhost:8765/v1/query

Modules: `server` (the `lte serve` run: Ray, Serve, shutdown), `deployments` (EditMemoryShard,
Generator), `api` (FastAPI ingress: routes, auth, errors), `validation` (request checks),
`sharding` (placement and ids), `metrics` (Prometheus), `loadtest` (`lte bench serve`),
`limits` (body deadline, per-client open requests), `preflight` (checks before Ray starts),
`ray_security` (where Ray listens, cluster auth).

- Ids: edits are placed by a stable hash of (subject, question); the service id is
  `local_id * shards + shard`, so ids are unique and name their shard (see `sharding`).
- Durability: POST /v1/edits answers after the shard's SQLite log has committed (fsync); a
  restart on the same `memory_dir` reopens every shard and serves what was acknowledged.
- Security: HTTP binds 127.0.0.1 unless told otherwise and a non-loopback host needs a token; a
  local Ray listens on loopback only, a cluster needs Ray's token auth (`ray_security`); writes
  (with `auth: all`, every route but /healthz) need `Authorization: Bearer <token>`; body,
  batch and field sizes are capped, stalled bodies and greedy clients bounded (`limits`);
  `lte serve` checks port, model and shard logs before Ray starts (`preflight`); client
  mistakes are 4xx JSON `{"error": {"field", "message"}}` and a rejected batch writes nothing.
- Cluster: `slurm/serve.sh` starts Ray across the allocation and runs `lte serve` with
  `ray_address`; `memory_dir` must then be a path every node sees.
"""
