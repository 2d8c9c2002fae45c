"""Serving test helpers: a bundle served in process, settings as if packaged otherwise, and requests to send it."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from conveyor import io
from conveyor.bundle import Bundle
from conveyor.config import Config
from conveyor.contract import conform, infer_contract
from conveyor.serving.prediction_log import Exporter
from conveyor.serving.routes import ServingApp
from tests.conftest import configured, customers, make_bundle

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

    def __init__(self, bundle: Bundle, exporter: Exporter | None = None) -> None:
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
        self.app = self.serving.front(server, routes=("/livez", "/slow"))

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
