"""Servers that tests and benchmarks start: a free port, readiness, and a clean stop of every worker."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

READY_TIMEOUT = 120.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _ready(url: str, process: subprocess.Popen[bytes], log: Path) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < READY_TIMEOUT:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"not ready after {READY_TIMEOUT} s: {url}\n{log.read_text(errors='replace')[-3000:]}")


@contextmanager
def running(
    command: list[str], *, cwd: Path, env: dict[str, str], port: int, log: Path, ready_path: str = "/readyz"
) -> Iterator[float]:
    """Start ``command`` (a server on 127.0.0.1:``port``) in its own process group, output to ``log``.

    Yields the seconds it took until ``ready_path`` answered 200; on exit stops the process group
    (the server and any workers it started), with SIGKILL if SIGTERM is not enough.
    """
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield _ready(f"http://127.0.0.1:{port}{ready_path}", process, log)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
