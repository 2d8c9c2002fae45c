"""Monitor tests: a fitted penguins model, windows drawn from one known distribution, real BentoML logs.

The distribution is the penguins table smoothed: rows resampled with replacement, each measurement
moved by Gaussian noise of a fifth of its standard deviation (integer columns rounded back). The
reference and every window are fresh draws from it, so "no drift" is true by construction.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from conveyor.config import Config
from conveyor.contract import Contract, conform
from conveyor.model.features import FeatureSpec, resolve_features
from conveyor.model.pipeline import build_pipeline
from conveyor.monitor.drift import PREDICTION
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
    model_tag="conveyor-model:test",
)
settings = PredictionLogConfig(log_sample_rate=1.0, log_queue_records=10**6, log_max_cpu_share=1.0)
log = PredictionLog(exporter, settings, records=register(CollectorRegistry())).start()
for request in payload["requests"]:
    log.submit(LoggedRequest(request["request_id"], "/predict", request["records"], request["predictions"]))
log.close(timeout=60)
assert log.failures == 0 and log.done_records == log.queued_records
"""


def write_monitor_logs(log_path: Path, requests: list[tuple[str, pd.DataFrame]], contract: Contract) -> None:
    """Log each ``(request id, records)`` (inputs and a ``prediction`` column) as the service would."""
    columns = [name for name in requests[0][1].columns if name != PREDICTION]
    payload: dict[str, Any] = {
        "numeric": [name for name in columns if contract.columns[name].is_numeric],
        "categorical": [name for name in columns if not contract.columns[name].is_numeric],
        "requests": [],
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
