"""The HTTP contract against a real ``bentoml serve`` at the root of a reproduced repository."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import run, tool_env
from helpers_process import free_port, running

from conveyor import io
from conveyor.artifacts import PackageReport

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


@pytest.fixture(scope="module")
def server(reproduced_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """``bentoml serve`` at the repository root on a free port, stopped (with its workers) after the module."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "bentoml.log"
    command = ["bentoml", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with (
        running(command, cwd=reproduced_repo, env=tool_env(), port=port, log=log),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
    ):
        yield client


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
    report = io.read_artifact(reproduced_repo / "reports/package.json", PackageReport)
    packaged_at = run(reproduced_repo, "git", "rev-parse", "HEAD~1").stdout.strip()
    assert (meta["model_tag"], meta["git_revision"], meta["data_hash"]) == (
        report.model_tag,
        packaged_at,
        report.data_hash,
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
