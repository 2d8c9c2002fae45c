"""Monitor tests: a fitted penguins model, windows drawn from one known distribution, real BentoML logs.

The distribution is the penguins table smoothed: rows resampled with replacement, each measurement
moved by Gaussian noise of a fifth of its standard deviation (integer columns rounded back). The
reference and every window are fresh draws from it, so "no drift" is true by construction.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from conveyor.artifacts import MonitorReport
from conveyor.config import Config
from conveyor.contract import Contract, conform
from conveyor.model.features import FeatureSpec, resolve_features
from conveyor.model.pipeline import build_pipeline
from conveyor.monitor.drift import PREDICTION, TEST_KINDS
from conveyor.stages.split import split
from tests.conftest import tool_env

JITTER = 0.2
# The BentoML option that says where the prediction log's files go: the served-traffic test proves
# it under `bentoml serve`, and deploy/'s Deployment sets it (test_deploy.py).
LOG_PATH_OPTION = "services.conveyor.monitoring.options.log_path="
# Categories moved in a mix change: this many percentage points of all records.
MIX_POINTS = 0.30


class Population:
    """Draws of the smoothed penguins distribution, and shifted versions of it."""

    def __init__(self, penguins: pd.DataFrame, contract: Contract) -> None:
        self.rows = conform(penguins, contract)
        self.numeric = [name for name in self.rows.columns if contract.columns[name].is_numeric]
        self.integers = [name for name in self.numeric if contract.columns[name].type == "int"]
        self.sd = self.rows[self.numeric].std()

    def draw(self, n: int, rng: np.random.Generator) -> pd.DataFrame:
        """``n`` records of the population (with the label column)."""
        sample = self.rows.iloc[rng.integers(0, len(self.rows), n)].reset_index(drop=True)
        noise = rng.normal(0.0, JITTER, size=(n, len(self.numeric))) * self.sd.to_numpy()
        sample[self.numeric] = sample[self.numeric] + noise
        sample[self.integers] = sample[self.integers].round()
        return sample

    def shifted(self, n: int, rng: np.random.Generator, column: str) -> pd.DataFrame:
        """A draw with ``column`` moved up by one standard deviation of the population."""
        sample = self.draw(n, rng)
        sample[column] = sample[column] + self.sd[column]
        if column in self.integers:
            sample[column] = sample[column].round()
        return sample

    def remixed(self, n: int, rng: np.random.Generator, column: str, source: str, destination: str) -> pd.DataFrame:
        """A draw where ``MIX_POINTS`` of all records move from category ``source`` to ``destination``."""
        sample = self.draw(n, rng)
        candidates = np.flatnonzero((sample[column] == source).to_numpy())
        moved = rng.choice(candidates, size=round(MIX_POINTS * n), replace=False)
        sample.loc[moved, column] = destination
        return sample


def fitted_model(
    params: Config, contract: Contract, penguins: pd.DataFrame
) -> tuple[Pipeline, FeatureSpec, pd.DataFrame]:
    """The default pipeline fitted on the real training split; returns the model, its spec and the split."""
    spec = resolve_features(params.features, contract, target=params.data.target)
    train, _ = split(conform(penguins, contract), params.split, target=params.data.target, stratify=True)
    model = build_pipeline(spec, params.features, params.model, task=params.task, seed=params.split.seed)
    model.fit(train[list(spec.columns)], train[params.data.target].astype(str))
    return model, spec, train


# Logs requests as the service does (conveyor.serving.prediction_log: the queue, its thread and the
# bentoml.monitor exporter), in a process of its own, since BentoML configures Python logging
# globally for its exporter; warnings are errors there too, as in this suite.
WRITER = """
import json, sys
from bentoml._internal.configuration.containers import BentoMLContainer
from prometheus_client import CollectorRegistry
from conveyor.config import PredictionLogConfig
from conveyor.model.features import FeatureSpec
from conveyor.serving.prediction_log import BentoMonitorExporter, LoggedRequest, PredictionLog, register

