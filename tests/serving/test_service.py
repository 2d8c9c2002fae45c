"""The HTTP contract against a real ``bentoml serve`` at the root of a reproduced repository."""

from __future__ import annotations

import asyncio
import http.server
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import bentoml
import httpx
import pytest
import yaml
from pydantic import ValidationError

from conveyor import io
from conveyor.artifacts import PackageReport
from conveyor.bundle import MODEL_FILE, ONNX_FILE, read_package_report
from tests.conftest import free_port, run, running, tool_env
from tests.serving.conftest import BAD, GOOD, JSON

pytestmark = pytest.mark.slow

# Bounds of the property-based fuzzing and of the load test (each run stays well under a minute).
FUZZ_SECONDS = 45
FUZZ_EXAMPLES = 25
LOAD_CONNECTIONS = 64
LOAD_SECONDS = 5.0


class Server:
    """A running ``bentoml serve``: a client for it, its URL and its log."""

    def __init__(self, client: httpx.Client, url: str, log: Path) -> None:
        self.client, self.url, self.log = client, url, log

    def post(self, path: str, body: Any, headers: dict[str, str] = JSON) -> httpx.Response:
        """POST ``body`` (JSON-encoded unless already bytes) to ``path``."""
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.client.post(path, content=content, headers=headers)


