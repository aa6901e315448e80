"""The HTTP API (FastAPI ingress deployment) over the memory shards and the Generator.

    POST   /v1/edits       {"edits": [{subject, prompt, target_new, ...}]}  -> {"ids": [...]}
    GET    /v1/edits/{id}  -> the stored edit, its status, `superseded_by` and the ids it
                           `supersedes` (404 when unknown or deleted)
    DELETE /v1/edits/{id}  -> {"deleted": id}
    POST   /v1/query       {"question", "k"?, "target"?, "generate"?, scoring fields?}
                           -> {"answer", "retrieved": [{id, descriptor, subject, score}], "score"?}
           scoring fields (lte eval --serve): "targets": [str] -> "predictions": [{target,
           accuracy, predicted_ids, target_ids}]; "hits_k" (hits returned, the first k shown);
           "descriptors": [str] (shown instead of retrieved); "max_new_tokens", "min_new_tokens"
    POST   /v1/chat/completions, GET /v1/models: OpenAI-compatible (lte.serve.openai_api)
    GET    /healthz        -> {"status": "ok", "shards", "edits"}
    GET    /metrics        -> Prometheus text

Writes (POST/DELETE /v1/edits) need `Authorization: Bearer <token>`, and with `auth: all` every
route but /healthz does; only the token's SHA-256 travels to the replica, so the secret is not
kept in Ray's deployment state nor in any Ray worker's environment. /healthz answers 503 until
every deployment is healthy. `lte.serve.limits` bounds each request's body time and each
client's open requests. Every client mistake is a 4xx `{"error": {"field", "message"}}`
(lte.serve.validation); a batch is validated whole before any shard writes, and a batch whose
shard write fails is rolled back on the shards that did write, so a failed request leaves
nothing behind.
"""


import asyncio
import hashlib
import hmac
import time

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from lte.config import EmbedderConfig, ServeConfig
from lte.serve.limits import BoundedRequests, RequestBounds
from lte.serve.metrics import ingress_metrics
from lte.serve.sharding import SUBJECT, from_global, merge_hits, shard_of
from lte.serve.validation import (
    ApiError,
    Limits,
    parse_edit_id,
    parse_edits,
    parse_json,
    parse_query,
)

HEALTH_TIMEOUT_S = 10.0
RUNNING = ("HEALTHY", "UPSCALING", "DOWNSCALING")  # Serve's deployment states that serve

# No interactive docs pages: they pull scripts from a CDN; /openapi.json stays.
app = FastAPI(title="lte", description="Learning to Edit: edit memory and editing-prompt answers.",
              docs_url=None, redoc_url=None)
# Set by the Api replica from the config; the middleware reads it on every request.
REQUEST_BOUNDS = RequestBounds.from_config(ServeConfig())  # the deployment sets its own
app.add_middleware(BoundedRequests, bounds=REQUEST_BOUNDS)


def deployments_not_running() -> list[str]:
    """'name: STATUS message' for each deployment of this application that is not HEALTHY."""
    app_name = serve.get_replica_context().app_name
    status = serve.status().applications.get(app_name)
    if status is None:
        return [f"application {app_name!r} not found"]
    return [f"{name}: {d.status} {d.message}".strip()[:300]
            for name, d in status.deployments.items() if d.status not in RUNNING]


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@app.exception_handler(ApiError)
async def _api_error(request: Request, exc: ApiError):
    return JSONResponse(exc.body(), status_code=exc.status)


@app.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException):
    field = "method" if exc.status_code == 405 else "path"
    return JSONResponse({"error": {"field": field, "message": str(exc.detail)}},
                        status_code=exc.status_code, headers=getattr(exc, "headers", None))


@app.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError):
    first = exc.errors()[0] if exc.errors() else {}
    field = ".".join(str(p) for p in first.get("loc", ("body",)))
    return JSONResponse({"error": {"field": field, "message": first.get("msg", "invalid")}},
                        status_code=422)


