"""Prediction logging and the prediction metrics, in process: what is logged, under which id, and that
logging never fails nor holds up a request (a blocked or failing exporter, a full queue)."""

from __future__ import annotations

import datetime
import json
import logging
import random
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from conveyor.bundle import Bundle
from conveyor.config import Config
from conveyor.contract import Contract, conform
from conveyor.serving.metrics import refused_field
from conveyor.serving.prediction_log import BentoMonitorExporter, ExportError, LoggedRequest, log_types
from tests.conftest import configured, customers, labelled, make_bundle, regression, tool_env
from tests.serving.conftest import GOOD, Served, customer_rows, packaged_with

OTHER = GOOD | {"island": "Biscoe", "flipper_length_mm": 230, "body_mass_g": 5500, "bill_depth_mm": 14.0}


class Recorder:
    """An exporter that keeps what it is given; optionally waits on ``gate`` first, or raises."""

    def __init__(self, *, gate: threading.Event | None = None, fail: bool = False) -> None:
        self.requests: list[LoggedRequest] = []
        self.gate = gate
        self.fail = fail

    def __call__(self, request: LoggedRequest) -> None:
        if self.gate is not None:
            self.gate.wait(30)
        if self.fail:
            raise OSError("disk full")
        self.requests.append(request)


def sample_value(text: str, name: str) -> float:
    """The value of the sample line starting with ``name`` in a Prometheus exposition (0 if absent)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_the_request_id_header_matches_the_logged_id_and_the_record(bundle: Bundle) -> None:
    recorder = Recorder()
    served = Served(bundle, exporter=recorder)
    first = served.post("/predict", {"records": [GOOD, OTHER]})
    second = served.post("/predict_proba", {"records": [GOOD]})
    served.serving.close()
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert len(set(ids)) == 2
    assert all(len(value) == 16 and int(value, 16) >= 0 for value in ids)
    assert [request.request_id for request in recorder.requests] == ids
    predicted, probabilities = recorder.requests
    assert (predicted.endpoint, list(predicted.outputs)) == ("/predict", first.json())
    assert [dict(record) for record in predicted.records] == [GOOD, OTHER]
    assert (probabilities.endpoint, list(probabilities.outputs)) == ("/predict_proba", second.json())
    metrics = served.request("GET", "/metrics").text
    assert sample_value(metrics, 'conveyor_prediction_log_records_total{outcome="exported"}') == 3


def test_a_failing_exporter_never_fails_a_request(bundle: Bundle, caplog: pytest.LogCaptureFixture) -> None:
    served = Served(bundle, exporter=Recorder(fail=True))
    with caplog.at_level(logging.WARNING, logger="conveyor"):
        statuses = [served.post("/predict", {"records": [GOOD]}).status_code for _ in range(5)]
        served.serving.close()
    assert statuses == [200] * 5
    metrics = served.request("GET", "/metrics").text
    assert sample_value(metrics, 'conveyor_prediction_log_records_total{outcome="failed"}') == 5
    # One line, however many failures, and no traceback.
    [line] = [r for r in caplog.records if "prediction log" in r.getMessage()]
    assert "OSError('disk full')" in line.getMessage()
    assert line.exc_info is None


def test_a_full_queue_drops_and_counts_rather_than_blocks(bundle: Bundle) -> None:
    gate = threading.Event()
    recorder = Recorder(gate=gate)
    served = Served(packaged_with(bundle, "prediction_log", log_queue_records=3), exporter=recorder)
    try:
        # The exporter is stuck on the first request and the queue holds 3 records: the other
        # nine two-record requests do not fit, and are answered at once all the same.
        statuses = [served.post("/predict", {"records": [GOOD, OTHER]}).status_code for _ in range(10)]
        assert not gate.is_set()
        assert statuses == [200] * 10
        log = served.serving.log
        assert log is not None
        assert log.dropped_records == 18
        metrics = served.request("GET", "/metrics").text
        assert sample_value(metrics, 'conveyor_prediction_log_records_total{outcome="dropped"}') == 18
    finally:
        gate.set()
        served.serving.close()
    assert len(recorder.requests) == 1


def test_requests_are_sampled_whole_at_the_bundles_rate(bundle: Bundle) -> None:
    random.seed(7)
    recorder = Recorder()
    served = Served(packaged_with(bundle, "prediction_log", log_sample_rate=0.25), exporter=recorder)
    answers = [served.post("/predict", {"records": [GOOD, OTHER, GOOD]}) for _ in range(400)]
    served.serving.close()
    # Binomial(400, 0.25): mean 100, standard deviation 8.7; these bounds are over 5 of them away.
    assert 55 <= len(recorder.requests) <= 145
    assert all(len(request.records) == 3 for request in recorder.requests)
    logged = {request.request_id for request in recorder.requests}
    assert logged <= {answer.headers["x-request-id"] for answer in answers}


def test_logging_off_in_the_bundle_starts_no_log(bundle: Bundle) -> None:
    recorder = Recorder()
    served = Served(packaged_with(bundle, "prediction_log", log_predictions=False), exporter=recorder)
    response = served.post("/predict", {"records": [GOOD]})
    served.serving.close()
    assert response.status_code == 200
    assert "x-request-id" in response.headers
    assert served.serving.log is None
    assert recorder.requests == []
    assert served.request("GET", "/metadata").json()["prediction_log"] == {
        "log_predictions": False,
        "log_sample_rate": 1.0,
        "log_queue_records": 20_000,
        "log_max_cpu_share": 0.02,
    }


def test_predictions_are_counted_by_class_and_refusals_by_field(bundle: Bundle) -> None:
    served = Served(bundle)
    served.post("/predict", {"records": [GOOD, OTHER, GOOD]})
    served.post("/predict_proba", {"records": [OTHER]})
    refusals = [
        {"records": [GOOD | {"island": "Atlantis"}]},
        {"records": [GOOD | {"made_up": 1}]},
        {"records": []},
        b"not json",
    ]
    for body in refusals:
        assert served.post("/predict", body).status_code == 400
    assert served.post("/predict", {"records": [GOOD]}, headers={"content-type": "text/csv"}).status_code == 415
    assert served.post("/predict_proba", b"[" + b" " * 300_000 + b"]").status_code == 413
    metrics = served.request("GET", "/metrics").text

    def count(name: str, **labels: str) -> float:
        inner = ",".join(f'{key}="{value}"' for key, value in labels.items())
        return sample_value(metrics, f"{name}{{{inner}}}")

    assert count("conveyor_predictions_total", endpoint="/predict", prediction="Adelie") == 2
    assert count("conveyor_predictions_total", endpoint="/predict", prediction="Gentoo") == 1
    assert count("conveyor_predictions_total", endpoint="/predict_proba", prediction="Gentoo") == 1
    for field in ("island", "unknown_field", "records", "body", "content-type"):
        assert count("conveyor_refused_requests_total", endpoint="/predict", field=field) == 1, field
    assert count("conveyor_refused_requests_total", endpoint="/predict_proba", field="body") == 1


@pytest.mark.parametrize(
    ("loc", "field"),
    [
        ([], "body"),
        (["body"], "body"),
        (["header", "content-type"], "content-type"),
        (["records"], "records"),
        (["records", 3], "records"),
        (["records", 3, "island"], "island"),
        (["records", 3, "x" * 500], "unknown_field"),
        (["explain"], "unknown_field"),
    ],
)
def test_a_refused_field_is_a_column_or_one_of_a_fixed_few(loc: list[str | int], field: str) -> None:
    assert refused_field(loc, frozenset({"island", "sex"})) == field


def test_regression_predictions_are_counted_in_the_training_targets_deciles(
    tmp_path: Path, params: Config, contract: Contract, penguins: pd.DataFrame
) -> None:
    cfg = regression(params)
    bundle = make_bundle(tmp_path, cfg, contract, labelled(penguins, cfg))
    edges = bundle.info.prediction_buckets
    assert edges is not None
    assert len(edges) == 9
    assert edges == sorted(edges)
    served = Served(bundle)
    record = {column: (GOOD | {"species": "Adelie"}).get(column) for column in bundle.columns}
    [value] = served.post("/predict", {"records": [record]}).json()
    metrics = served.request("GET", "/metrics").text
    series = [line for line in metrics.splitlines() if line.startswith("conveyor_predictions_total{")]
    assert len(series) == 1
    label = series[0].split('prediction="', 1)[1].split('"', 1)[0]
    assert label == served.serving.counts.bucket(value)
    assert label.startswith(("<=", ">"))


class FakeMonitor:
    """Stands in for a ``bentoml.monitor`` monitor: keeps the columns of each record batch logged."""

    def __init__(self) -> None:
        self.columns: dict[str, tuple[list[Any], str, str]] = {}

    def start_record(self) -> None:
        self.columns = {}

    def log_batch(self, data: list[Any], name: str, role: str, data_type: str) -> None:
        self.columns[name] = (list(data), role, data_type)

    def stop_record(self) -> None:
        pass


def test_ids_dates_and_text_sent_with_a_record_are_logged_beside_its_inputs(customer_bundle: Bundle) -> None:
    recorder = Recorder()
    served = Served(customer_bundle, exporter=recorder)
    rows = customer_rows(2)
    sent = [rows[0], {name: rows[1][name] for name in customer_bundle.columns}]  # the second without its id
    answer = served.post("/predict", {"records": sent})
    served.serving.close()
    (request,) = recorder.requests
    assert [dict(record) for record in request.records] == sent

    exporter = BentoMonitorExporter(
        spec=customer_bundle.spec,
        task="classification",
        classes=customer_bundle.info.classes or [],
        model_tag="conveyor-model:test",
        others=log_types(customer_bundle.contract, customer_bundle.other_columns),
    )
    monitor = FakeMonitor()
    exporter.monitor = monitor  # type: ignore[assignment]
    exporter(request)
    assert set(customer_bundle.other_columns) == {"customer", "signup", "last_seen", "feedback"}
    assert monitor.columns["customer"] == ([rows[0]["customer"], None], "metadata", "categorical")
    assert monitor.columns["signup"] == ([rows[0]["signup"], None], "metadata", "categorical")
    assert monitor.columns["autopay"][1:] == ("feature", "numerical")
    assert monitor.columns["prediction"][0] == answer.json()


def test_a_date_a_derived_feature_reads_is_logged_as_an_input(
    tmp_path: Path, params: Config, customer_bundle: Bundle
) -> None:
    cfg = configured(
        params,
        data={"target": "churned"},
        task="classification",
        features={"drop": [], "derived": [{"kind": "date_parts", "column": "signup"}]},
    )
    raw = pd.DataFrame(customer_rows(400)).assign(churned=customers().head(400)["churned"])
    dated = make_bundle(tmp_path / "bundle", cfg, customer_bundle.contract, conform(raw, customer_bundle.contract))
    assert "signup" in dated.columns
    assert "signup" not in dated.other_columns
    exporter = BentoMonitorExporter(
        spec=dated.spec,
        task="classification",
        classes=dated.info.classes or [],
        model_tag="conveyor-model:test",
        others=log_types(dated.contract, dated.other_columns),
    )
    monitor = FakeMonitor()
    exporter.monitor = monitor  # type: ignore[assignment]
    row = customer_rows(1)[0]
    exporter(LoggedRequest(request_id="r1", endpoint="/predict", records=[row], outputs=["false"]))
    # The monitor reads the model's inputs from the "feature" role: the date must be among them.
    assert monitor.columns["signup"] == ([row["signup"]], "feature", "categorical")


# Writes the same requests through BentoML's own per-record path ("bentoml") or through the
# exporter's chunks ("chunks"), in a process of its own: BentoML configures logging process-wide.
CHUNK_WRITER = """
import json, sys
from bentoml._internal.configuration.containers import BentoMLContainer
from conveyor.model.features import FeatureSpec
from conveyor.serving.prediction_log import BentoMonitorExporter, LoggedRequest

