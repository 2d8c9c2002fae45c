"""Windows read from real `bentoml.monitor` output (its default JSON-lines exporter), locally and on S3."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conveyor import io
from conveyor.contract import Contract
from conveyor.errors import MonitorError
from conveyor.monitor.drift import PREDICTION
from conveyor.monitor.windows import RECORD, REQUEST_ID, attach_labels, read_labels, read_logs
from tests.conftest import ROOT, free_port
from tests.monitor.conftest import Population, write_monitor_logs


@pytest.fixture(scope="module")
def population(contract: Contract) -> Population:
    return Population(io.read_source(str(ROOT / "data" / "penguins.csv")), contract)


def served(population: Population, sizes: list[int], seed: int) -> list[tuple[str, pd.DataFrame]]:
    """Requests of the given sizes, with ids ``00000000000003e9``, ``…3ea``, …; the label as the prediction."""
    rng = np.random.default_rng(seed)
    requests = []
    for number, size in enumerate(sizes):
        records = population.draw(size, rng).drop(columns=["year"])
        requests.append((f"{1001 + number:016x}", records.rename(columns={"species": PREDICTION})))
    return requests


def test_records_ids_and_positions_are_read_from_the_services_logs(
    tmp_path: Path, population: Population, contract: Contract
) -> None:
    requests = served(population, [3, 1, 2], seed=1)
    write_monitor_logs(tmp_path / "monitoring", requests, contract)
    data = tmp_path / "monitoring" / "conveyor_predictions" / "data"
    assert sorted(p.name for p in data.iterdir()) == ["data.0.log"]
    window = read_logs(str(tmp_path / "monitoring"))
    assert len(window) == 6
    # As clients saw it in X-Request-ID, never read as a number.
    assert window[REQUEST_ID].tolist() == ["00000000000003e9"] * 3 + ["00000000000003ea"] + ["00000000000003eb"] * 2
    assert window[RECORD].tolist() == [0, 1, 2, 0, 0, 1]
    expected = pd.concat([records for _, records in requests], ignore_index=True)
    assert np.allclose(window["bill_length_mm"].astype(float), expected["bill_length_mm"], equal_nan=True)
    assert window["island"].tolist() == expected["island"].tolist()
    assert window[PREDICTION].tolist() == expected[PREDICTION].tolist()
    assert set(window["model_tag"]) == {"conveyor-model:test"}
    assert set(window["endpoint"]) == {"/predict"}
    assert {"timestamp", "trace_id", "probabilities"} <= set(window.columns)


def test_labels_join_on_the_request_id_and_record(tmp_path: Path, population: Population, contract: Contract) -> None:
    requests = served(population, [2, 1], seed=2)
    write_monitor_logs(tmp_path / "monitoring", requests, contract)
    window = read_logs(str(tmp_path / "monitoring"))
    labels = tmp_path / "labels.csv"
    # The second record of request 1001 is labelled, request 1002 is not; 0x3e9 must stay text.
    labels.write_text("request_id,record,species\n00000000000003e9,1,Gentoo\n00000000000003e9,0,Adelie\n")
    truth = attach_labels(window, read_labels(str(labels), target="species"), target="species")
    assert truth.tolist()[:2] == ["Adelie", "Gentoo"]
    assert truth.isna().tolist() == [False, False, True]


def test_a_folder_without_monitor_logs_is_named(tmp_path: Path) -> None:
    with pytest.raises(MonitorError, match=r"no BentoML monitor logs \(expected \*\*/data/data\.\*\.log\* under it\)"):
        read_logs(str(tmp_path))


def test_a_label_file_without_request_ids_is_named(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("id,species\n1,Adelie\n")
    with pytest.raises(MonitorError, match=r"labels.csv: the labels table needs species and request_id to join on"):
        read_labels(str(labels), target="species")


@pytest.fixture
def s3_bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's S3 server (threaded, in this process) on 127.0.0.1 with one bucket; yields its name."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }.items():
        monkeypatch.setenv(key, value)
    try:
        import fsspec

        fsspec.filesystem("s3", skip_instance_cache=True).mkdir("conveyor-logs")
        yield "conveyor-logs"
    finally:
        server.stop()


@pytest.mark.slow
def test_logs_are_read_from_s3(tmp_path: Path, population: Population, contract: Contract, s3_bucket: str) -> None:
    import fsspec

    write_monitor_logs(tmp_path / "monitoring", served(population, [4, 2], seed=3), contract)
    s3 = fsspec.filesystem("s3", skip_instance_cache=True)
    s3.put(str(tmp_path / "monitoring"), f"{s3_bucket}/prod/2026-11-26", recursive=True)
    local = read_logs(str(tmp_path / "monitoring"))
    remote = read_logs(f"s3://{s3_bucket}/prod/2026-11-26")
    pd.testing.assert_frame_equal(remote, local)


def test_labels_join_on_an_id_column_or_say_what_they_lack(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("customer,churned\n0017,True\n18,False\n")
    table = read_labels(str(labels), target="churned", keys=["customer"])
    window = pd.DataFrame({"customer": [18, "0017", 19]})
    assert attach_labels(window, table, target="churned").tolist()[:2] == [False, True]
    assert pd.isna(attach_labels(window, table, target="churned").iloc[2])
    with pytest.raises(MonitorError, match=r"needs churned and request_id or an id column of the contract \(account\)"):
        read_labels(str(labels), target="churned", keys=["account"])
    labels.write_text("customer,churned\n17,True\n17,False\n")
    with pytest.raises(MonitorError, match="customer '17' is labelled twice"):
        read_labels(str(labels), target="churned", keys=["customer"])
    with pytest.raises(MonitorError, match="labels name records by customer, but this window has no customer column"):
        attach_labels(pd.DataFrame({"x": [1]}), table, target="churned")
