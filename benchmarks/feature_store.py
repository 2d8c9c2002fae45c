"""The feature store's costs: Feast's import and server start-up, and the latency an online lookup adds.

``python benchmarks/run.py --only feature_store``. The lookup is timed through
:class:`conveyor.serving.online_features.OnlineFeatures` (one kept-alive connection) against ``feast serve``
on 127.0.0.1 over a materialised copy of the example repository, beside the in-process prediction
of the default model for the same record, the work the lookup is added to.

What a request pays is timed through the service: ``bentoml serve`` of the default model (ONNX),
once as packaged and once as if trained from the store (fed by that ``feast serve``), one kept-alive
client each, request by request in turns: ``POST /predict`` of one record with every feature
against one giving ``penguin_id`` alone. The difference of each pair is the latency the online
lookup adds.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests package, for its Feast helpers
from conveyor import io
from conveyor.config import load_config
from conveyor.model.predict import predict
from conveyor.serving.online_features import FEAST_URL_VARIABLE, OnlineFeatures
from tests.conftest import make_bundle
from tests.feature_store.conftest import feast_python, online_model, served_example
from tests.serving.conftest import serving, stored

ROOT = Path(__file__).resolve().parent.parent
CALLS = 300
IMPORTS = 3


def import_seconds(python: Path, module: str) -> float:
    """Median wall time of ``import module`` in a fresh ``python`` process (bytecode already compiled)."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    runs = [
        float(subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout)
        for _ in range(IMPORTS)
    ]
    return statistics.median(runs)


def summary(times: list[float]) -> dict[str, float]:
    """Median and 99th percentile of ``times``."""
    ordered = sorted(times)
    return {"median": statistics.median(ordered), "p99": ordered[int(0.99 * (len(ordered) - 1))]}


def latencies_ms(action: Callable[[], object], calls: int = CALLS) -> dict[str, float]:
    """Median and 99th percentile of ``action``'s wall time, in milliseconds, after a warm-up call."""
    action()
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return summary(times)


def poster(url: str, record: Mapping[str, object]) -> Callable[[], object]:
    """``POST /predict`` of ``record`` to ``url`` on one kept-alive connection, failing on anything but 200."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    body = json.dumps({"records": [dict(record)]}).encode()

    def post() -> object:
        connection.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        answer = response.read()
        if response.status != 200:
            raise RuntimeError(f"POST /predict answered {response.status}: {answer[:300]!r}")
        return answer

    return post


def service_latencies(feast_url: str, features: Mapping[str, object], workdir: Path) -> dict[str, dict[str, float]]:
    """Per-request latency of the service with the features sent, and with ``penguin_id`` alone."""
    os.environ["BENTOML_HOME"] = str(workdir / "bentoml")
    cfg = load_config(ROOT / "params.yaml")
    bundle = make_bundle(
        workdir / "bundle",
        cfg,
        io.read_contract(ROOT / cfg.data.schema_path),
        io.read_source(str(ROOT / "data" / "penguins.csv")),
    )
    plain, fed = stored(bundle), online_model(bundle, feast_url)
    (workdir / "plain").mkdir()
    (workdir / "fed").mkdir()
    extra = {FEAST_URL_VARIABLE: feast_url}
    with serving(plain, workdir / "plain") as direct, serving(fed, workdir / "fed", open_files=None, **extra) as online:
        calls = {"sent": poster(direct.url, features), "keyed": poster(online.url, {"penguin_id": 1})}
        times: dict[str, list[float]] = {name: [] for name in calls}
        for call in calls.values():
            call()  # warm-up
        for _ in range(CALLS):  # interleaved, so both see the same machine at the same moment
            for name, call in calls.items():
                started = time.perf_counter()
                call()
                times[name].append((time.perf_counter() - started) * 1000)
    merged = {name: summary(values) for name, values in times.items()}
    added = summary([keyed - sent for sent, keyed in zip(times["sent"], times["keyed"], strict=True)])
    return {
        "service, 1 record with its features (ms)": merged["sent"],
        "service, 1 record with penguin_id alone (ms)": merged["keyed"],
        "added by the online lookup, per request (ms; of each pair)": added,
    }


def measure() -> dict[str, object]:
    """Every figure of the section."""
    python = feast_python()
    figures: dict[str, object] = {
        "import feast (s)": import_seconds(python, "feast"),
        "import pandas, same env (s)": import_seconds(python, "pandas"),
    }
    model = io.load_model(ROOT / "models" / "model.skops")
    with tempfile.TemporaryDirectory(prefix="bench-feast-") as tmp:
        started = time.perf_counter()
        with served_example(Path(tmp)) as (url, _):
            figures["apply + materialize + feast serve ready (s)"] = time.perf_counter() - started
            client = OnlineFeatures(url, feature_service="penguin_species")
            try:
                one = client.get_one(penguin_id=1)
                figures["lookup, 1 entity (ms)"] = latencies_ms(lambda: client.get_one(penguin_id=1))
                batch = {"penguin_id": list(range(1, 101))}
                figures["lookup, 100 entities (ms)"] = latencies_ms(lambda: client.get(batch), calls=100)
            finally:
                client.close()
            figures.update(service_latencies(url, one, Path(tmp)))
    record = pd.DataFrame([one])
    figures["predict, 1 record in process (ms)"] = latencies_ms(lambda: predict(model, record))
    return figures


def main(results_dir: Path) -> str:
    """The section as Markdown."""
    del results_dir  # nothing but the table
    rows = []
    for name, value in measure().items():
        shown = f"median {value['median']:.2f}, p99 {value['p99']:.2f}" if isinstance(value, dict) else f"{value:.2f}"
        rows.append(f"| {name} | {shown} |")
    return "\n".join(
        ["## Feature store (Feast 0.67, SQLite online store)", "", "| measure | value |", "|---|---|", *rows, ""]
    )


if __name__ == "__main__":
    print(main(ROOT / "benchmarks" / "results"))
