"""The connection limits, against a real ``bentoml serve``: head size, head and idle timeouts, the cap per worker."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]  # no stubs installed
import pytest
import uvicorn

from conveyor.bundle import Bundle
from conveyor.serving.connection import ConnectionLimits, guarded
from tests.conftest import free_port
from tests.serving.conftest import GOOD, Serving, serving, stored

pytestmark = pytest.mark.slow

HEADER_TIMEOUT_S = 1.0
KEEP_ALIVE_S = 1.0
MAX_CONNECTIONS = 64
IDLE_SOCKETS = 300
HUGE_HEADER_BYTES = 8 * 1024 * 1024
HUGE_CLIENTS = 8
# The workers' open files: fewer than the idle sockets, as a pod's limit is fewer than an attacker's sockets.
OPEN_FILES = 256


@pytest.fixture(scope="module")
def server(bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serving]:
    """The default bundle served with short timeouts and a small connection cap."""
    tag = stored(
        bundle,
        header_timeout_s=HEADER_TIMEOUT_S,
        keep_alive_timeout_s=KEEP_ALIVE_S,
        max_connections=MAX_CONNECTIONS,
        max_concurrency=MAX_CONNECTIONS,
    )
    with serving(tag, tmp_path_factory.mktemp("connections"), open_files=OPEN_FILES) as running:
        yield running


def _connect(server: Serving) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return connection


def _closed_within(connection: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the server closed ``connection`` within ``seconds``, and what it sent before."""
    connection.settimeout(0.1)
    received = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = connection.recv(65_536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return True, received
        if not chunk:
            return True, received
        received += chunk
    return False, received


def _workers_rss(server: Serving) -> int:
    processes = [psutil.Process(server.process.pid), *psutil.Process(server.process.pid).children(recursive=True)]
    return sum(process.memory_info().rss for process in processes)


def _predicts(server: Serving) -> int:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        return client.post("/predict", json={"records": [GOOD]}).status_code


def test_an_oversized_head_gets_431_and_the_workers_memory_stays_bounded(server: Serving) -> None:
    before = _workers_rss(server)
    connections = [_connect(server) for _ in range(HUGE_CLIENTS)]
    line = b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Big: "
    chunk = b"a" * 65_536
    answers = []
    for connection in connections:
        connection.sendall(line)
        sent = len(line)
        try:
            while sent < HUGE_HEADER_BYTES:
                connection.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
        answers.append((sent, _closed_within(connection, 5)))
    grown = _workers_rss(server) - before
    for connection in connections:
        connection.close()
    for sent, (closed, received) in answers:
        assert closed, f"still open after {sent} bytes of headers"
        assert sent < HUGE_HEADER_BYTES
        assert received == b"" or received.startswith(b"HTTP/1.1 431 "), received[:200]
    assert grown < 32 * 1024 * 1024, f"the workers grew by {grown / 2**20:.0f} MiB"
    assert _predicts(server) == 200


def test_a_head_just_over_the_limit_gets_431_naming_it(server: Serving) -> None:
    with _connect(server) as connection:
        connection.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 17_000 + b"\r\n\r\n")
        closed, received = _closed_within(connection, 5)
    assert closed
    assert received.startswith(b"HTTP/1.1 431 "), received[:200]
    assert b"exceed the limit of 16384 bytes" in received


def test_a_refused_body_is_not_taken_for_a_head_and_the_next_head_is_still_bounded(server: Serving) -> None:
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 300000\r\n\r\n"
    with _connect(server) as connection:
        connection.sendall(head + b" " * 300_000 + b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        connection.settimeout(0.2)
        received = b""
        deadline = time.monotonic() + 10
        while b"HTTP/1.1 200 " not in received and time.monotonic() < deadline:
            try:
                received += connection.recv(65_536)
            except TimeoutError:
                continue
        assert received.startswith(b"HTTP/1.1 413 "), received[:200]
        assert b"HTTP/1.1 200 " in received, received[:500]
        assert b" 431 " not in received
        connection.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40_000)
        closed, rest = _closed_within(connection, 5)
    assert closed, "an oversized head after a refused body was never closed"
    # The rest of the /readyz answer (its body's newline) may arrive first.
    rest = rest.lstrip(b"\r\n")
    assert rest == b"" or rest.startswith(b"HTTP/1.1 431 "), rest[:200]


