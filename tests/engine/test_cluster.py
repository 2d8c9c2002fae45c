"""The pipeline's Dask stages against a real scheduler and two worker processes on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
import yaml
from distributed import Client

from conveyor import io
from conveyor.artifacts import EvaluationRecord, ValidationReport
from tests.conftest import BIN, ROOT, free_port, run, stop_group, tool_env

STAGES = (
    ("ingest", "--out", "data/raw/data.parquet", "--report", "reports/ingest.json"),
    ("validate", "--data", "data/raw/data.parquet", "--out", "data/validated/data.parquet", "--report", "reports/validation.json"),
    ("split", "--data", "data/validated/data.parquet", "--train", "data/split/train.parquet", "--test", "data/split/test.parquet"),
    ("tune", "--data", "data/split/train.parquet", "--out", "models/tuned_params.json", "--report", "reports/tuning.json", "--plots", "reports/tuning"),
    ("train", "--data", "data/split/train.parquet", "--tuned-params", "models/tuned_params.json", "--model", "models/model.skops", "--metadata", "models/model.json"),
    ("evaluate", "--model", "models/model.skops", "--test", "data/split/test.parquet", "--out", "reports"),
)  # fmt: skip


def _start(command: list[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(
            command, cwd=cwd, env=tool_env(), stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )


@pytest.fixture
def scheduler(tmp_path: Path) -> Iterator[str]:
    """``dask scheduler`` and two ``dask worker`` processes (one thread each), stopped when the test ends."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    # The workers run elsewhere: nothing may rely on their working directory being the stage's.
    elsewhere = tmp_path / "workers"
    elsewhere.mkdir()
    dask = str(BIN / "dask")
    processes = [
        _start(
            [
                dask,
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--dashboard-address",
                f"127.0.0.1:{free_port()}",
            ],
            elsewhere,
            tmp_path / "scheduler.log",
        )
    ]
    try:
        for name in ("one", "two"):
            worker = [
                dask,
                "worker",
                address,
                "--name",
                name,
                "--nthreads",
                "1",
                "--host",
                "127.0.0.1",
                "--no-dashboard",
            ]
            processes.append(_start(worker, elsewhere, tmp_path / f"worker-{name}.log"))
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for process in reversed(processes):
            stop_group(process)


def _executed(dask_worker: Any) -> int:
    return int(dask_worker.state.executed_count)


def project(work: Path, dask: dict[str, Any]) -> Path:
    """A folder with the default data and contract, and params for the Dask engine with ``dask`` settings."""
    (work / "data").mkdir(parents=True)
    for name in ("penguins.csv", "contract.yaml"):
        (work / "data" / name).write_bytes((ROOT / "data" / name).read_bytes())
    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    raw["engine"] = "dask"
    raw["dask"] |= dask
    raw["model"] = {"estimator": "xgboost", "params": {"n_estimators": 30, "max_depth": 3}}
    (work / "params.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    return work


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:The y_prob values do not sum to one:UserWarning")
def test_the_stages_run_on_an_external_scheduler(scheduler: str, tmp_path: Path) -> None:
    work = project(tmp_path / "project", {"address": scheduler})
    started = time.perf_counter()
    for stage, *args in STAGES:
        result = run(work, BIN / "conveyor", stage, *args)
        if stage != "tune":
            assert f"{stage}: dask on the scheduler at {scheduler} (2 worker(s))" in result.stderr
    assert time.perf_counter() - started < 240
    assert (work / "data" / "split" / "test.parquet").is_dir()
    assert io.read_artifact(work / "reports" / "validation.json", ValidationReport).passed
    metrics = io.read_artifact(work / "reports" / "evaluation.json", EvaluationRecord).metrics
    assert metrics["accuracy"] > 0.9
    # The workers cannot import the tests: the probe travels by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with Client(scheduler, timeout="30s") as client:
        executed = client.run(_executed)
    assert len(executed) == 2
    assert all(count > 0 for count in executed.values()), executed


@pytest.mark.slow
def test_a_stage_starts_and_stops_its_own_local_cluster(tmp_path: Path) -> None:
    work = project(tmp_path / "project", {"address": None, "workers": 1, "memory_limit": "1GiB"})
    for stage, *args in STAGES[:3]:
        result = run(work, BIN / "conveyor", stage, *args)
        assert f"{stage}: dask on a LocalCluster of 1 worker(s); dashboard http://127.0.0.1:" in result.stderr
    assert (work / "data" / "split" / "train.parquet").is_dir()
