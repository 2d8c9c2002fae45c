"""The HTTP contract against a real ``bentoml serve`` at the root of a reproduced repository."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import tool_env

from conveyor import io

pytestmark = pytest.mark.slow

GOOD = {
    "bill_length_mm": 39.1,
    "bill_depth_mm": 18.7,
    "flipper_length_mm": 181,
    "body_mass_g": 3750,
    "island": "Torgersen",
    "sex": "male",
}
JSON = {"content-type": "application/json"}
READY_SECONDS = 90


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def server(reproduced_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """``bentoml serve`` at the repository root on a free port, stopped (with its workers) after the module."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "bentoml.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["bentoml", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=reproduced_repo,
            env=tool_env(),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail(f"bentoml serve did not become ready:\n{log.read_text(errors='replace')[-3000:]}")
        yield client
    finally:
        client.close()
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop ``process`` and the workers it started (its own process group)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def post(server: httpx.Client, path: str, body: Any, headers: dict[str, str] = JSON) -> httpx.Response:
    """POST ``body`` (JSON-encoded unless already bytes) to ``path``."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return server.post(path, content=content, headers=headers)


def test_predictions_come_from_the_packaged_model(server: httpx.Client, reproduced_repo: Path) -> None:
    assert post(
        server,
        "/predict",
        {
            "records": [
                GOOD,
                GOOD
                | {
                    "island": "Biscoe",
                    "flipper_length_mm": 230.0,
                    "body_mass_g": 5500,
                    "bill_depth_mm": 14.0,
                    "bill_length_mm": 47.0,
                },
            ]
        },
    ).json() == ["Adelie", "Gentoo"]
    proba = post(server, "/predict_proba", {"records": [GOOD | {"sex": None, "bill_depth_mm": None}]}).json()
    assert proba[0]["Adelie"] > 0.5
    assert abs(sum(proba[0].values()) - 1) < 1e-5
    meta = post(server, "/metadata", {}).json()
    report = io.read_json(reproduced_repo / "reports/package.json")
    assert (meta["model_tag"], meta["git_revision"], meta["data_hash"]) == (
        report["model_tag"],
        report["git_revision"],
        report["data_hash"],
    )
    assert meta["inference"]["inference"] == "onnx"
    assert meta["features"] == list(GOOD)


def test_bentoml_endpoints_stay_on_and_openapi_documents_every_field(server: httpx.Client) -> None:
    for path in ("/healthz", "/livez", "/readyz", "/metrics"):
        assert server.get(path).status_code == 200, path
    schemas = server.get("/docs.json").json()["components"]["schemas"]
    record = next(schema for name, schema in schemas.items() if set(schema.get("properties", {})) == set(GOOD))
    assert set(record["required"]) == set(GOOD)
    assert record["properties"]["island"]["enum"] == ["Biscoe", "Dream", "Torgersen"]


BIG = b'{"records": [' + b" " * 1_100_000 + b"]}"
BAD: list[tuple[str, Any, dict[str, str], int, str]] = [
    ("wrong type", {"records": [GOOD | {"bill_length_mm": "39.1"}]}, JSON, 400, "bill_length_mm"),
    ("missing field", {"records": [{k: v for k, v in GOOD.items() if k != "sex"}]}, JSON, 400, "sex"),
    ("unknown field", {"records": [GOOD | {"year": 2007}]}, JSON, 400, "year"),
    ("unknown top-level field", {"records": [GOOD], "explain": True}, JSON, 400, "explain"),
    ("NaN", json.dumps({"records": [GOOD]}).replace("39.1", "NaN").encode(), JSON, 400, "bill_length_mm"),
    ("Infinity", json.dumps({"records": [GOOD]}).replace("39.1", "-Infinity").encode(), JSON, 400, "bill_length_mm"),
    ("out of range", {"records": [GOOD | {"body_mass_g": 80_000}]}, JSON, 400, "body_mass_g"),
    ("unseen category", {"records": [GOOD | {"island": "Atlantis"}]}, JSON, 400, "island"),
    ("empty list", {"records": []}, JSON, 400, "records"),
    ("too many records", {"records": [GOOD] * 1001}, JSON, 400, "records"),
    ("body over the limit", BIG, JSON, 413, "limit"),
    ("not JSON", b"island=Dream", JSON, 400, "not valid JSON"),
    ("empty body", b"", JSON, 400, "empty body"),
    ("wrong content type", {"records": [GOOD]}, {"content-type": "text/csv"}, 415, "application/json"),
]


@pytest.mark.parametrize("bad", BAD, ids=[case[0] for case in BAD])
@pytest.mark.parametrize("path", ["/predict", "/predict_proba"])
def test_each_bad_request_gets_a_4xx_naming_the_problem(
    server: httpx.Client, path: str, bad: tuple[str, Any, dict[str, str], int, str]
) -> None:
    case, body, headers, status, named = bad
    response = post(server, path, body, headers)
    assert response.status_code == status, (case, response.text)
    assert named in response.text, (case, response.text)


def test_the_server_still_answers_after_the_bad_requests(server: httpx.Client) -> None:
    assert post(server, "/predict", {"records": [GOOD]}).json() == ["Adelie"]
