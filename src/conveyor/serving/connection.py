"""Limits on each HTTP connection, below any ASGI app: head size, head and idle timeouts, a cap per worker.

``bentoml serve`` builds its ``uvicorn.Config`` itself and passes on only ``backlog`` and
``timeout_keep_alive`` (``_bentoml_impl/worker/service.py``); uvicorn has no option at all for
the size of a request's head with httptools (the parser it picks when installed), none for the
time a head may take, and its ``limit_concurrency`` answers 503 only once a head is complete, so
it never counts a connection that sends nothing. What the ASGI app sees starts after the head,
too late for all of these. So :func:`install` puts :func:`guarded` (a subclass of the protocol
uvicorn's ``http="auto"`` resolves to, h11 or httptools) in its place, in the worker, before
BentoML builds the server. The limits are the bundle's ``serve`` settings.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from conveyor.config import ServeConfig
from conveyor.serving.middleware import error_body, head_too_large, problem

__all__ = ["ConnectionLimits", "Installed", "guarded", "install"]

logger = logging.getLogger("conveyor.serving")

# uvicorn's name for the protocol BentoML's worker asks for (its default, ``http="auto"``).
AUTO = "auto"


@dataclass(frozen=True)
class ConnectionLimits:
    """The per-connection limits of :func:`guarded`, from ``serve``'s settings of the same names."""

    max_header_bytes: int
    header_timeout_s: float
    keep_alive_timeout_s: float
    max_connections: int

    @classmethod
    def of(cls, serve: ServeConfig) -> ConnectionLimits:
        """The limits ``serve`` sets."""
        return cls(serve.max_header_bytes, serve.header_timeout_s, serve.keep_alive_timeout_s, serve.max_connections)


def _refusal(status: int, reason: bytes, kind: str, message: str) -> bytes:
    body = error_body(f"1 problem(s) in the request; first: {message}", [problem(["header"], kind, message)])
    head = (
        f"HTTP/1.1 {status} ".encode() + reason + b"\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n"
    )
    return head + body


def guarded(base: type[asyncio.Protocol], limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """``base`` (uvicorn's h11 or httptools protocol) with ``limits`` on each connection.

    A connection is *reading a head* from when it opens, or from the end of a request's body,
    until the next request's head is complete; bytes of a body (even one the app answered
    early, with 413 or 429, and never read) are never counted. An incomplete head is counted a
    read at a time, after the parser has seen it, so a connection holds at most
    ``max_header_bytes`` plus one read; beyond, 431 and the connection closed. (A complete head
    is measured exactly by :class:`~conveyor.serving.middleware.HeaderLimit`.) A head not
    complete within ``header_timeout_s`` of the connection opening (or of its first byte)
    closes the connection, with 408 if some of it came (but not while a response to an earlier
    request is still due). uvicorn's own keep-alive timer closes a connection idle after a
    response, after ``keep_alive_timeout_s``. Beyond ``max_connections``, the connection idle
    longest (reading a head, or kept alive between requests) is closed; if every one has a
    request in progress, the new one is.
    """
    refusal = _refusal(
        431,
        b"Request Header Fields Too Large",
        "too_large",
        head_too_large(limits.max_header_bytes),
    )
    timed_out = _refusal(
        408, b"Request Timeout", "timeout", f"the request line and headers took over {limits.header_timeout_s:g} s"
    )

    class Guarded(base):  # type: ignore[valid-type,misc]
        """uvicorn's protocol, held to :class:`ConnectionLimits`."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.timeout_keep_alive = limits.keep_alive_timeout_s
            if hasattr(self, "conn"):  # h11: its own head limit, set past ours so ours answers first
                import h11

                self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes + 65_536)
            self.head_bytes = 0
            self.head_timer: asyncio.TimerHandle | None = None
            self.idle_since = 0.0
            # httptools: between a head's end and its message's end (set by the parser's callbacks).
            self.in_body = False

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self.idle_since = self.loop.time()
            self._arm()
            if len(self.connections) > limits.max_connections:
                self._make_room()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            reading_head = self._reading_head()
            if reading_head:
                self.head_bytes += len(data)
                if self.head_timer is None:
                    self._arm()
            cycle = self.cycle
            super().data_received(data)
            if self.cycle is not cycle:  # a head completed: a request from here on
                self._disarm()
                self.head_bytes = 0
            elif reading_head and self.head_bytes > limits.max_header_bytes and not self.transport.is_closing():
                logger.info("refused a connection with 431: header: too_large")
                self.transport.write(refusal)
                self.transport.close()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self.idle_since = self.loop.time()

        def on_headers_complete(self) -> None:  # httptools' parser callback (h11 has none)
            self.in_body = True
            super().on_headers_complete()

        def on_message_complete(self) -> None:  # httptools' parser callback
            self.in_body = False
            super().on_message_complete()

        def _reading_head(self) -> bool:
            conn = getattr(self, "conn", None)
            if conn is not None:  # h11 knows whether the client is sending a body
                import h11

                return conn.their_state is not h11.SEND_BODY
            return not self.in_body

        def _idle(self) -> bool:
            cycle = self.cycle
            return cycle is None or cycle.response_complete

        def _arm(self) -> None:
            self._disarm()
            self.head_timer = self.loop.call_later(limits.header_timeout_s, self._head_timed_out)

        def _disarm(self) -> None:
            if self.head_timer is not None:
                self.head_timer.cancel()
                self.head_timer = None

        def _head_timed_out(self) -> None:
            self.head_timer = None
            if self.transport.is_closing() or not self._reading_head():
                return
            if not self._idle():  # a pipelined head while a response is due: look again later
                self._arm()
                return
            if self.head_bytes:
                logger.info("refused a connection with 408: header: timeout")
                self.transport.write(timed_out)
            self.transport.close()

        def _make_room(self) -> None:
            idle = [other for other in self.connections if other is not self and other._idle()]
            if not idle:
                logger.warning(
                    "closed a new connection: %d open, each with a request in progress", len(self.connections)
                )
                self.transport.close()
                return
            oldest = min(idle, key=lambda other: other.idle_since)
            oldest.transport.close()

    Guarded.__name__ = Guarded.__qualname__ = f"Guarded{base.__name__}"
    return Guarded


def install(serve: ServeConfig) -> type[asyncio.Protocol]:
    """Make :func:`guarded` the protocol uvicorn's ``http="auto"`` loads, in this process; returns it.

    Called in each worker before BentoML builds its ``uvicorn.Config`` (which names no protocol,
    so gets ``auto``). uvicorn resolves a protocol name through ``HTTP_PROTOCOLS`` when the
    server starts; the entry is pointed at the guarded class, kept in :class:`Installed`.
    """
    from uvicorn import config
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    Installed.protocol = guarded(AutoHTTPProtocol, ConnectionLimits.of(serve))
    config.HTTP_PROTOCOLS[AUTO] = f"{__name__}:{Installed.__name__}.protocol"
    return Installed.protocol


class Installed:
    """Where :func:`install` keeps the protocol it made, for uvicorn to import by name."""

    protocol: type[asyncio.Protocol] | None = None
