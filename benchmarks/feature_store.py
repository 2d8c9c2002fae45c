"""The feature store's costs: Feast's import and server start-up, and the latency an online lookup adds.

``python benchmarks/run.py --only feature_store``. The lookup is timed through
:class:`conveyor.online_features.OnlineFeatures` (one kept-alive connection) against ``feast serve``
on 127.0.0.1 over a materialised copy of the example repository, beside the in-process prediction
of the default model for the same record, the work the lookup is added to.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers_feast import feast_python, served_example

from conveyor import io
from conveyor.online_features import OnlineFeatures
from conveyor.predict import predict

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


def latencies_ms(action: Callable[[], object], calls: int = CALLS) -> dict[str, float]:
    """Median and 99th percentile of ``action``'s wall time, in milliseconds, after a warm-up call."""
    action()
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"median": statistics.median(times), "p99": times[int(0.99 * (len(times) - 1))]}


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
