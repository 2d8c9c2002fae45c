"""The HTTP app in process: routes, refusals, limits, metrics and the OpenAPI document.

The app runs as ``bentoml serve`` runs it (:meth:`ServingApp.front` in front of a server that
mounts :attr:`ServingApp.app`), with a small Starlette app standing in for BentoML's server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from conveyor.bundle import Bundle
from conveyor.config import Config
from conveyor.contract import Contract, conform, parse_contract
from conveyor.serving.middleware import Admission
from conveyor.serving.routes import ServingApp
from tests.conftest import labelled, make_bundle, regression
from tests.serving.conftest import BAD, GOOD, JSON, Served, customer_rows, packaged_with


def test_predictions_metadata_and_probabilities(served: Served) -> None:
    assert (
        served.post("/predict", {"records": [GOOD, GOOD | {"island": "Biscoe", "bill_depth_mm": 14.0}]}).json()[0]
        == "Adelie"
    )
    proba = served.post("/predict_proba", {"records": [GOOD | {"sex": None, "bill_depth_mm": None}]}).json()
    assert proba[0]["Adelie"] > 0.5
    for method in ("GET", "POST"):
        assert served.request(method, "/metadata").json()["model_tag"] == served.serving.bundle.info.model_tag


def test_a_regressor_has_no_predict_proba_route(
    tmp_path: Path, params: Config, contract: Contract, penguins: pd.DataFrame
) -> None:
    cfg = regression(params)
    bundle = make_bundle(tmp_path, cfg, contract, labelled(penguins, cfg))
    served = Served(bundle)
    record = {k: v for k, v in GOOD.items() if k != "body_mass_g"} | {"species": "Adelie"}
    record = {column: record.get(column, GOOD.get(column)) for column in bundle.columns}
    assert isinstance(served.post("/predict", {"records": [record]}).json()[0], float)
    assert served.post("/predict_proba", {"records": [record]}).status_code == 404
    assert "/predict_proba" not in served.serving.openapi["paths"]


BIG = 300_000


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/predict"),
        ("POST", "/predict_proba"),
        ("POST", "/metadata"),
        ("GET", "/docs.json"),
        ("POST", "/nowhere"),
    ],
)
def test_the_body_limit_covers_every_route(served: Served, method: str, path: str) -> None:
    response = served.request(method, path, b"[" + b" " * BIG + b"]")
    assert response.status_code == 413
    assert response.json()["detail"][0]["type"] == "too_large"


def test_a_streamed_body_is_cut_off_at_the_limit(served: Served) -> None:
    async def chunks() -> Any:
        for _ in range(BIG // 10_000):
            yield b" " * 10_000

    response = served.run(lambda client: client.post("/metadata", content=chunks(), headers=JSON))[0]
    assert response.status_code == 413


def test_the_default_limit_takes_1000_real_records(served: Served, penguins: pd.DataFrame) -> None:
    columns = list(served.serving.bundle.columns)
    rows = penguins[columns].astype(object).where(penguins.notna(), None).to_dict("records")
    body = json.dumps({"records": [rows[i % len(rows)] for i in range(1000)]}, indent=1).encode()
    assert len(body) < served.serving.bundle.serve.max_body_bytes
    assert len(served.post("/predict", body).json()) == 1000


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deeply_nested_json_is_refused_at_once(served: Served, depth: int) -> None:
    for body in (b"[" * depth, b'{"records": ' + b"[" * depth + b"]" * depth + b"}"):
        response = served.post("/predict", body[: served.serving.bundle.serve.max_body_bytes])
        assert response.status_code == 400
        assert response.json()["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize("bad", BAD, ids=[case[0] for case in BAD])
def test_each_bad_request_gets_a_4xx_as_documented(
    served: Served, bad: tuple[str, Any, dict[str, str], int, str]
) -> None:
    case, body, headers, status, kind = bad
    response = served.post("/predict", body, headers)
    assert response.status_code == status, (case, response.text)
    assert response.json()["detail"][0]["type"] == kind, (case, response.text)
    document = served.serving.openapi
    documented = document["paths"]["/predict"]["post"]["responses"][str(status)]
    schema = documented["content"]["application/json"]["schema"]
    jsonschema.validate(response.json(), schema | {"components": document["components"]})


def test_a_refusal_is_one_info_line_without_the_values_sent(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    secret = "Atlantis-4711"
    with caplog.at_level(logging.INFO, logger="conveyor"):
        served.post("/predict", {"records": [GOOD | {"island": secret, "bill_length_mm": 1e6, "x\ny": 1}]})
    [record] = [r for r in caplog.records if r.name.startswith("conveyor")]
    assert record.levelno == logging.INFO
    assert record.exc_info is None
    line = record.getMessage()
    assert "\n" not in line
    assert "records.0.island: literal_error" in line
    assert secret not in line
    assert "1000000" not in line


def test_metrics_count_routes_and_lump_unknown_paths(served: Served) -> None:
    for index in range(30):
        assert served.request("GET", f"/scan-{index}").status_code == 404
    served.post("/predict", {"records": [GOOD]})
    text = served.request("GET", "/metrics").text
    totals = [line for line in text.splitlines() if line.startswith("conveyor_request_total{")]
    assert 'conveyor_request_total{endpoint="other",http_response_code="404"} 30.0' in totals
    assert 'conveyor_request_total{endpoint="/predict",http_response_code="200"} 1.0' in totals
    assert not any("scan-" in line for line in text.splitlines())


def test_requests_beyond_the_concurrency_limit_get_429_and_probes_still_answer(bundle: Bundle) -> None:
    served = Served(packaged_with(bundle, "serve", max_concurrency=1))

    async def slow(client: httpx.AsyncClient) -> httpx.Response:
        return await client.get("/slow")

    async def then_predict(client: httpx.AsyncClient) -> httpx.Response:
        await served.slow_entered.wait()  # the slow request holds the only slot
        try:
            return await client.post("/predict", content=json.dumps({"records": [GOOD]}), headers=JSON)
        finally:
            served.release.set()

    async def probe(client: httpx.AsyncClient) -> httpx.Response:
        await served.slow_entered.wait()
        return await client.get("/livez")

    slow_response, refused, live = served.run(slow, then_predict, probe)
    assert (slow_response.status_code, refused.status_code, live.status_code) == (200, 429, 200)
    assert served.post("/predict", {"records": [GOOD]}).status_code == 200


def test_a_request_not_answered_in_time_gets_504() -> None:
    async def stalled(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(10)

    admission = Admission(stalled, max_concurrency=4, timeout=0.05, exempt=())

    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=admission)
        async with httpx.AsyncClient(transport=transport, base_url="http://conveyor.invalid") as client:
            return await client.post("/predict", content=b"{}", headers=JSON)

    response = asyncio.run(main())
    assert response.status_code == 504
    assert admission.in_progress == 0


def test_the_openapi_document_describes_what_the_service_does(served: Served) -> None:
    document = served.request("GET", "/docs.json").json()
    schemas = document["components"]["schemas"]
    text = json.dumps(document)
    assert '"ge"' not in text
    assert '"le"' not in text
    record = schemas["Record"]
    assert record["additionalProperties"] is False
    assert {"minimum": 1500, "maximum": 8000, "type": "integer"} in record["properties"]["body_mass_g"]["anyOf"]
    body = schemas["PredictRequest"]
    assert (body["additionalProperties"], body["required"]) == (False, ["records"])
    for path in ("/predict", "/predict_proba"):
        operation = document["paths"][path]["post"]
        assert operation["requestBody"]["required"] is True
        assert {"200", "400", "413", "415"} <= set(operation["responses"])
    error = schemas["Error"]["properties"]["detail"]
    assert error["type"] == "array"


def test_column_names_with_spaces_dots_dashes_unicode_and_digits_are_request_keys(
    tmp_path: Path, params: Config, contract: Contract, penguins: pd.DataFrame
) -> None:
    names = {
        "bill_length_mm": "bill length (mm)",
        "bill_depth_mm": "bill.depth",
        "flipper_length_mm": "flipper-length",
        "body_mass_g": "2nd mass",
        "island": "île",
        "sex": "sex",
    }
    renamed = parse_contract(
        {"columns": {names.get(name, name): spec.model_dump() for name, spec in contract.columns.items()}}
    )
    cfg = params.model_copy(update={"data": params.data.model_copy(update={"target": "species"})})
    bundle = make_bundle(tmp_path, cfg, renamed, penguins.rename(columns=names))
    served = Served(bundle)
    record = {names[key]: value for key, value in GOOD.items()}
    assert served.post("/predict", {"records": [record]}).json() == ["Adelie"]
    # `year` is in the contract but not a model input (features.drop): accepted, not required.
    record_schema = served.serving.openapi["components"]["schemas"]["Record"]
    assert set(record_schema["properties"]) == {*names.values(), "year"}
    assert set(record_schema["required"]) == set(names.values())
    response = served.post("/predict", {"records": [record | {"île": "Atlantis"}]})
    assert response.json()["detail"][0]["loc"] == ["records", 0, "île"]


def test_requests_waiting_for_a_slow_model_are_predicted_together(
    bundle: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    sklearn = bundle.info.model_copy(
        update={"inference": bundle.info.inference.model_copy(update={"inference": "sklearn"})}
    )
    served = Served(dataclasses.replace(bundle, info=sklearn))
    assert served.serving.batcher is not None
    assert Served(bundle).serving.batcher is None  # ONNX Runtime: predicted inline
    engine = served.serving.batcher.engine
    calls: list[int] = []
    predict = engine.predict

    def counted(rows: Any) -> list[Any]:
        calls.append(len(rows))
        return predict(rows)

    monkeypatch.setattr(engine, "predict", counted)
    gentoo = GOOD | {"island": "Biscoe", "flipper_length_mm": 230, "body_mass_g": 5500, "bill_depth_mm": 14.0}
    bodies = [[GOOD] if index % 2 else [gentoo, GOOD] for index in range(20)]

    def call(records: list[dict[str, Any]]) -> Callable[[httpx.AsyncClient], Any]:
        return lambda client: client.post("/predict", content=json.dumps({"records": records}), headers=JSON)

    responses = served.run(
        *(call(records) for records in bodies),
        lambda c: c.post("/predict_proba", content=json.dumps({"records": [GOOD]}), headers=JSON),
    )
    assert [r.json() for r in responses[:-1]] == [
        ["Adelie"] if index % 2 else ["Gentoo", "Adelie"] for index in range(20)
    ]
    assert responses[-1].json()[0]["Adelie"] > 0.5
    assert sum(calls) == 30
    assert len(calls) < 20


# --- a table with an id, dates, text and a bool target ---------------------------------------------


def test_a_full_source_row_is_predicted_and_a_bool_target_answers_true_or_false(customer_bundle: Bundle) -> None:
    from conveyor.model.predict import predict

    served = Served(customer_bundle)
    rows = customer_rows()
    answer = served.post("/predict", {"records": rows})
    assert answer.status_code == 200, answer.text
    labels = answer.json()
    expected = predict(customer_bundle.model(), inputs(customer_bundle, rows))
    assert labels == [label == "true" for label in expected]
    assert all(isinstance(label, bool) for label in labels)
    proba = served.post("/predict_proba", {"records": rows}).json()
    assert [set(p) for p in proba] == [{"false", "true"}] * len(rows)
    assert [p["true"] > 0.5 for p in proba] == labels
    metadata = served.request("GET", "/metadata").json()
    assert metadata["classes"] == ["false", "true"]
    assert "customer" not in metadata["features"]
    assert served.serving.openapi["paths"]["/predict"]["post"]["responses"]["200"]["content"][JSON["content-type"]][
        "schema"
    ] == {"type": "array", "items": {"type": "boolean"}}


@pytest.mark.parametrize(
    ("change", "field", "error"),
    [
        ({"signup": "2022-13-01"}, "signup", "iso_datetime"),
        ({"customer": ""}, "customer", "key_type"),
        ({"autopay": "yes"}, "autopay", "bool_type"),
        ({"churned": False}, "churned", "extra_forbidden"),
        ({"colour": "red"}, "colour", "extra_forbidden"),
    ],
)
def test_a_bad_value_in_any_contract_column_is_refused_by_name(
    customer_bundle: Bundle, change: dict[str, Any], field: str, error: str
) -> None:
    served = Served(customer_bundle)
    response = served.post("/predict", {"records": [customer_rows(1)[0] | change]})
    assert response.status_code == 400
    (problem,) = response.json()["detail"]
    assert (problem["loc"], problem["type"]) == (["records", 0, field], error)


def inputs(bundle: Bundle, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """``rows`` (every column but the target) in the canonical form the model was trained on."""
    columns = {name: spec for name, spec in bundle.contract.columns.items() if name != bundle.info.target}
    return conform(pd.DataFrame(rows), bundle.contract.model_copy(update={"columns": columns}))


def test_call_validates_and_answers_as_the_http_route_does(served: Served) -> None:
    """What the declared BentoML APIs run when called in process or by BentoML's handlers."""
    serving = served.serving
    assert asyncio.run(serving.call("/predict", [GOOD])) == served.post("/predict", {"records": [GOOD]}).json()
    assert asyncio.run(serving.call("/predict_proba", [GOOD]))[0]["Adelie"] > 0.5
    with pytest.raises(ValidationError, match="literal_error"):
        asyncio.run(serving.call("/predict", [GOOD | {"island": "Atlantis"}]))
    with pytest.raises(ValidationError, match="too_short"):
        asyncio.run(serving.call("/predict", []))