@app.middleware("http")
async def _observe(request: Request, call_next):
    start = time.perf_counter()
    response = await call_next(request)
    route = request.scope.get("route")
    endpoint = getattr(route, "path", "other")
    elapsed = time.perf_counter() - start
    ingress_metrics().observe(endpoint, request.method, response.status_code, elapsed)
    return response


async def _read_body(request: Request, limits: Limits) -> bytes:
    """The body, refused with 413 as soon as it passes the limit (no unbounded buffering)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise ApiError(413, "body", f"request body is {declared} bytes; the limit is "
                       f"{limits.max_body_bytes}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.max_body_bytes:
            raise ApiError(413, "body", f"request body exceeds the limit of "
                           f"{limits.max_body_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@serve.deployment
@serve.ingress(app)
class Api:
    def __init__(self, shards: list, generator, limits: Limits, default_k: int,
                 token_sha256: str, embedder: EmbedderConfig, batch_size: int,
                 batch_wait_s: float, torch_threads: int, auth: str,
                 bounds: RequestBounds, placement: str = SUBJECT):
        from lte.embedding import make_embedder
        from lte.serve.deployments import configure_batching, worker_pool

        self._pool = worker_pool("embedder", torch_threads)
        self._embedder = self._pool.submit(make_embedder, embedder).result()
        configure_batching((self.embed,), batch_size, batch_wait_s)
        self.shards = shards
        self.generator = generator
        self.limits = limits
        self.default_k = default_k
        self.token_sha256 = token_sha256
        self.reads_need_token = auth == "all"
        self.placement = placement  # sharding.root_placement of the served folder
        REQUEST_BOUNDS.__dict__.update(bounds.__dict__)

    def _authorize(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "authorization", "this endpoint needs the header "
                           "'Authorization: Bearer <token>'")
        if not hmac.compare_digest(token_digest(token.strip()), self.token_sha256):
            raise ApiError(401, "authorization", "invalid token")

    def _authorize_read(self, request: Request) -> None:
        """With `auth: all` reads need the token too (only /healthz stays public)."""
        if self.reads_need_token:
            self._authorize(request)

    def _shard(self, edit_id: int):
        return self.shards[from_global(edit_id, len(self.shards))[0]]

    async def _counts(self) -> list[int]:
        return list(await asyncio.wait_for(
            asyncio.gather(*(s.count.remote() for s in self.shards)), HEALTH_TIMEOUT_S))

    @app.post("/v1/edits")
    async def add_edits(self, request: Request):
        self._authorize(request)
        records = parse_edits(parse_json(await _read_body(request, self.limits), self.limits),
                              self.limits)
        n = len(self.shards)
        groups: dict[int, list[int]] = {}
        for i, r in enumerate(records):
            groups.setdefault(shard_of(r.subject, r.prompt, n, self.placement), []).append(i)
        order = sorted(groups)
        results = await asyncio.gather(
            *(self.shards[s].add.remote([records[i] for i in groups[s]]) for s in order),
            return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            # Undo the shards that did commit, so the client can retry the whole batch.
            await asyncio.gather(*(self.shards[s].delete.remote(ids)
                                   for s, ids in zip(order, results, strict=True)
                                   if not isinstance(ids, BaseException)),
                                 return_exceptions=True)
            raise failed[0]
        ids = [0] * len(records)
        for s, shard_ids in zip(order, results, strict=True):
            for i, edit_id in zip(groups[s], shard_ids, strict=True):
                ids[i] = edit_id
        ingress_metrics().edits_added.inc(len(ids))
        return {"ids": ids}

    @app.get("/v1/edits/{edit_id}")
    async def get_edit(self, edit_id: str, request: Request):
        self._authorize_read(request)
        eid = parse_edit_id(edit_id)
        edit = await self._shard(eid).get.remote(eid)
        if edit is None or edit.get("status") == "deleted":
            raise ApiError(404, "id", f"no edit with id {eid}")
        record = edit.get("record") or {}
        return {"id": eid, "status": edit["status"], "superseded_by": edit["superseded_by"],
                "supersedes": edit.get("supersedes", []),
                "case_id": edit["case_id"], "subject": edit["subject"],
                "prompt": edit["question"], "target_new": edit["target_new"],
                "descriptor": edit["descriptor"],
                "ground_truth": record.get("ground_truth", []),
                "rephrase_prompts": record.get("rephrase_prompts", []),
                "created": edit["created"]}

    @app.delete("/v1/edits/{edit_id}")
    async def delete_edit(self, edit_id: str, request: Request):
        self._authorize(request)
        eid = parse_edit_id(edit_id)
        if not await self._shard(eid).delete.remote([eid]):
            raise ApiError(404, "id", f"no live edit with id {eid}")
        return {"deleted": eid}

    @serve.batch  # size and wait: configure_batching, from the ServeConfig
    async def embed(self, questions: list[str]) -> list:
        """Key vectors of concurrent questions in one embedding pass, sent to every shard."""
        vecs = await asyncio.get_running_loop().run_in_executor(
            self._pool, self._embedder.encode, questions)
        return list(vecs)

    @app.post("/v1/query")
    async def query(self, request: Request):
        self._authorize_read(request)
        q = parse_query(parse_json(await _read_body(request, self.limits), self.limits),
                        self.limits, self.default_k)
        if q.descriptors is None:
            hits = await self._retrieve(q.question, q.hits_k or q.k)
            descriptors = [h["descriptor"] for h in hits[:q.k]]
        else:  # given context (lte eval --serve: baselines, pre-edit predictions): no retrieval
            hits, descriptors = [], list(q.descriptors)
        out: dict = {"question": q.question, "retrieved": hits}
        pending = {}
        if q.generate:
            pending["answer"] = self.generator.answer.remote(
                (q.question, descriptors, q.max_new_tokens, q.min_new_tokens))
        if q.target is not None:
            pending["score"] = self.generator.score.remote((q.question, q.target, descriptors))
        if q.targets:
            pending["predictions"] = self.generator.predict.remote(
                (q.question, list(q.targets), descriptors))
        if q.fluency_tokens is not None:  # the reference's Fluency text of the bare question
            pending["fluency_text"] = self.generator.sample_fluency.remote(
                q.question, q.fluency_case_id or "", q.fluency_tokens, q.fluency_seed or 0)
        for key, value in zip(pending, await asyncio.gather(*pending.values()), strict=True):
            out[key] = value
        return out

    async def _retrieve(self, question: str, k: int) -> list[dict]:
        """Top-k hits over all shards for one question (embedded once, at the ingress)."""
        vec = await self.embed(question)
        per_shard = await asyncio.gather(*(s.search.remote((vec, k)) for s in self.shards))
        return merge_hits(per_shard, k)

    # ---- OpenAI-compatible routes (lte.serve.openai_api): reads, as POST /v1/query ---------------

    @app.post("/v1/chat/completions")
    async def chat_completions(self, request: Request):
        from lte.serve import openai_api

        self._authorize_read(request)
        payload = parse_json(await _read_body(request, self.limits), self.limits)
        return await openai_api.chat_completion(self, payload)

    @app.get("/v1/models")
    async def models(self, request: Request):
        from lte.serve import openai_api

        self._authorize_read(request)
        return openai_api.models_body()

    @app.get("/healthz")
    async def healthz(self):
        """200 only when every deployment of the application is healthy and the shards answer."""
        try:
            not_running = await asyncio.wait_for(asyncio.to_thread(deployments_not_running),
                                                 HEALTH_TIMEOUT_S)
            counts = await self._counts()
        except Exception as e:  # noqa: BLE001 - any failure of a shard means not healthy
            return JSONResponse({"status": "unavailable", "reason": str(e)[:200]},
                                status_code=503)
        if not_running:
            return JSONResponse({"status": "unavailable",
                                 "reason": "deployments not healthy: " + "; ".join(not_running)},
                                status_code=503)
        return {"status": "ok", "shards": len(self.shards), "edits": sum(counts)}

    @app.get("/metrics")
    async def metrics(self, request: Request):
        self._authorize_read(request)
        ingress_metrics().set_stored(await self._counts())
        body, content_type = ingress_metrics().render()
        return Response(body, media_type=content_type)
