"""The service's logic in process: the engine over a packaged bundle, and the request guard."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from helpers_model import labelled, regression
from helpers_service import make_bundle

from conveyor import io
from conveyor.compiled import OnnxPredictor, SklearnPredictor
from conveyor.config import Config
from conveyor.contract import Contract
from conveyor.predict import predict
from conveyor.serving import MODEL_FILE, Bundle, Engine, Message, RequestGuard, Scope

LIMIT = 2048


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, params: Config, contract: Contract) -> Bundle:
    """The default model (logistic regression, served through ONNX) as a bundle on disk."""
    data = io.read_source(str(Path(__file__).resolve().parents[2] / "data" / "penguins.csv"))
    return make_bundle(tmp_path_factory.mktemp("bundle"), params, contract, data)


def as_records(bundle: Bundle, df: pd.DataFrame) -> list[Any]:
    """Rows of ``df`` as validated request records (NaN sent as null)."""
    rows = df[list(bundle.spec.columns)].astype(object).where(df.notna(), None).to_dict("records")
    return [bundle.record_model.model_validate(row) for row in rows]


def test_the_engine_predicts_what_the_pipeline_predicts(bundle: Bundle, penguins: pd.DataFrame) -> None:
    engine = Engine(bundle)
    assert isinstance(engine.predictor, OnnxPredictor)
    engine.warm_up()
    rows = penguins.head(60)
    expected = predict(io.load_model(bundle.directory / MODEL_FILE), rows)
    assert engine.predict(as_records(bundle, rows)) == [str(label) for label in expected]
    proba = engine.predict_proba(as_records(bundle, rows))
    assert all(set(p) == {"Adelie", "Chinstrap", "Gentoo"} for p in proba)
    assert np.allclose([sum(p.values()) for p in proba], 1.0, atol=1e-5)


def test_metadata_traces_the_model_and_carries_the_contract(bundle: Bundle, contract: Contract) -> None:
    meta = Engine(bundle).metadata()
    assert meta["model_tag"] == "conveyor-model:test"
    assert meta["features"] == list(bundle.spec.columns)
    assert meta["inference"]["inference"] == "onnx"
    assert Contract.model_validate(meta["contract"]) == contract
    assert {"git_revision", "data_hash", "params_hash", "metrics", "libraries", "limits"} <= set(meta)
    json.dumps(meta)  # the endpoint must be able to serialise it


def test_a_regression_bundle_predicts_floats(
    tmp_path: Path, params: Config, contract: Contract, penguins: pd.DataFrame
) -> None:
    cfg = regression(params)
    data = labelled(penguins, cfg)
    bundle = make_bundle(tmp_path, cfg, contract, data)
    values = Engine(bundle).predict(as_records(bundle, data.head(3)))
    assert all(isinstance(v, float) and 2000 < v < 7000 for v in values)


def test_sklearn_is_loaded_when_onnx_was_not_verified(bundle: Bundle, tmp_path: Path) -> None:
    info = bundle.info | {"inference": bundle.info["inference"] | {"inference": "sklearn"}}
    fallback = Bundle(bundle.directory, info, bundle.contract)
    assert isinstance(Engine(fallback).predictor, SklearnPredictor)


async def echo(scope: Scope, receive: Any, send: Any) -> None:
    """An inner app that answers 200 with the body it received."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


class Client:
    """The guard in front of ``echo``, called in process through httpx's ASGI transport."""

    def __init__(self) -> None:
        self.app = RequestGuard(echo, paths=["/predict"], fields=["records"], max_body_bytes=LIMIT)

    def post(self, path: str, *, content: bytes, headers: dict[str, str]) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://conveyor.invalid") as http:
                return await http.post(path, content=content, headers=headers)

        return asyncio.run(call())


@pytest.fixture
def client() -> Client:
    """A fresh guarded echo app."""
    return Client()


JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("body", "headers", "status", "loc"),
    [
        (b"", JSON, 400, ["body"]),
        (b"  \n", JSON, 400, ["body"]),
        (b"{records: 1}", JSON, 400, ["body"]),
        (b"[1, 2]", JSON, 400, ["body"]),
        (b'{"records": [], "explain": true}', JSON, 400, ["body", "explain"]),
        (b"{}", JSON, 400, ["body", "records"]),
        (b'{"records": []}', {"content-type": "text/plain"}, 415, ["header", "content-type"]),
        (b'{"records": []}', {}, 415, ["header", "content-type"]),
        (b'{"records": [' + b"0," * LIMIT + b"0]}", JSON, 413, ["body"]),
    ],
)
def test_the_guard_refuses_what_bentoml_lets_through(
    client: Client, body: bytes, headers: dict[str, str], status: int, loc: list[str]
) -> None:
    response = client.post("/predict", content=body, headers=headers)
    assert response.status_code == status
    assert response.json()["detail"][0]["loc"] == loc
    assert response.json()["error"]


def test_the_guard_passes_good_requests_and_other_paths_untouched(client: Client) -> None:
    body = b'{"records": [{"a": NaN}]}'  # NaN is the record model's to refuse, with the field's name
    assert (
        client.post("/predict", content=body, headers={"content-type": "application/json; charset=utf-8"}).content
        == body
    )
    assert client.post("/metadata", content=b"whatever", headers={"content-type": "text/plain"}).status_code == 200


def test_a_streamed_body_is_cut_off_at_the_limit_without_a_declared_length() -> None:
    guard = RequestGuard(echo, paths=["/predict"], fields=["records"], max_body_bytes=LIMIT)
    chunks = [{"type": "http.request", "body": b"x" * 1000, "more_body": True} for _ in range(10)]
    sent: list[Message] = []

    async def receive() -> Message:
        return chunks.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": [(b"content-type", b"application/json")]}
    asyncio.run(guard(scope, receive, send))
    assert sent[0]["status"] == 413
    assert len(chunks) == 7  # it stopped reading after the third chunk crossed the limit