@pytest.fixture(scope="module")
def server(reproduced_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``bentoml serve`` at the repository root on a free port, stopped (with its workers) after the module."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "bentoml.log"
    command = ["bentoml", "serve", "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with (
        running(command, cwd=reproduced_repo, env=tool_env(), port=port, log=log),
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        yield Server(client, url, log)


def test_predictions_come_from_the_packaged_model(server: Server, reproduced_repo: Path) -> None:
    other = GOOD | {
        "island": "Biscoe",
        "flipper_length_mm": 230.0,
        "body_mass_g": 5500,
        "bill_depth_mm": 14.0,
        "bill_length_mm": 47.0,
    }
    assert server.post("/predict", {"records": [GOOD, other]}).json() == ["Adelie", "Gentoo"]
    proba = server.post("/predict_proba", {"records": [GOOD | {"sex": None, "bill_depth_mm": None}]}).json()
    assert proba[0]["Adelie"] > 0.5
    assert abs(sum(proba[0].values()) - 1) < 1e-5
    report = io.read_artifact(reproduced_repo / "reports/package.json", PackageReport)
    packaged_at = run(reproduced_repo, "git", "rev-parse", "HEAD~1").stdout.strip()
    for meta in (server.client.get("/metadata").json(), server.post("/metadata", {}).json()):
        assert (meta["model_tag"], meta["git_revision"], meta["data_hash"]) == (
            report.model_tag,
            packaged_at,
            report.provenance.data_hash,
        )
        assert meta["inference"]["inference"] == "onnx"
        assert meta["features"] == list(GOOD)


def test_bentoml_endpoints_stay_on_and_openapi_documents_every_field(server: Server) -> None:
    for path in ("/healthz", "/livez", "/readyz", "/metrics", "/"):
        assert server.client.get(path).status_code == 200, path
    schemas = server.client.get("/docs.json").json()["components"]["schemas"]
    record = schemas["Record"]
    assert set(record["required"]) == set(GOOD)
    assert record["properties"]["island"]["enum"] == ["Biscoe", "Dream", "Torgersen"]


@pytest.mark.parametrize("bad", BAD, ids=[case[0] for case in BAD])
@pytest.mark.parametrize("path", ["/predict", "/predict_proba"])
def test_each_bad_request_gets_a_4xx_naming_the_problem(
    server: Server, path: str, bad: tuple[str, Any, dict[str, str], int, str]
) -> None:
    case, body, headers, status, kind = bad
    response = server.post(path, body, headers)
    assert response.status_code == status, (case, response.text)
    assert response.json()["detail"][0]["type"] == kind, (case, response.text)


def test_every_route_has_the_body_limit(server: Server) -> None:
    big = b"[" + b" " * 300_000 + b"]"
    for path in ("/metadata", "/nowhere", "/readyz"):
        assert server.post(path, big).status_code == 413, path


async def _at_once(url: str, body: bytes, count: int) -> list[int]:
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        responses = await asyncio.gather(*(client.post("/predict", content=body, headers=JSON) for _ in range(count)))
    return [response.status_code for response in responses]


def test_deeply_nested_bodies_at_once_are_all_refused(server: Server) -> None:
    """Once, 50 of these each hung 30 s and then got 500; a client timeout would fail this test."""
    nested = b'{"records": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    assert Counter(asyncio.run(_at_once(server.url, nested, 50))) == {400: 50}


def test_refusals_are_one_info_line_each_and_no_traceback(server: Server) -> None:
    secret = "Atlantis-4711"
    assert server.post("/predict", {"records": [GOOD | {"island": secret}]}).status_code == 400
    log = server.log.read_text(errors="replace")
    assert secret not in log
    assert "Traceback" not in log
    assert "[ERROR]" not in log
    assert "refused POST /predict with 400: records.0.island: literal_error" in log


def test_unknown_paths_add_no_metric_series(server: Server) -> None:
    for index in range(20):
        assert server.client.get(f"/scan-{index}").status_code == 404
    metrics = server.client.get("/metrics").text
    assert "scan-" not in metrics
    assert 'conveyor_request_total{endpoint="other",http_response_code="404"}' in metrics


def test_fuzzing_the_openapi_document_finds_nothing(server: Server, tmp_path: Path) -> None:
    """Schemathesis, every check, schema-valid and schema-invalid requests, bounded in examples and time:
    no 5xx, no schema-valid request refused, no schema-invalid one accepted, responses as documented."""
    command = [
        str(Path(sys.executable).parent / "st"),
        "run",
        f"{server.url}/docs.json",
        "--checks",
        "all",
        "--mode",
        "all",
        "--max-examples",
        str(FUZZ_EXAMPLES),
        "--max-time",
        str(FUZZ_SECONDS),
        "--seed",
        "1",
        "--generation-database",
        "none",
        "--no-color",
    ]
    result = subprocess.run(
        command, cwd=tmp_path, env=tool_env(), capture_output=True, text=True, timeout=4 * FUZZ_SECONDS, check=False
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Traceback" not in server.log.read_text(errors="replace")


async def _load(url: str, body: bytes) -> Counter[int]:
    statuses: Counter[int] = Counter()
    deadline = asyncio.get_running_loop().time() + LOAD_SECONDS
    limits = httpx.Limits(max_connections=LOAD_CONNECTIONS, max_keepalive_connections=LOAD_CONNECTIONS)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def connection() -> None:
            while asyncio.get_running_loop().time() < deadline:
                statuses[(await client.post("/predict", content=body, headers=JSON)).status_code] += 1

        await asyncio.gather(*(connection() for _ in range(LOAD_CONNECTIONS)))
    return statuses


def test_under_load_every_request_succeeds_and_the_server_stays_healthy(server: Server) -> None:
    body = json.dumps({"records": [GOOD] * 10}).encode()
    statuses = asyncio.run(_load(server.url, body))
    assert set(statuses) == {200}, statuses
    assert statuses[200] > LOAD_CONNECTIONS
    assert server.client.get("/readyz").status_code == 200
    assert server.post("/predict", {"records": [GOOD]}).json() == ["Adelie"]


@pytest.mark.parametrize("name", [ONNX_FILE, MODEL_FILE])
def test_a_corrupt_bundle_file_stops_the_server_with_one_line_naming_it(
    reproduced_repo: Path, tmp_path: Path, name: str
) -> None:
    tag = read_package_report(reproduced_repo / "reports/package.json").model_tag
    home = tmp_path / "bentoml"
    model_dir = Path("models", *tag.split(":"))
    shutil.copytree(Path(os.environ["BENTOML_HOME"]) / model_dir, home / model_dir)
    target = home / model_dir / name
    target.write_bytes(os.urandom(target.stat().st_size))
    env = tool_env() | {"BENTOML_HOME": str(home), "CONVEYOR_MODEL_TAG": tag}
    command = ["bentoml", "serve", "--host", "127.0.0.1", "--port", str(free_port())]
    result = subprocess.run(
        command, cwd=reproduced_repo, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert f"{name}: corrupt" in lines[0]


ENDPOINTS = {"predict", "predict_proba", "metadata"}


@contextmanager
def sync_client(url: str) -> Iterator[bentoml.SyncHTTPClient]:
    """BentoML's sync client for ``url``, closed after use with its temporary folder.

    BentoML 1.4.40's clients never remove that folder themselves: a ResourceWarning (an error
    here) whenever the collector reaches the client, in whichever test runs then.
    """
    client = bentoml.SyncHTTPClient(url)
    try:
        yield client
    finally:
        client.close()
        client._temp_dir.cleanup()


def test_bentoml_clients_discover_and_call_every_api(server: Server) -> None:
    """The issue: `endpoints={}` and `AttributeError: 'SyncHTTPClient' object has no attribute 'predict'`."""
    routes = server.client.get("/schema.json").json()["routes"]
    assert {route["name"] for route in routes} == ENDPOINTS
    with sync_client(server.url) as client:
        assert set(client.endpoints) == ENDPOINTS
        assert client.predict(records=[GOOD]) == ["Adelie"]
        assert client.predict_proba(records=[GOOD])[0]["Adelie"] > 0.5
        assert client.metadata()["features"] == list(GOOD)
        with pytest.raises(bentoml.exceptions.BentoMLException, match="literal_error"):
            client.predict(records=[GOOD | {"island": "Atlantis"}])

    async def call_async() -> tuple[Any, Any, Any]:
        async with bentoml.AsyncHTTPClient(server.url) as client:
            try:
                assert set(client.endpoints) == ENDPOINTS
                return await asyncio.gather(
                    client.predict(records=[GOOD, GOOD]), client.predict_proba(records=[GOOD]), client.metadata()
                )
            finally:
                client._temp_dir.cleanup()

    labels, proba, meta = asyncio.run(call_async())
    assert labels == ["Adelie", "Adelie"]
    assert abs(sum(proba[0].values()) - 1) < 1e-5
    assert meta["inference"]["inference"] == "onnx"


def test_the_bentos_openapi_document_is_the_served_one(server: Server, reproduced_repo: Path) -> None:
    name, version = read_package_report(reproduced_repo / "reports/package.json").bento_tag.split(":")
    packaged = Path(os.environ["BENTOML_HOME"], "bentos", name, version, "apis", "openapi.yaml")
    served = server.client.get("/docs.json").json()
    assert yaml.safe_load(packaged.read_text(encoding="utf-8")) == served
    assert {"/predict", "/predict_proba", "/metadata"} <= set(served["paths"])


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _page_requests(url: str, profile: Path) -> tuple[list[str], str]:
    """Every URL headless Chromium requested for the page at ``url`` (scripts run), and its DOM.

    From Chromium's network log: the requests made in the page's context (its network isolation
    key is the page's site), not the browser's own (update checks, account probes).
    """
    if CHROMIUM is None:
        pytest.fail(
            "Chromium is not installed: `make setup` installs Debian's chromium package with apt-get as root or "
            "with sudo; elsewhere install Chromium"
        )
    log = profile / "netlog.json"
    command = [
        CHROMIUM or "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile / 'profile'}",
        f"--log-net-log={log}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    netlog = json.loads(log.read_text(errors="replace"))
    start_job = netlog["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    site = f"{urlsplit(url).scheme}://{urlsplit(url).hostname}"
    requested = {
        event["params"]["url"]
        for event in netlog["events"]
        if event["type"] == start_job and event.get("params", {}).get("network_isolation_key") == f"{site} {site}"
    }
    return sorted(requested), result.stdout


def test_the_docs_page_requests_nothing_from_another_host_in_a_browser(server: Server, tmp_path: Path) -> None:
    requested, dom = _page_requests(f"{server.url}/", tmp_path / "ours")
    # Swagger UI ran and rendered the document it fetched.
    assert "/predict_proba" in dom, dom[-3000:]
    assert f"{server.url}/docs.json" in requested
    assert f"{server.url}/static_content/swagger-ui-bundle.js" in requested
    assert [url for url in requested if not url.startswith(f"{server.url}/")] == []


def test_the_browser_check_sees_the_tracker_on_bentomls_own_page(tmp_path: Path) -> None:
    """The control: BentoML's default page, served as it ships, is caught requesting Google Tag Manager."""
    import _bentoml_impl.server  # type: ignore[import-untyped]

    page = Path(_bentoml_impl.server.__file__).parent / "main-openapi.html"
    shutil.copy(page, tmp_path / "index.html")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as site:
        thread = threading.Thread(target=site.serve_forever, daemon=True)
        thread.start()
        try:
            requested, _ = _page_requests(f"http://127.0.0.1:{site.server_address[1]}/", tmp_path / "bentoml")
        finally:
            site.shutdown()
            thread.join(timeout=10)
    assert any(urlsplit(url).hostname == "www.googletagmanager.com" for url in requested), requested


def test_every_asset_of_the_docs_page_is_served(server: Server) -> None:
    page = server.client.get("/").text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets
    for asset in assets:
        assert asset.startswith("/"), asset
        assert server.client.get(asset).status_code == 200, asset


def test_another_service_composes_this_one_with_bentoml_depends(
    reproduced_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process: ``bentoml.depends`` on a service not being served gives the service instance itself."""
    tag = read_package_report(reproduced_repo / "reports/package.json").model_tag
    monkeypatch.setenv("CONVEYOR_MODEL_TAG", tag)
    service = importlib.import_module("conveyor.serving.service")

    @bentoml.service(name="composer")
    class Composer:
        conveyor = bentoml.depends(service.Conveyor)

        @bentoml.api  # type: ignore[untyped-decorator]
        async def species(self, records: list[dict[str, Any]]) -> list[str]:
            labels: list[str] = await self.conveyor.predict(records=records)
            return labels

    composer = Composer()
    assert asyncio.run(composer.species(records=[GOOD])) == ["Adelie"]
    conveyor = composer.conveyor
    assert isinstance(conveyor, service.Conveyor.inner)
    assert asyncio.run(conveyor.predict_proba(records=[GOOD]))[0]["Adelie"] > 0.5
    assert asyncio.run(conveyor.metadata())["model_tag"] == tag
    with pytest.raises(ValidationError, match="literal_error"):
        asyncio.run(conveyor.predict(records=[GOOD | {"island": "Atlantis"}]))


COMPOSER = """
from typing import Any

import bentoml

from conveyor.serving.service import Conveyor


@bentoml.service(name="composer")
class Composer:
    conveyor = bentoml.depends(Conveyor)

    @bentoml.api
    async def species(self, records: list[dict[str, Any]]) -> list[str]:
        return await self.conveyor.predict(records=records)

    @bentoml.api
    async def model(self) -> str:
        return (await self.conveyor.metadata())["model_tag"]
"""


def test_a_served_service_composes_this_one_with_bentoml_depends(reproduced_repo: Path, tmp_path: Path) -> None:
    """Served: the dependency runs as its own service and is called with BentoML's own (pickled) calls."""
    tag = read_package_report(reproduced_repo / "reports/package.json").model_tag
    (tmp_path / "composer.py").write_text(COMPOSER, encoding="utf-8")
    port = free_port()
    command = ["bentoml", "serve", "composer:Composer", "--host", "127.0.0.1", "--port", str(port)]
    env = tool_env() | {"CONVEYOR_MODEL_TAG": tag}
    with (
        running(command, cwd=tmp_path, env=env, port=port, log=tmp_path / "serve.log"),
        sync_client(f"http://127.0.0.1:{port}") as client,
    ):
        assert client.species(records=[GOOD]) == ["Adelie"]
        assert client.model() == tag
    assert "Traceback" not in (tmp_path / "serve.log").read_text(errors="replace")