log_path, payload = sys.argv[1], json.loads(sys.stdin.read())
BentoMLContainer.config.monitoring.options.log_path.set(log_path)
exporter = BentoMonitorExporter(
    spec=FeatureSpec(numeric=tuple(payload["numeric"]), categorical=tuple(payload["categorical"])),
    task="classification",
    classes=[],
    model_tag=payload["model_tag"],
)
settings = PredictionLogConfig(log_sample_rate=1.0, log_queue_records=10**6, log_max_cpu_share=1.0)
log = PredictionLog(exporter, settings, records=register(CollectorRegistry())).start()
for request in payload["requests"]:
    log.submit(LoggedRequest(request["request_id"], "/predict", request["records"], request["predictions"]))
log.close(timeout=60)
assert log.failures == 0 and log.done_records == log.queued_records
"""


def write_monitor_logs(
    log_path: Path, requests: list[tuple[str, pd.DataFrame]], contract: Contract, *, model_tag: str | None = None
) -> None:
    """Log each ``(request id, records)`` (inputs and a ``prediction`` column) as the service would.

    ``model_tag`` names the model that answered (default :data:`LOGGED_MODEL`): the monitor judges
    only the records of the model it monitors, so a test against a packaged model passes its tag.
    """
    columns = [name for name in requests[0][1].columns if name != PREDICTION]
    payload: dict[str, Any] = {
        "numeric": [name for name in columns if contract.columns[name].is_numeric],
        "categorical": [name for name in columns if not contract.columns[name].is_numeric],
        "requests": [],
        "model_tag": model_tag or LOGGED_MODEL,
    }
    for request_id, frame in requests:
        # As the service hands them over: validated records of plain Python values, None where missing.
        records = frame.astype(object).where(frame.notna(), None).to_dict("records")
        payload["requests"].append(
            {
                "request_id": request_id,
                "records": [{name: record[name] for name in columns} for record in records],
                "predictions": [record.get(PREDICTION) for record in records],
            }
        )
    subprocess.run(
        [sys.executable, "-W", "error", "-c", WRITER, str(log_path)],
        input=json.dumps(payload),
        env=tool_env() | {"BENTOML_HOME": str(log_path / "bentoml-home")},
        text=True,
        check=True,
        capture_output=True,
        timeout=120,
    )


def evidently_widgets(html: str) -> list[dict[str, Any]]:
    """Every widget of the dashboard Evidently embeds in its HTML report (nested groups flattened)."""
    match = re.search(r"var metric_[0-9a-f]+ = ", html)
    assert match, "no Evidently dashboard in report.html"
    dashboard, _ = json.JSONDecoder().raw_decode(html, match.end())
    found: list[dict[str, Any]] = []
    pending = list(dashboard["widgets"])
    while pending:
        widget = pending.pop(0)
        found.append(widget)
        pending[:0] = widget.get("widgets") or []
    return found


def assert_html_agrees(out: Path) -> None:
    """``report.html`` in ``out`` shows what ``monitor.json`` says: Conveyor's verdict and checks at its
    top, and Evidently's own drift verdict, columns, tests, scores and results below it."""
    report = MonitorReport.model_validate(json.loads((out / "monitor.json").read_text(encoding="utf-8")))
    if not report.drift:
        assert report.html_report is None
        assert not (out / "report.html").exists()
        return
    html = (out / "report.html").read_text(encoding="utf-8")
    # Conveyor's section: the verdict, each check's status, each column's result.
    assert f"<h2 data-status='{report.status}'>" in html
    assert re.findall(r"<tr data-check='([^']+)' data-status='([^']+)'>", html) == [
        (c.name, c.status) for c in report.checks
    ]
    assert re.findall(r"<tr data-column='([^']+)' data-drifted='([^']+)'>", html) == [
        (d.column, str(d.drifted).lower()) for d in report.drift
    ]
    widgets = evidently_widgets(html)
    counters = [counter for w in widgets if w["type"] == "counter" for counter in w["params"]["counters"]]
    labels = {counter["label"]: counter["value"] for counter in counters}
    # Evidently's dataset verdict is the data_drift check's, on the same input columns and share rule.
    (data_drift,) = [c for c in report.checks if c.name == "data_drift"]
    # Columns the monitor skips (ids, dates, text: `method: skipped`) are not Evidently's to score.
    inputs = [d for d in report.drift if d.role == "input" and d.method in TEST_KINDS]
    (headline,) = [label for label in labels if label.startswith("Dataset Drift is")]
    share = float(headline.rsplit(" ", 1)[1])
    detected = headline.startswith("Dataset Drift is detected")
    assert detected == (data_drift.status == "alert"), headline
    assert data_drift.threshold is not None
    for drifted in range(len(inputs) + 1):
        fraction = drifted / len(inputs)
        assert (fraction >= share) == (fraction > data_drift.threshold), (headline, data_drift)
    assert labels["Columns"] == str(len(inputs))
    assert labels["Drifted Columns"] == str(len(data_drift.columns))
    (table,) = [w for w in widgets if w["type"] == "big_table"]
    rows = {row["column_name"]: row for row in table["params"]["data"]}
    assert set(rows) == {d.column for d in inputs}
    for d in inputs:
        row = rows[d.column]
        assert row["stattest_name"] == stattest_name(d.method), d
        assert row["data_drift"] == ("Detected" if d.drifted else "Not Detected"), d
        assert d.score == pytest.approx(row["drift_score"], abs=1e-6), d
    # The prediction's drift, a metric of its own, with its test and result.
    for d in (d for d in report.drift if d.role == "prediction"):
        (label,) = [c["label"] for c in counters if c["value"] == f"Drift in column '{d.column}'"]
        assert label.startswith("Data drift detected" if d.drifted else "Data drift not detected"), label
        assert f"Drift detection method: {stattest_name(d.method)}." in label


