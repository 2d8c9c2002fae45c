"""A model trained from a feature store, served in process against a fake Feast feature server.

The fake answers ``POST /get-online-features`` as ``feast serve`` does (columns, statuses, view
prefixes); the real server is in tests/feature_store/test_online_service.py.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import pytest

from conveyor.artifacts import OnlineFeaturesInfo
from conveyor.bundle import Bundle
from conveyor.monitor.run import label_keys
from conveyor.monitor.windows import attach_labels, read_labels
from conveyor.serving.online_features import FEAST_URL_VARIABLE, server_url
from conveyor.serving.prediction_log import BentoMonitorExporter, log_types
from tests.conftest import free_port
from tests.serving.conftest import GOOD, Served
from tests.serving.test_prediction_log import FakeMonitor, Recorder

VIEWS = {
    "bill_length_mm": "penguin_measurements",
    "bill_depth_mm": "penguin_measurements",
    "flipper_length_mm": "penguin_measurements",
    "body_mass_g": "penguin_measurements",
    "island": "penguin_profiles",
    "sex": "penguin_profiles",
}
# The online store: penguin 1 holds GOOD's values; penguin 2 a mass the contract refuses.
STORE: dict[int, dict[str, Any]] = {
    1: {name: float(value) if isinstance(value, int) else value for name, value in GOOD.items()},
    2: GOOD | {"body_mass_g": 90_000.0},
}


class FakeFeatureServer(BaseHTTPRequestHandler):
    """``/get-online-features`` over :data:`STORE`, with full feature names; counts its requests."""

    requests: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        ids = body["entities"]["penguin_id"]
        names = ["penguin_id", *(f"{VIEWS[name]}__{name}" for name in VIEWS)]
        results = [{"values": ids, "statuses": ["PRESENT"] * len(ids)}]
        for name in VIEWS:
            values = [STORE.get(i, {}).get(name) for i in ids]
            results.append({"values": values, "statuses": ["PRESENT" if i in STORE else "NOT_FOUND" for i in ids]})
        answer = json.dumps({"metadata": {"feature_names": names}, "results": results}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture(scope="module")
def feature_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeFeatureServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def online(bundle: Bundle, url: str, *, features: tuple[str, ...] = tuple(VIEWS)) -> Bundle:
    """``bundle`` as if trained from the feature store: ``features`` fetched from ``url`` for ``penguin_id``."""
    info = OnlineFeaturesInfo(
        feature_service="penguin_species", entity_keys=["penguin_id"], features=list(features), server_url=url
    )
    return dataclasses.replace(bundle, info=bundle.info.model_copy(update={"online_features": info}))


def test_entity_keys_alone_predict_as_the_features_sent_directly(bundle: Bundle, feature_server: str) -> None:
    direct = Served(bundle).post("/predict_proba", {"records": [GOOD]})
    served = Served(online(bundle, feature_server))
    FakeFeatureServer.requests.clear()
    fed = served.post("/predict_proba", {"records": [{"penguin_id": 1}, {"penguin_id": 1}]})
    assert fed.status_code == 200, fed.text
    assert fed.json() == [direct.json()[0]] * 2
    # One lookup for the whole request, of the feature service the bundle names.
    assert FakeFeatureServer.requests == [
        {"feature_service": "penguin_species", "entities": {"penguin_id": [1, 1]}, "full_feature_names": True}
    ]


def test_a_request_time_field_is_required_and_wins(bundle: Bundle, feature_server: str) -> None:
    # `sex` is not in the store here: the client sends it, and may send a stored feature too.
    served = Served(online(bundle, feature_server, features=tuple(name for name in VIEWS if name != "sex")))
    missing = served.post("/predict", {"records": [{"penguin_id": 1}]})
    assert missing.status_code == 400
    assert missing.json()["detail"][0]["loc"] == ["records", 0, "sex"]
    gentoo = {"island": "Biscoe", "flipper_length_mm": 230, "body_mass_g": 5500, "bill_depth_mm": 14.0}
    fed = served.post(
        "/predict", {"records": [{"penguin_id": 1, "sex": "male"} | gentoo, {"penguin_id": 1, "sex": "male"}]}
    )
    direct = Served(bundle).post("/predict", {"records": [GOOD | gentoo, GOOD]})
    assert fed.json() == direct.json()
    assert fed.json()[0] != fed.json()[1]


def test_a_record_without_its_entity_key_is_refused(bundle: Bundle, feature_server: str) -> None:
    answer = Served(online(bundle, feature_server)).post("/predict", {"records": [GOOD]})
    assert answer.status_code == 400
    problems = {(tuple(d["loc"]), d["type"]) for d in answer.json()["detail"]}
    assert (("records", 0, "penguin_id"), "missing") in problems


def test_a_missing_entity_is_a_404_naming_the_key_and_the_value(bundle: Bundle, feature_server: str) -> None:
    served = Served(online(bundle, feature_server))
    answer = served.post("/predict", {"records": [{"penguin_id": 1}, {"penguin_id": 999}]})
    assert answer.status_code == 404
    (problem,) = answer.json()["detail"]
    assert problem["loc"] == ["records", 1, "penguin_id"]
    assert problem["type"] == "entity_not_found"
    assert problem["msg"].startswith("entity penguin_id=999: not in the online store of feature view ")
    assert "penguin_id=999" in answer.json()["error"]


def test_an_unreachable_feature_server_is_a_503_in_one_line(bundle: Bundle) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    answer = Served(online(bundle, url)).post("/predict", {"records": [{"penguin_id": 1}]})
    assert answer.status_code == 503
    body = answer.json()
    assert body["detail"] == []
    assert body["error"].startswith(f"feature server {url}: /get-online-features failed: ")
    assert "\n" not in body["error"]


def test_features_the_contract_refuses_are_a_502(bundle: Bundle, feature_server: str) -> None:
    answer = Served(online(bundle, feature_server)).post("/predict", {"records": [{"penguin_id": 2}]})
    assert answer.status_code == 502
    assert answer.json()["error"].startswith(
        f"feature server {feature_server}: the data contract refuses its features: 0.body_mass_g: "
    )


def test_the_log_records_the_fetched_features_the_monitor_reads(bundle: Bundle, feature_server: str) -> None:
    recorder = Recorder()
    served = Served(online(bundle, feature_server), exporter=recorder)
    answer = served.post("/predict", {"records": [{"penguin_id": 1}]})
    served.serving.close()
    (request,) = recorder.requests
    assert [dict(record) for record in request.records] == [{"penguin_id": 1} | STORE[1]]
    exporter = BentoMonitorExporter(
        spec=bundle.spec,
        task="classification",
        classes=bundle.info.classes or [],
        model_tag="conveyor-model:test",
        others={"penguin_id": "categorical"} | log_types(bundle.contract, bundle.other_columns),
    )
    monitor = FakeMonitor()
    exporter.monitor = monitor  # type: ignore[assignment]
    exporter(request)
    # What conveyor monitor reads as the model's inputs are the values fetched for the key.
    assert monitor.columns["body_mass_g"] == ([STORE[1]["body_mass_g"]], "feature", "numerical")
    assert monitor.columns["island"] == ([STORE[1]["island"]], "feature", "categorical")
    assert monitor.columns["penguin_id"] == ([1], "metadata", "categorical")
    assert monitor.columns["prediction"][0] == answer.json()


def test_the_documented_request_is_the_keys_and_the_refusals_of_a_lookup(bundle: Bundle, feature_server: str) -> None:
    document = Served(online(bundle, feature_server, features=("island",))).serving.openapi
    (record,) = [
        schema for schema in document["components"]["schemas"].values() if "penguin_id" in schema.get("properties", {})
    ]
    assert set(record["required"]) == {"penguin_id", *(name for name in VIEWS if name != "island")}
    responses = document["paths"]["/predict"]["post"]["responses"]
    assert {"404", "502", "503"} <= set(responses)
    assert "404" not in Served(bundle).serving.openapi["paths"]["/predict"]["post"]["responses"]


def test_the_feature_servers_address_is_the_bundles_unless_the_environment_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(FEAST_URL_VARIABLE, raising=False)
    assert server_url("http://feast:6566") == "http://feast:6566"
    monkeypatch.setenv(FEAST_URL_VARIABLE, "http://127.0.0.1:7000")
    assert server_url("http://feast:6566") == "http://127.0.0.1:7000"


def test_the_monitor_joins_labels_on_the_logged_entity_key(bundle: Bundle, tmp_path: Path) -> None:
    fed = online(bundle, "http://127.0.0.1:6566")
    assert label_keys(bundle) == ()
    assert label_keys(fed) == ("penguin_id",)
    (tmp_path / "labels.csv").write_text("penguin_id,species\n1,Adelie\n150,Gentoo\n")
    labels = read_labels(str(tmp_path / "labels.csv"), target="species", keys=label_keys(fed))
    window = pd.DataFrame({"penguin_id": [150, 1, 7], "island": ["Biscoe", "Torgersen", "Dream"]})
    truth = attach_labels(window, labels, target="species")
    assert truth.tolist()[:2] == ["Gentoo", "Adelie"]
    assert pd.isna(truth.iloc[2])
