"""Request body cap (413) and per-token rate limit (429), as plain ASGI middleware.

Both run before routing and authentication, so an oversized or flooding request costs no Temporal
call and no JWT verification.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .errors import error_response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class TokenBucket:
    """In-memory token buckets, one per key, bounded in number (least recently used evicted).

    Per process: behind several portal replicas the effective limit is replicas × rate; put a
    shared limiter in the ingress for a global one.
    """

    def __init__(self, rate_per_second: float, burst: int, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = float(rate_per_second)
        self.burst = float(burst)
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> float:
        """Take one token for `key`: 0.0 when allowed, else the seconds until one is available."""
        now = self._clock()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            wait = 0.0
        else:
            self._buckets[key] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


def header(scope: Scope, name: bytes) -> bytes | None:
    """A request header's raw value (`name` in lower case), or None."""
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value
    return None


def rate_key(scope: Scope, path_keyed: tuple[str, ...] = ()) -> str:
    """The bucket of a request: its bearer token (hashed); a signed link's path (hashed: one mailbox
    provider posts the one-click opt-outs of many borrowers from few addresses); else its client address."""
    path = scope.get("path", "")
    if path_keyed and path.startswith(path_keyed):
        return "link:" + hashlib.sha256(path.encode("utf-8", errors="replace")).hexdigest()
    auth = header(scope, b"authorization")
    if auth:
        return "token:" + hashlib.sha256(auth.strip()).hexdigest()
    client = scope.get("client") or ("unknown", 0)
    return f"addr:{client[0]}"


class BodyTooLarge(Exception):
    pass


async def read_body(receive: Receive, max_bytes: int | None = None) -> bytes | None:
    """The whole request body (None if the client went away); BodyTooLarge past `max_bytes`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app `body` (already read) once, then what the client sends next."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, bucket: TokenBucket, exempt_paths: frozenset[str] = frozenset(),
                 path_keyed: tuple[str, ...] = ()) -> None:
        self.app = app
        self.bucket = bucket
        self.exempt = exempt_paths
        self.path_keyed = path_keyed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.exempt or scope.get("method") == "OPTIONS":
            await self.app(scope, receive, send)
            return
        wait = self.bucket.take(rate_key(scope, self.path_keyed))
        if wait > 0:
            retry = str(max(1, math.ceil(wait)))
            response = error_response(
                429, "rate_limited", f"too many requests for this token; retry in {retry} s",
                headers={"Retry-After": retry},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class BodySizeLimitMiddleware:
    """Refuses bodies over `max_bytes` with 413, by Content-Length or while streaming (chunked)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> Any:
        return error_response(
            413, "payload_too_large", f"request body exceeds {self.max_bytes} bytes"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = header(scope, b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                await error_response(400, "bad_request", "Content-Length is not a number")(scope, receive, send)
                return
            if length > self.max_bytes:
                await self._too_large()(scope, receive, send)
                return
        # Read the (small) body up front, counting, then replay it to the app.
        try:
            body = await read_body(receive, self.max_bytes)
        except BodyTooLarge:
            await self._too_large()(scope, receive, send)
            return
        if body is None:
            return
        await self.app(scope, replaying(body, receive), send)