def stattest_name(method: str) -> str:
    """The name Evidently's HTML shows for the drift test ``method`` (its registered display name)."""
    from conveyor.monitor.drift import _two_sample_chi_square, evidently_quiet, import_evidently

    import_evidently()
    with evidently_quiet():  # as the monitor imports it: pandas 3 warns inside Evidently's legacy modules
        from evidently.legacy.calculations.stattests.registry import _registered_stat_tests

        _two_sample_chi_square()  # registered, as the monitor registers it
    return str(next(iter(_registered_stat_tests[method].values())).display_name)


# The model tag WRITER logs; exported_lines' default.
LOGGED_MODEL = "conveyor-model:test"


def exported_lines(count: int, *, model_tag: str = LOGGED_MODEL, start: int = 0) -> str:
    """``count`` JSON lines as the service's exporter writes them, two records to a request; the trace id numbers them."""
    return "".join(
        json.dumps(
            {
                "timestamp": "2026-12-01T10:00:00.000000",
                "request_id": f"{(start + number) // 2:016x}",
                "trace_id": f"{start + number:032x}",
                "endpoint": "/predict",
                "model_tag": model_tag,
                "bill_length_mm": 39.1 + number % 7,
                "bill_depth_mm": 15.0 + number % 5,
                "flipper_length_mm": 180 + number % 30,
                "body_mass_g": 3500 + 10 * (number % 50),
                "island": ("Torgersen", "Biscoe", "Dream")[number % 3],
                "sex": ("male", "female")[number % 2],
                "prediction": "Adelie",
                "probabilities": [0.9, 0.05, 0.05],
            }
        )
        + "\n"
        for number in range(count)
    )


def packaged_model(repo: Path) -> str:
    """The model tag ``repo``'s package stage wrote (``reports/package.json``): the one the monitor judges."""
    from conveyor.bundle import read_package_report

    return read_package_report(repo / "reports" / "package.json").model_tag
