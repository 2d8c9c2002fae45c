"""A stored model under a real ``bentoml serve``: a full log disk, a model that cannot start, who may call it."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conveyor.bundle import Bundle
from tests.conftest import free_port
from tests.serving.conftest import GOOD, serve_command, serve_env, serving, stored

pytestmark = pytest.mark.slow

TOKEN = "test-token-" + "0123456789abcdef"
EXIT_AFTER_FAILURE_S = 10
REQUESTS = 20


def _records(metrics: str, outcome: str) -> float:
    pattern = rf'^conveyor_prediction_log_records_total\{{[^}}]*outcome="{outcome}"[^}}]*\}} (\S+)$'
    return sum(float(value) for value in re.findall(pattern, metrics, flags=re.MULTILINE))


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs, filled: every write to it fails with ENOSPC (skipped where mounting is not allowed)."""
    mount = tmp_path / "full"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        with (mount / "filler").open("wb", buffering=0) as filler:
            try:
                for _ in range(1024):
                    filler.write(b"\0" * 4096)
            except OSError:
                pass
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_log_disk_counts_every_record_failed_and_prints_no_traceback(
    bundle: Bundle, tmp_path: Path, full_disk: Path
) -> None:
    tag = stored(bundle)
    options = f"services.conveyor.monitoring.options.log_path={full_disk / 'monitoring'}"
    with serving(tag, tmp_path, BENTOML_CONFIG_OPTIONS=options) as server, httpx.Client(base_url=server.url) as client:
        for _ in range(REQUESTS):
            assert client.post("/predict", json={"records": [GOOD, GOOD]}).status_code == 200
        deadline = time.monotonic() + 20
        while True:
            metrics = client.get("/metrics").text
            done = _records(metrics, "failed") + _records(metrics, "exported")
            if done >= 2 * REQUESTS or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        output = server.output()
    assert _records(metrics, "exported") == 0
    assert _records(metrics, "failed") == 2 * REQUESTS
    assert "Traceback" not in output
    assert output.count("No space left on device") == 1, output[-3000:]


def _serve_until_exit(tag: str, directory: Path, **extra: str) -> tuple[int | None, list[str], float]:
    """Run ``bentoml serve`` until it exits (at most two minutes): its code, its lines, and the seconds it
    took to exit after its first line naming Conveyor's failure."""
    log = directory / "bentoml.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            serve_command(free_port()),
            cwd=directory,
            env=serve_env(tag, directory, **extra),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    failed_at = None
    deadline = time.monotonic() + 120
    try:
        while process.poll() is None and time.monotonic() < deadline:
            if failed_at is None and "conveyor: " in log.read_text(errors="replace"):
                failed_at = time.monotonic()
            time.sleep(0.1)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
            process.wait(timeout=10)
    exited_at = time.monotonic()
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return process.poll(), lines, exited_at - (failed_at or exited_at)


def test_a_model_that_fails_to_load_stops_the_server_with_one_line(bundle: Bundle, tmp_path: Path) -> None:
    # A tampered ONNX model whose hash was recomputed: the bundle verifies, the worker cannot load it.
    tag = stored(bundle, onnx=os.urandom(len(bundle.onnx())))
    code, lines, after = _serve_until_exit(tag, tmp_path)
    assert code == 3, "bentoml serve never exited, or said it succeeded"
    causes = [line for line in lines if line.startswith("conveyor: cannot serve")]
    assert len(causes) == 1, lines
    assert "model.onnx" in causes[0] or "ONNX" in causes[0] or "onnx" in causes[0], causes[0]
    assert not any("Traceback" in line or "Application startup failed" in line for line in lines), lines
    assert after < EXIT_AFTER_FAILURE_S


def test_bearer_auth_without_its_token_stops_the_server_with_one_line(bundle: Bundle, tmp_path: Path) -> None:
    code, lines, _ = _serve_until_exit(stored(bundle, auth="bearer"), tmp_path)
    assert code not in (None, 0)
    assert len(lines) == 1, lines
    assert "CONVEYOR_API_TOKEN: not set" in lines[0]


def test_bearer_auth_guards_all_but_the_probes_and_metrics(bundle: Bundle, tmp_path: Path) -> None:
    tag = stored(bundle, auth="bearer", metadata="minimal")
    with serving(tag, tmp_path, CONVEYOR_API_TOKEN=TOKEN) as server, httpx.Client(base_url=server.url) as client:
        body = {"records": [GOOD]}
        refused = client.post("/predict", json=body)
        wrong = client.post("/predict", json=body, headers={"authorization": "Bearer not-the-token-at-all"})
        allowed = client.post("/predict", json=body, headers={"authorization": f"Bearer {TOKEN}"})
        metadata = client.get("/metadata", headers={"authorization": f"bearer {TOKEN}"})
        closed = {path: client.get(path).status_code for path in ("/metadata", "/docs.json", "/nowhere")}
        open_ = {path: client.get(path).status_code for path in ("/livez", "/healthz", "/readyz", "/metrics")}
    assert refused.status_code == wrong.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert TOKEN not in refused.text + server.output()
    assert allowed.status_code == 200
    assert allowed.json() == ["Adelie"]
    assert set(closed.values()) == {401}, closed
    assert set(open_.values()) == {200}, open_
    assert metadata.status_code == 200
    assert set(metadata.json()) == {"model_tag", "task", "classes", "limits"}
