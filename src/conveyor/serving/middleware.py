"""ASGI middleware over the whole server: request metrics, admission, the body limit, the fast lane.

Outermost first (see :meth:`conveyor.serving.routes.ServingApp.front`): :class:`RequestMetrics`
counts and times every request, :class:`HeaderLimit` refuses a request head too large or with too many headers,
:class:`BearerAuth` (with ``serve.auth: bearer``) one without the API token, :class:`Admission`
bounds requests in progress and their time,
:class:`BodyLimit` refuses oversized bodies, :class:`FastLane` takes the prediction routes
straight to their endpoints. Every refusal is :func:`refuse`'s JSON and one INFO line.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic_core import to_json
from starlette.responses import Response

from conveyor.errors import ConfigError

if TYPE_CHECKING:
    from conveyor.serving.metrics import ServiceMetrics

__all__ = [
    "JSON_TYPE",
    "TOKEN_VARIABLE",
    "ASGIApp",
    "Admission",
    "BearerAuth",
    "BodyLimit",
    "FastLane",
    "HeaderLimit",
    "Receive",
    "RequestMetrics",
    "Scope",
    "Send",
    "api_tokens",
    "error_body",
    "head_bytes",
    "head_too_large",
    "header",
    "problem",
    "read_body",
    "refuse",
    "send_body",
    "send_response",
]

logger = logging.getLogger("conveyor.serving")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_TYPE = "application/json"
# Where ``serve.auth: bearer`` takes its token(s) from: the environment (a Kubernetes Secret), never git.
TOKEN_VARIABLE = "CONVEYOR_API_TOKEN"
MIN_TOKEN_CHARS = 16


def error_body(message: str, detail: Iterable[Mapping[str, Any]]) -> bytes:
    """The JSON every refusal sends: a summary and, per problem, where (``loc``), what and its type."""
    return to_json({"error": message, "detail": list(detail)})


def refuse(method: str, path: str, status: int, detail: Sequence[Mapping[str, Any]]) -> Response:
    """A 4xx response for ``detail`` (problems without the client's values), logged as one INFO line.

    The line names each problem's location and type, never a value; a location can hold a key
    the client made up (an unknown field), so one that is long or not printable is elided.
    """
    where = "; ".join(f"{_location(d['loc'])}: {d['type']}" for d in detail[:3])
    more = f" (+{len(detail) - 3} more)" if len(detail) > 3 else ""
    logger.info("refused %s %s with %d: %s%s", method, _printable(path), status, where, more)
    message = f"{len(detail)} problem(s) in the request; first: {detail[0]['msg']}"
    return Response(error_body(message, detail), status_code=status, media_type=JSON_TYPE)


def _printable(text: str, limit: int = 64) -> str:
    return text if len(text) <= limit and text.isprintable() else "…"


def _location(loc: Sequence[str | int]) -> str:
    return ".".join(str(part) if isinstance(part, int) else _printable(part) for part in loc) or "body"


def problem(loc: Sequence[str | int], kind: str, msg: str) -> dict[str, Any]:
    """One entry of an error ``detail``."""
    return {"loc": list(loc), "msg": msg, "type": kind}


async def send_response(response: Response, scope: Scope, receive: Receive, send: Send) -> None:
    """Send a Starlette ``response`` from bare ASGI code."""
    await response(scope, receive, send)


class BodyLimit:
    """ASGI middleware over the whole server: no request body larger than ``max_body_bytes``.

    A declared ``Content-Length`` over the limit is refused before anything is read; a streamed
    body is read up to the limit and refused past it (413 either way). Within the limit the body
    is buffered and handed on, so every route, BentoML's included, sees at most that many bytes.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, metrics: ServiceMetrics | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse an oversized body; otherwise pass the request on with its body replayed."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal, body = await self._read(scope, receive)
        if refusal is not None:
            if self.metrics is not None:
                self.metrics.refused(scope["path"], refusal[1])
            await send_response(refuse(scope["method"], scope["path"], *refusal), scope, receive, send)
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _read(self, scope: Scope, receive: Receive) -> tuple[tuple[int, list[dict[str, Any]]] | None, bytes]:
        for key, value in scope["headers"]:
            if key == b"content-length":
                if not value.isdigit():
                    return (400, [problem(["header", "content-length"], "invalid", "not a number")]), b""
                if int(value) > self.max_body_bytes:
                    return self._too_large(), b""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return (400, [problem(["body"], "disconnected", "client disconnected during the body")]), b""
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return self._too_large(), b""
            chunks.append(chunk)
            if not message.get("more_body", False):
                return None, chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _too_large(self) -> tuple[int, list[dict[str, Any]]]:
        return 413, [problem(["body"], "too_large", f"body exceeds the limit of {self.max_body_bytes} bytes")]


class HeaderLimit:
    """ASGI middleware over the whole server: no request head over ``max_header_bytes`` or ``max_headers`` (431).

    A head that never completes is bounded below the ASGI app (:mod:`conveyor.serving.connection`,
    which closes the connection once it is over the limit); a complete one is measured here
    (request line and headers, as sent), before any route reads it.
    """

    def __init__(self, app: ASGIApp, *, max_headers: int, max_header_bytes: int) -> None:
        self.app = app
        self.max_headers = max_headers
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse a request whose head is too large or has too many headers; otherwise pass it on."""
        if scope["type"] == "http":
            headers = scope["headers"]
            detail = []
            if len(headers) > self.max_headers:
                detail = [problem(["header"], "too_many", f"more than {self.max_headers} headers")]
            elif head_bytes(scope) > self.max_header_bytes:
                detail = [problem(["header"], "too_large", head_too_large(self.max_header_bytes))]
            if detail:
                response = refuse(scope["method"], scope["path"], 431, detail)
                response.headers["connection"] = "close"  # as for a head that never completes
                await send_response(response, scope, receive, send)
                return
        await self.app(scope, receive, send)


def head_bytes(scope: Scope) -> int:
    """The size of a request's head as sent: request line (method, path, query, version) and headers."""
    line = len(scope["method"]) + len(scope.get("raw_path") or scope["path"]) + len(scope["query_string"]) + 12
    return line + sum(len(name) + len(value) + 4 for name, value in scope["headers"]) + 2


def head_too_large(limit: int) -> str:
    """What a 431 for a head over ``limit`` bytes says."""
    return f"the request line and headers exceed the limit of {limit} bytes"


def api_tokens(environ: Mapping[str, str] = os.environ) -> tuple[bytes, ...]:
    """The tokens ``serve.auth: bearer`` accepts: ``CONVEYOR_API_TOKEN``, one or several separated by commas.

    Several let a token be rotated (the new one added, clients moved, the old one removed).
    Raises :class:`~conveyor.errors.ConfigError` naming the variable when it is unset, or a token
    is shorter than 16 characters or holds a space or a character that is not printable ASCII.
    """
    raw = environ.get(TOKEN_VARIABLE, "")
    tokens = tuple(token.strip() for token in raw.split(",") if token.strip())
    if not tokens:
        raise ConfigError(
            f"{TOKEN_VARIABLE}: not set, and serve.auth is bearer; set it (from a Kubernetes Secret) or serve.auth: none"
        )
    for number, token in enumerate(tokens, start=1):
        if len(token) < MIN_TOKEN_CHARS or not all("!" <= char <= "~" for char in token):
            raise ConfigError(
                f"{TOKEN_VARIABLE}: token {number} is not {MIN_TOKEN_CHARS} or more printable ASCII characters "
                "without spaces (e.g. openssl rand -hex 32)"
            )
    return tuple(token.encode() for token in tokens)


class BearerAuth:
    """ASGI middleware: every path but ``exempt`` requires ``Authorization: Bearer <token>`` (401 otherwise).

    ``tokens`` are :func:`api_tokens`; each is compared in constant time. The probes and
    ``/metrics`` stay open (the kubelet and Prometheus carry no token); unknown paths are
    refused like the routes, so a caller without the token learns nothing of which exist.
    """

    def __init__(self, app: ASGIApp, *, tokens: Iterable[bytes], exempt: Iterable[str]) -> None:
        self.app = app
        self.tokens = tuple(tokens)
        self.exempt = frozenset(exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass on a request to an exempt path or with a valid token; refuse any other."""
        if scope["type"] != "http" or scope["path"] in self.exempt or self.authorized(header(scope, b"authorization")):
            await self.app(scope, receive, send)
            return
        detail = [problem(["header", "authorization"], "unauthorized", "expected Authorization: Bearer <token>")]
        response = refuse(scope["method"], scope["path"], 401, detail)
        response.headers["www-authenticate"] = 'Bearer realm="conveyor"'
        await send_response(response, scope, receive, send)

    def authorized(self, value: bytes) -> bool:
        """Whether ``value`` (an ``Authorization`` header) carries one of the tokens."""
        scheme, _, token = value.partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        token = token.strip()
        # Every token is compared, so the time taken does not tell which one nearly matched.
        return sum(hmac.compare_digest(token, expected) for expected in self.tokens) > 0


class RequestMetrics:
    """ASGI middleware counting and timing every request by route and status, for ``/metrics``.

    Any path that is not a route is counted as ``other``: one series per unknown URL a scanner
    tries would grow without bound. Pass ``registry=None`` under Prometheus' multiprocess mode
    (as in ``bentoml serve``), where samples go to shared files rather than a registry. With
    ``access_log``, each request is also one INFO line: method, path, status, milliseconds.
    """

    def __init__(
        self, app: ASGIApp, *, routes: Iterable[str], registry: CollectorRegistry | None, access_log: bool = False
    ) -> None:
        self.app = app
        self.routes = frozenset(routes)
        self.access_log = access_log
        labels = ("endpoint", "http_response_code")
        self.requests = Counter("conveyor_request_total", "HTTP requests", labels, registry=registry)
        self.seconds = Histogram(
            "conveyor_request_duration_seconds",
            "HTTP request duration",
            labels,
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        # Resolving labels takes a lock and a lookup per request; the series are few, keep them.
        self.series: dict[tuple[str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; count and time it once it is answered."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            endpoint = scope["path"] if scope["path"] in self.routes else "other"
            series = self.series.get((endpoint, status))
            if series is None:
                labels = (endpoint, str(status))
                series = self.series[endpoint, status] = (self.requests.labels(*labels), self.seconds.labels(*labels))
            seconds = time.perf_counter() - started
            series[0].inc()
            series[1].observe(seconds)
            if self.access_log:
                logger.info("%s %s %d %.1f ms", scope["method"], scope["path"], status, 1000 * seconds)


class Admission:
    """ASGI middleware: at most ``max_concurrency`` requests in progress, each done within ``timeout``.

    Beyond the limit a request gets 429 at once, before its body is read, so a worker holds at
    most ``max_concurrency`` bodies of at most ``max_body_bytes`` each; the ``exempt`` paths (the
    probes and ``/metrics``, as in BentoML's own ``traffic.max_concurrency``) are not held to either. A request not
    answered within ``timeout`` seconds (a client trickling its body) gets 504.
    """

    def __init__(self, app: ASGIApp, *, max_concurrency: int, timeout: float, exempt: Iterable[str]) -> None:
        self.app = app
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.exempt = frozenset(exempt)
        self.in_progress = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Admit the request if there is room, and bound its time."""
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        if self.in_progress >= self.max_concurrency:
            detail = [problem([], "overloaded", f"more than {self.max_concurrency} requests in progress; retry later")]
            await send_response(refuse(scope["method"], scope["path"], 429, detail), scope, receive, send)
            return
        self.in_progress += 1
        answered = False

        async def tracked(message: Message) -> None:
            nonlocal answered
            answered = True
            await send(message)

        try:
            async with asyncio.timeout(self.timeout):
                await self.app(scope, receive, tracked)
        except TimeoutError:
            if not answered:
                detail = [problem([], "timeout", f"not answered within {self.timeout:g} s")]
                await send_body(send, 504, error_body(detail[0]["msg"], detail))
        finally:
            self.in_progress -= 1


class FastLane:
    """ASGI middleware sending ``POST`` to the prediction routes straight to their endpoints.

    Everything else goes on to ``app`` (BentoML's server). Put outside BentoML's own middleware,
    it spares the prediction routes the per-request work there (a task per request for its
    timeout, tracing, a request context), which cost three times what the ONNX model does.
    """

    def __init__(self, app: ASGIApp, *, routes: Mapping[str, ASGIApp]) -> None:
        self.app = app
        self.routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch on path and method."""
        endpoint = self.routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        await (endpoint or self.app)(scope, receive, send)


def header(scope: Scope, name: bytes) -> bytes:
    """The value of header ``name`` (lower-case), empty when the request has none."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return b""


async def read_body(receive: Receive) -> bytes:
    """The whole request body, however many messages it came in."""
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_body(
    send: Send, status: int, body: bytes, media_type: str = JSON_TYPE, extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """Send a whole response: status, content type and length (and ``extra`` headers), then ``body``."""
    headers = [(b"content-type", media_type.encode()), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
