"""Windows read from real `bentoml.monitor` output (its default JSON-lines exporter), locally and on S3."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conveyor import io
from conveyor.config import CsvFormat
from conveyor.contract import Contract
from conveyor.errors import DataError, MonitorError
from conveyor.monitor.drift import PREDICTION
from conveyor.monitor.windows import RECORD, REQUEST_ID, attach_labels, read_labels, read_logs
from tests.conftest import ROOT, tool_env
from tests.monitor.conftest import LOGGED_MODEL, Population, exported_lines, write_monitor_logs


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
    window = read_logs(str(tmp_path / "monitoring"), max_rows=100).frame
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
    window = read_logs(str(tmp_path / "monitoring"), max_rows=100).frame
    labels = tmp_path / "labels.csv"
    # The second record of request 1001 is labelled, request 1002 is not; 0x3e9 must stay text.
    labels.write_text("request_id,record,species\n00000000000003e9,1,Gentoo\n00000000000003e9,0,Adelie\n")
    truth = attach_labels(window, read_labels(str(labels), target="species"), target="species")
    assert truth.tolist()[:2] == ["Adelie", "Gentoo"]
    assert truth.isna().tolist() == [False, False, True]


def test_a_folder_without_monitor_logs_is_named(tmp_path: Path) -> None:
    with pytest.raises(MonitorError, match=r"no BentoML monitor logs \(expected \*\*/data/data\.\*\.log\* under it\)"):
        read_logs(str(tmp_path), max_rows=100)


def test_a_label_file_without_request_ids_is_named(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("id,species\n1,Adelie\n")
    with pytest.raises(MonitorError, match=r"labels.csv: the labels table needs species and request_id to join on"):
        read_labels(str(labels), target="species")


@pytest.mark.slow
def test_logs_are_read_from_s3(tmp_path: Path, population: Population, contract: Contract, s3_bucket: str) -> None:
    import fsspec

    write_monitor_logs(tmp_path / "monitoring", served(population, [4, 2], seed=3), contract)
    s3 = fsspec.filesystem("s3", skip_instance_cache=True)
    s3.put(str(tmp_path / "monitoring"), f"{s3_bucket}/prod/2026-11-26", recursive=True)
    local = read_logs(str(tmp_path / "monitoring"), max_rows=100).frame
    remote = read_logs(f"s3://{s3_bucket}/prod/2026-11-26", max_rows=100).frame
    pd.testing.assert_frame_equal(remote, local)


def test_labels_are_read_as_data_csv_says(tmp_path: Path) -> None:
    # The labels come from the same tools as the training table: `;`-separated here, ids kept as text.
    labels = tmp_path / "labels.csv"
    labels.write_text("customer;churned\n0017;True\n18;False\n")
    table = read_labels(str(labels), target="churned", keys=["customer"], csv_format=CsvFormat(delimiter=";"))
    assert table["customer"].tolist() == ["0017", "18"]
    with pytest.raises(DataError, match=r"set data\.csv\.delimiter: \";\""):
        read_labels(str(labels), target="churned", keys=["customer"])


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


def _logs(folder: Path, *extra: tuple[str, Callable[[Path], object]]) -> Path:
    """A log folder with 50 good records in ``data.0.log`` and each ``(name, make)`` beside it."""
    data = folder / "monitoring" / "conveyor_predictions" / "data"
    data.mkdir(parents=True)
    (data / "data.0.log").write_text(exported_lines(50))
    for name, make in extra:
        make(data / name)
    return folder / "monitoring"


def _write(text: str | bytes) -> Callable[[Path], object]:
    return lambda path: path.write_bytes(text.encode() if isinstance(text, str) else text)


def _large(path: Path) -> None:
    # 300,000 records, 113 MB: one line formatted per record (json.dumps for each took 20 s here).
    line = exported_lines(1).replace("{", "{{").replace("}", "}}")
    line = line.replace('"0000000000000000"', '"{request:016x}"').replace("0" * 32, "{record:032x}")
    with path.open("w") as log:
        for start in range(50, 300_050, 10_000):
            log.write("".join(line.format(request=n // 2, record=n) for n in range(start, start + 10_000)))


# (case, files beside data.0.log, max_rows, the one line the read ends with)
HOSTILE: list[tuple[str, list[tuple[str, Callable[[Path], object]]], int, str]] = [
    (
        "binary",
        [("data.1.log", _write(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64))],
        1000,
        r"error: .*/data\.1\.log: line 1 is not UTF-8 text; not a BentoML monitor log",
    ),
    (
        "FIFO",
        [("data.1.log", os.mkfifo)],
        1000,
        r"error: .*/data\.1\.log: not a regular file \(a FIFO, device or folder\)",
    ),
    (
        "symlink to /dev/zero",
        [("data.1.log", lambda path: path.symlink_to("/dev/zero"))],
        1000,
        r"error: .*/data\.1\.log: not a regular file",
    ),
    (
        "a file of zeros with no newline",
        [("data.1.log", _write(bytes(3 << 20)))],
        1000,
        r"error: .*/data\.1\.log: line 1 is longer than 1048576 bytes",
    ),
    (
        "torn last line",
        [("data.1.log", _write(exported_lines(10, start=50) + '{"timestamp": "2026-12-01T10:0'))],
        1000,
        r"window: 60 of 60 records; 1 torn; 0 of another model",
    ),
    (
        "another model_tag",
        [("data.0.log.2026-11-30", _write(exported_lines(20, model_tag="conveyor-model:older", start=50)))],
        1000,
        r"window: 50 of 50 records; 0 torn; 20 of another model",
    ),
    ("a large log", [("data.1.log", _large)], 50_000, r"window: 50000 of 300050 records; 0 torn; 0 of another model"),
]
# Reads the logs under argv[1] as the monitor does, in at most MEMORY_CAP of address space.
READER = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[3]), int(sys.argv[3])))
from conveyor.errors import ConveyorError
from conveyor.monitor.windows import read_logs
try:
    window = read_logs(sys.argv[1], model_tag="conveyor-model:test", max_rows=int(sys.argv[2]))
except ConveyorError as error:
    print(f"error: {error}")
else:
    print(f"window: {len(window.frame)} of {window.records} records; {window.torn_lines} torn;"
          f" {window.other_model_records} of another model")
"""
MEMORY_CAP = 1 << 30