log_path, how = sys.argv[1], sys.argv[2]
BentoMLContainer.config.monitoring.options.log_path.set(log_path)
exporter = BentoMonitorExporter(
    spec=FeatureSpec(numeric=("bill_length_mm", "flipper_length_mm"), categorical=("island",)),
    task="classification",
    classes=["Adelie", "Gentoo"],
    model_tag="conveyor-model:chunks",
    others={"penguin": "categorical", "timestamp": "categorical", "ringed": "numerical"},
)
requests = [LoggedRequest(**request) for request in json.loads(sys.stdin.read())]
if how == "bentoml":
    for request in requests:
        exporter(request)
else:
    exporter.export_batch(requests[:1])
    assert exporter.lines is not None, "BentoML's default monitor was not recognised"
    exporter.export_batch(requests[1:3])
    exporter.export_batch(requests[3:])
"""


def _chunk_requests() -> list[dict[str, Any]]:
    first = {"bill_length_mm": 0.1 + 0.2, "flipper_length_mm": 181, "island": "Île-Dream", "penguin": "p-1"}
    second = {"bill_length_mm": 1e-7, "flipper_length_mm": 10**18, "island": 'say "hi"\n', "timestamp": "2024-05-01"}
    third = {"bill_length_mm": 39.1, "flipper_length_mm": None, "island": None, "ringed": True, "penguin": "p-3"}
    return [
        {"request_id": "a1", "endpoint": "/predict", "records": [first, second], "outputs": ["Adelie", "Gentoo"]},
        {"request_id": "b2", "endpoint": "/predict", "records": [third], "outputs": ["Gentoo"], "answered_at": 1.7e9},
        {
            "request_id": "c3",
            "endpoint": "/predict_proba",
            "records": [second, first],
            "outputs": [{"Adelie": 0.25, "Gentoo": 0.75}, {"Adelie": 1.0, "Gentoo": 0.0}],
            "answered_at": 1.7e9 + 0.5,
        },
        {"request_id": "d4", "endpoint": "/predict", "records": [third], "outputs": ["Adelie"], "answered_at": 1.8e9},
    ]


def _write_chunks(log_path: Path, how: str, requests: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    subprocess.run(
        [sys.executable, "-W", "error", "-c", CHUNK_WRITER, str(log_path), how],
        input=json.dumps(requests),
        env=tool_env() | {"BENTOML_HOME": str(log_path / "bentoml-home")},
        text=True,
        check=True,
        capture_output=True,
        timeout=120,
    )
    monitor = log_path / "conveyor_predictions"
    [data] = list((monitor / "data").iterdir())
    [schema] = list((monitor / "schema").iterdir())
    return [json.loads(line) for line in data.read_text(encoding="ascii").splitlines()], schema.read_text()


def test_chunks_are_written_as_bentomls_own_monitor_writes_each_record(tmp_path: Path) -> None:
    requests = _chunk_requests()
    ours, our_schema = _write_chunks(tmp_path / "chunks", "chunks", requests)
    theirs, their_schema = _write_chunks(tmp_path / "bentoml", "bentoml", requests)
    assert our_schema == their_schema
    assert len(ours) == len(theirs) == 6
    # The same keys in the same order and the same values, all but when each was written...
    assert [list(record) for record in ours] == [list(record) for record in theirs]
    assert "timestamp_" in ours[0]
    assert [{**r, "timestamp": None} for r in ours] == [{**r, "timestamp": None} for r in theirs]
    assert [record["prediction"] for record in ours] == ["Adelie", "Gentoo", "Gentoo", "Gentoo", "Adelie", "Adelie"]
    assert ours[3]["probabilities"] == [0.25, 0.75]
    # ... which, past the first request (BentoML's own), is when each request was answered.
    stamps = [datetime.datetime.fromtimestamp(1.7e9 + offset).isoformat() for offset in (0, 0.5, 0.5, 1e8)]
    assert [record["timestamp"] for record in ours[2:]] == stamps


class HalfWriter:
    """A chunk exporter whose every chunk fails after its first request went out."""

    def __init__(self) -> None:
        self.chunks: list[list[str]] = []

    def __call__(self, request: LoggedRequest) -> None:
        raise AssertionError("a chunk exporter is never called one request at a time")

    def export_batch(self, requests: Sequence[LoggedRequest]) -> None:
        self.chunks.append([request.request_id for request in requests])
        raise ExportError(len(requests[0].records)) from OSError("disk full")


def test_a_chunk_that_fails_halfway_counts_what_went_out_and_what_failed(
    bundle: Bundle, caplog: pytest.LogCaptureFixture
) -> None:
    writer = HalfWriter()
    served = Served(bundle, exporter=writer)
    with caplog.at_level(logging.WARNING, logger="conveyor"):
        for _ in range(4):
            assert served.post("/predict", {"records": [GOOD, OTHER]}).status_code == 200
        served.serving.close()
    metrics = served.request("GET", "/metrics").text
    exported = sample_value(metrics, 'conveyor_prediction_log_records_total{outcome="exported"}')
    failed = sample_value(metrics, 'conveyor_prediction_log_records_total{outcome="failed"}')
    assert sum(len(chunk) for chunk in writer.chunks) == 4
    assert exported == 2 * len(writer.chunks)
    assert exported + failed == 8
    [line] = [r for r in caplog.records if "prediction log" in r.getMessage()]
    assert "OSError('disk full')" in line.getMessage()
