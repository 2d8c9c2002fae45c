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

import numpy as np
import pandas as pd
from conftest import tool_env
from sklearn.pipeline import Pipeline

from conveyor import monitor
from conveyor.config import Config
from conveyor.contract import Contract, conform
from conveyor.features import FeatureSpec, resolve_features
from conveyor.model import build_pipeline
from conveyor.stages.split import split

JITTER = 0.2
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


# Writes records through BentoML's own monitoring API, one `with bentoml.monitor(...)` per request,
# in a process of its own: BentoML configures Python logging globally for its exporter.
WRITER = """
import json, sys
import bentoml
from bentoml._internal.context import trace_context

log_path, requests = sys.argv[1], json.loads(sys.stdin.read())
for request in requests:
    trace_context.request_id = request["request_id"]
    with bentoml.monitor("conveyor_predict", monitor_class="default", monitor_options={"log_path": log_path}) as mon:
        for name, (role, kind) in request["schema"].items():
            mon.log_batch(request["columns"][name], name, role, kind)
"""


def write_monitor_logs(log_path: Path, requests: list[tuple[int, pd.DataFrame]], contract: Contract) -> None:
    """Log each ``(request id, records)`` as BentoML's service would, into ``log_path``."""
    payload = []
    for request_id, records in requests:
        schema = {
            name: (
                "prediction" if name == monitor.PREDICTION else "feature",
                "numerical" if name in contract.columns and contract.columns[name].is_numeric else "categorical",
            )
            for name in records.columns
        }
        # As the service logs them: plain Python values, None where missing.
        columns = {name: records[name].astype(object).where(records[name].notna(), None).tolist() for name in records}
        payload.append({"request_id": request_id, "schema": schema, "columns": columns})
    subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", WRITER, str(log_path)],
        input=json.dumps(payload),
        env=tool_env() | {"BENTOML_HOME": str(log_path / "bentoml-home")},
        text=True,
        check=True,
        capture_output=True,
        timeout=120,
    )