@pytest.mark.parametrize("hostile", HOSTILE, ids=[case for case, *_ in HOSTILE])
def test_any_log_input_ends_in_one_line_within_bounded_memory_and_time(
    tmp_path: Path, hostile: tuple[str, list[tuple[str, Callable[[Path], object]]], int, str]
) -> None:
    _, extra, max_rows, expected = hostile
    logs = _logs(tmp_path, *extra)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", READER, str(logs), str(max_rows), str(MEMORY_CAP)],
        env=tool_env() | {"OPENBLAS_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stderr[-2000:]
    assert len(result.stdout.splitlines()) == 1
    assert re.match(expected, result.stdout), result.stdout
    assert time.monotonic() - started < 120


def test_a_sample_keeps_the_records_of_a_request_numbered_as_logged(tmp_path: Path) -> None:
    logs = _logs(tmp_path, ("data.1.log", _write(exported_lines(950, start=50))))
    window = read_logs(str(logs), model_tag=LOGGED_MODEL, max_rows=300)
    assert (len(window.frame), window.records) == (300, 1000)
    frame = window.frame
    # Two records to a request: the second of each is record 1 wherever the sample cut (the trace
    # id numbers the records as logged), and the sample keeps their order.
    logged = frame["trace_id"].map(lambda trace: int(trace, 16))
    assert frame[RECORD].tolist() == (logged % 2).tolist()
    assert logged.is_monotonic_increasing
    again = read_logs(str(logs), model_tag=LOGGED_MODEL, max_rows=300).frame
    pd.testing.assert_frame_equal(frame, again)
