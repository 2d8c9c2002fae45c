"""Serving test helpers: a bundle served in process, settings as if packaged otherwise, and requests to send it."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from conveyor import io
from conveyor.bundle import MODEL_NAME, Bundle, write_bundle
from conveyor.config import Config
from conveyor.contract import conform, infer_contract
from conveyor.serving.prediction_log import Exporter
from conveyor.serving.routes import ServingApp
from tests.conftest import configured, customers, free_port, make_bundle, stop_group, tool_env

SERVICE = "conveyor.serving.service:Conveyor"
STARTUP_TIMEOUT_S = 120

GOOD = {
    "bill_length_mm": 39.1,
    "bill_depth_mm": 18.7,
    "flipper_length_mm": 181,
    "body_mass_g": 3750,
    "island": "Torgersen",
    "sex": "male",
}
JSON = {"content-type": "application/json"}
# (case, body, headers, status, the error type of the first problem in the response's detail)
BAD: list[tuple[str, Any, dict[str, str], int, str]] = [
    ("wrong type", {"records": [GOOD | {"bill_length_mm": "39.1"}]}, JSON, 400, "float_type"),
    ("missing field", {"records": [{k: v for k, v in GOOD.items() if k != "sex"}]}, JSON, 400, "missing"),
    ("unknown field", {"records": [GOOD | {"colour": "red"}]}, JSON, 400, "extra_forbidden"),
    ("the target", {"records": [GOOD | {"species": "Adelie"}]}, JSON, 400, "extra_forbidden"),
    ("unknown top-level field", {"records": [GOOD], "explain": True}, JSON, 400, "extra_forbidden"),
    ("NaN", json.dumps({"records": [GOOD]}).replace("39.1", "NaN").encode(), JSON, 400, "finite_number"),
    ("out of range", {"records": [GOOD | {"body_mass_g": 80_000}]}, JSON, 400, "less_than_equal"),
    ("integer below its minimum", {"records": [GOOD | {"body_mass_g": 0}]}, JSON, 400, "greater_than_equal"),
    ("unseen category", {"records": [GOOD | {"island": "Atlantis"}]}, JSON, 400, "literal_error"),
    ("empty list", {"records": []}, JSON, 400, "too_short"),
    ("too many records", {"records": [GOOD] * 1001}, JSON, 400, "too_long"),
    ("not JSON", b"island=Dream", JSON, 400, "json_invalid"),
    ("empty body", b"", JSON, 400, "json_invalid"),
    ("not an object", b"[1, 2]", JSON, 400, "dict_type"),
    ("nested 1,000 deep", b"[" * 1000 + b"]" * 1000, JSON, 400, "json_invalid"),
    ("body over the limit", b"[" + b" " * 300_000 + b"]", JSON, 413, "too_large"),
    ("wrong content type", {"records": [GOOD]}, {"content-type": "text/csv"}, 415, "media_type"),
    ("no content type", {"records": [GOOD]}, {}, 415, "media_type"),
]


def packaged_with(bundle: Bundle, section: str, **settings: Any) -> Bundle:
    """``bundle`` as if packaged with other settings in ``section`` (``serve`` or ``prediction_log``)."""
    changed = getattr(bundle.info, section).model_copy(update=settings)
    return dataclasses.replace(bundle, info=bundle.info.model_copy(update={section: changed}))


class Served:
    """A bundle served in process, with the middleware ``bentoml serve`` runs, through httpx."""

    def __init__(self, bundle: Bundle, exporter: Exporter | None = None, tokens: tuple[bytes, ...] = ()) -> None:
        self.registry = CollectorRegistry()
        self.serving = ServingApp(bundle, exposition=lambda: generate_latest(self.registry), registry=self.registry)
        self.serving.load(exporter=exporter)
        self.slow_entered = asyncio.Event()
        self.release = asyncio.Event()

        async def livez(_: Request) -> PlainTextResponse:
            return PlainTextResponse("\n")

        async def slow(_: Request) -> PlainTextResponse:
            self.slow_entered.set()
            await self.release.wait()
            return PlainTextResponse("done")

        server = Starlette(routes=[Route("/livez", livez), Route("/slow", slow), Mount("/", app=self.serving.app)])
        self.app = self.serving.front(server, routes=("/livez", "/slow"), tokens=tokens)

    def run(self, *calls: Callable[[httpx.AsyncClient], Any]) -> list[httpx.Response]:
        """Run the calls concurrently, each given the client; their responses in order."""

        async def main() -> list[httpx.Response]:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://conveyor.invalid") as client:
                return list(await asyncio.gather(*(call(client) for call in calls)))

        return asyncio.run(main())

    def request(self, method: str, path: str, content: bytes = b"", headers: dict[str, str] = JSON) -> httpx.Response:
        """One request."""
        return self.run(lambda client: client.request(method, path, content=content, headers=headers))[0]

    def post(self, path: str, body: Any, headers: dict[str, str] = JSON) -> httpx.Response:
        """POST ``body`` (JSON-encoded unless already bytes)."""
        return self.request("POST", path, body if isinstance(body, bytes) else json.dumps(body).encode(), headers)


@pytest.fixture
def served(bundle: Bundle) -> Served:
    """The default bundle served in process."""
    return Served(bundle)


@pytest.fixture(scope="session")
def customer_bundle(tmp_path_factory: pytest.TempPathFactory, params: Config) -> Bundle:
    """A model of the generated customers table (an id, dates, bools, text, a bool target), packaged as a bundle."""
    directory = tmp_path_factory.mktemp("customers")
    customers().to_csv(directory / "customers.csv", index=False)
    raw = io.read_source(str(directory / "customers.csv"))
    contract = infer_contract(raw, target="churned")
    cfg = configured(params, data={"target": "churned"}, task="classification", features={"drop": []})
    return make_bundle(directory / "bundle", cfg, contract, conform(raw, contract))


def customer_rows(rows: int = 5) -> list[dict[str, Any]]:
    """Rows of the customers table as a client exports them (JSON, every column but the target)."""
    table = customers().drop(columns=["churned"]).head(rows)
    return list(json.loads(table.to_json(orient="records")))


def stored(bundle: Bundle, *, onnx: bytes | None = None, **serve: Any) -> str:
    """``bundle`` saved as a model in this session's BentoML store with other ``serve`` settings; its tag.

    ``onnx`` replaces the ONNX model's bytes (hashed anew, as a tampered bundle would be).
    """
    import bentoml

    info = bundle.info.model_copy(update={"serve": bundle.serve.model_copy(update=serve)})
    model_onnx = bundle.onnx() if onnx is None else onnx
    version = hashlib.sha256(info.model_dump_json().encode() + model_onnx).hexdigest()[:16]
    tag = f"{MODEL_NAME}:{version}"
    try:
        bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        with bentoml.models.create(tag) as model:
            info = info.model_copy(update={"model_tag": tag})
            write_bundle(
                Path(model.path),
                model=bundle.model(),
                onnx=model_onnx,
                contract=bundle.contract,
                info=info,
                reference=bundle.reference(),
            )
    return tag


@dataclasses.dataclass
class Serving:
    """A running ``bentoml serve`` of a stored model: its process, URL, port and combined output."""

    process: subprocess.Popen[bytes]
    url: str
    port: int
    log: Path

    def output(self) -> str:
        """What the server printed so far."""
        return self.log.read_text(errors="replace")


def serve_command(port: int) -> list[str]:
    """``bentoml serve`` of the Conveyor service on 127.0.0.1:``port``."""
    return ["bentoml", "serve", SERVICE, "--host", "127.0.0.1", "--port", str(port)]


def serve_env(tag: str, directory: Path, **extra: str) -> dict[str, str]:
    """The environment to serve model ``tag``, the prediction log under ``directory`` (not the checkout)."""
    options = f"services.conveyor.monitoring.options.log_path={directory / 'monitoring'}"
    return tool_env() | {"CONVEYOR_MODEL_TAG": tag, "BENTOML_CONFIG_OPTIONS": options} | extra


@contextmanager
def serving(tag: str, directory: Path, *, open_files: int | None = None, **extra: str) -> Iterator[Serving]:
    """``bentoml serve`` of model ``tag`` in ``directory`` until ``/readyz`` answers; stopped (workers too) on exit.

    ``open_files`` limits the server's (and its workers') open files; ``extra`` is more environment.
    """

    port = free_port()
    log = directory / "bentoml.log"
    url = f"http://127.0.0.1:{port}"
    limit = [] if open_files is None else ["prlimit", f"--nofile={open_files}", "--"]
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*limit, *serve_command(port)],
            cwd=directory,
            env=serve_env(tag, directory, **extra),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        started = time.monotonic()
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"bentoml serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() - started > STARTUP_TIMEOUT_S:
                raise RuntimeError(f"bentoml serve not ready in {STARTUP_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        yield Serving(process, url, port, log)
    finally:
        stop_group(process)