def test_a_head_not_complete_in_time_closes_the_connection(server: Serving) -> None:
    started = time.monotonic()
    with _connect(server) as connection:
        connection.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        closed, received = _closed_within(connection, HEADER_TIMEOUT_S + 5)
    assert closed, "a partial head was never closed"
    assert time.monotonic() - started < HEADER_TIMEOUT_S + 3
    assert received.startswith(b"HTTP/1.1 408 "), received[:200]


def test_a_connection_that_sends_nothing_is_closed_after_the_head_timeout(server: Serving) -> None:
    with _connect(server) as connection:
        closed, received = _closed_within(connection, HEADER_TIMEOUT_S + 5)
    assert closed
    assert received == b""


def test_an_idle_kept_alive_connection_is_closed_after_the_keep_alive_timeout(server: Serving) -> None:
    with _connect(server) as connection:
        connection.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        first = connection.recv(65_536)
        assert first.startswith(b"HTTP/1.1 200 ")
        closed, _ = _closed_within(connection, KEEP_ALIVE_S + 2)
    assert closed


def test_many_idle_sockets_leave_traffic_and_readyz_answering(server: Serving) -> None:
    idle = []
    try:
        for _ in range(IDLE_SOCKETS):
            connection = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            connection.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            idle.append(connection)
        with httpx.Client(base_url=server.url, timeout=5) as client:
            assert client.get("/readyz").status_code == 200
            answered = client.post("/predict", json={"records": [GOOD]})
            assert answered.status_code == 200, answered.text
            assert answered.json() == ["Adelie"]
    finally:
        for connection in idle:
            connection.close()
    assert "Traceback" not in server.output()


def test_too_many_headers_get_431(server: Serving) -> None:
    headers = {f"x-h{number}": "1" for number in range(150)}
    with httpx.Client(base_url=server.url, timeout=10) as client:
        response = client.get("/metadata", headers=headers)
    assert response.status_code == 431
    assert response.json()["detail"][0]["type"] == "too_many"


async def _hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(params=["h11", "httptools"])
def uvicorn_server(request: pytest.FixtureRequest) -> Iterator[int]:
    """uvicorn itself on 127.0.0.1 with :func:`guarded` over each protocol it may pick (the bento has h11 only)."""
    import importlib

    base = importlib.import_module(f"uvicorn.protocols.http.{request.param}_impl")
    protocol = base.H11Protocol if request.param == "h11" else base.HttpToolsProtocol
    limits = ConnectionLimits(
        max_header_bytes=16_384, header_timeout_s=HEADER_TIMEOUT_S, keep_alive_timeout_s=1, max_connections=8
    )
    port = free_port()
    config = uvicorn.Config(
        _hello, host="127.0.0.1", port=port, http=guarded(protocol, limits), log_level="critical", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def test_each_protocol_bounds_heads_times_them_out_and_caps_connections(uvicorn_server: int) -> None:
    def connect() -> socket.socket:
        return socket.create_connection(("127.0.0.1", uvicorn_server), timeout=5)

    with connect() as huge:
        huge.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40_000)
        closed, received = _closed_within(huge, 3)
    assert closed
    assert received == b"" or received.startswith((b"HTTP/1.1 431 ", b"HTTP/1.1 400 ")), received[:100]
    with connect() as slow:
        slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        closed, received = _closed_within(slow, HEADER_TIMEOUT_S + 3)
    assert closed
    assert received.startswith(b"HTTP/1.1 408 ")
    idle = [connect() for _ in range(20)]
    try:
        with connect() as fresh:
            fresh.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            _, answer = _closed_within(fresh, 1)
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:100]
    finally:
        for connection in idle:
            connection.close()
