"""Bounded request time at the ingress: a deadline for the request body, open requests per client.

Ray Serve's proxy hands a request to the ingress replica as soon as its headers arrive, and the
replica's slot (`max_ongoing_requests`) stays taken while the body trickles in; nothing in Ray
times out a stalled body. So a few dozen connections that each send half a body used to take
every slot, and /healthz and /v1/query queued behind them for everyone. This ASGI middleware
answers a client's request beyond `max_requests_per_client` with 429 at once, and a body not
complete within `body_timeout_s` with 408 (within BUSY_BODY_TIMEOUT_S while many bodies are
arriving at once), so a slot held by a stalled body is held for a bounded time and one client
holds a bounded number of them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass

# Under pressure (many bodies still arriving at once) a body gets this long: a client that sent
# its headers has its JSON body (at most max_body_bytes) in within milliseconds on a LAN, so only
# stalled or very slow senders are cut, and many of them no longer hold the slots for
# body_timeout_s each (measured: 500 stalled bodies from 100 addresses, README "Serving").
BUSY_BODY_TIMEOUT_S = 1.0


@dataclass
class RequestBounds:
    body_timeout_s: float
    max_requests_per_client: int
    busy_bodies: int  # bodies arriving at once beyond which BUSY_BODY_TIMEOUT_S applies

    @classmethod
    def from_config(cls, cfg) -> RequestBounds:
        """From a ServeConfig: the config holds the defaults."""
        return cls(cfg.body_timeout_s, cfg.max_requests_per_client,
                   busy_bodies=max(1, cfg.max_ongoing_requests // 4))


class BodyTimeout(Exception):
    pass


class BoundedRequests:
    """Pure ASGI middleware; `bounds` is read per request so the deployment can set it."""

    def __init__(self, app, bounds: RequestBounds):
        self.app, self.bounds = app, bounds
        self.open: Counter[str] = Counter()
        self.reading = 0  # requests whose body has not fully arrived

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        client = (scope.get("client") or ("unknown", 0))[0]
        if self.open[client] >= self.bounds.max_requests_per_client:
            return await _error(send, 429, "client", f"{self.open[client]} requests from "
                                f"{client} are open; the limit is "
                                f"{self.bounds.max_requests_per_client}")
        self.open[client] += 1
        started = False

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        body = _BodyReader(self, receive) if _has_body(scope) else None
        try:
            await self.app(scope, body.receive if body else receive, tracked_send)
        except BodyTimeout:
            if not started:
                await _error(send, 408, "body", f"request body not complete within "
                             f"{body.timeout_s:g} s")
        finally:
            if body is not None:
                body.finish()
            self.open[client] -= 1
            if self.open[client] <= 0:
                del self.open[client]


class _BodyReader:
    """`receive` whose body messages must all arrive within a deadline from the request's start."""

    def __init__(self, owner: BoundedRequests, receive):
        self.owner, self._receive = owner, receive
        bounds = owner.bounds
        busy = owner.reading >= bounds.busy_bodies
        self.timeout_s = min(bounds.body_timeout_s, BUSY_BODY_TIMEOUT_S) if busy \
            else bounds.body_timeout_s
        self.deadline = time.monotonic() + self.timeout_s
        self.done = False
        owner.reading += 1

    def finish(self) -> None:
        if not self.done:
            self.done = True
            self.owner.reading -= 1

    async def receive(self):
        if self.done:  # after the body only a disconnect can come; that wait is not bounded
            return await self._receive()
        try:
            message = await asyncio.wait_for(self._receive(),
                                             max(self.deadline - time.monotonic(), 0.0))
        except TimeoutError:
            raise BodyTimeout from None
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.finish()
        return message


def _has_body(scope) -> bool:
    headers = dict(scope.get("headers") or [])
    return b"transfer-encoding" in headers or headers.get(b"content-length", b"0") != b"0"


async def _error(send, status: int, field: str, message: str) -> None:
    body = json.dumps({"error": {"field": field, "message": message}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