@pytest.mark.parametrize("dependency", [False, True])
def test_only_a_dependency_passes_bentomls_pickled_calls_to_bentoml(bundle: Bundle, dependency: bool) -> None:
    serving = ServingApp(bundle, exposition=lambda: b"", registry=CollectorRegistry())
    serving.load()

    async def bentoml_handler(_: Request) -> PlainTextResponse:
        return PlainTextResponse("bentoml")

    server = Starlette(routes=[Route("/predict", bentoml_handler, methods=["POST"])])
    app = serving.front(server, dependency=dependency)

    async def post(content_type: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://conveyor.invalid") as client:
            body = json.dumps({"records": [GOOD]}).encode()
            return await client.post("/predict", content=body, headers={"content-type": content_type})

    pickled = asyncio.run(post("application/vnd.bentoml+pickle"))
    assert (pickled.status_code, pickled.text if dependency else pickled.json()["detail"][0]["type"]) == (
        (200, "bentoml") if dependency else (415, "media_type")
    )
    assert asyncio.run(post("application/json")).json() == ["Adelie"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"), [("TRACE", "/metadata", {"GET", "HEAD", "POST"}), ("OPTIONS", "/predict", {"POST"})]
)
def test_a_method_a_declared_route_does_not_take_gets_405_naming_those_it_does(
    served: Served, method: str, path: str, allowed: set[str]
) -> None:
    response = served.request(method, path)
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == allowed
