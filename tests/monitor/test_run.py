"""`conveyor monitor` on the model the pipeline packaged: its reference comes from the bundle alone."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pandas as pd
import pytest

from conveyor import io
from conveyor.bundle import REFERENCE_FILE, Bundle, read_package_report
from conveyor.config import Config
from conveyor.contract import Contract
from conveyor.serving.prediction_log import MONITOR_NAME
from tests.conftest import ROOT, configured, free_port, run, running, tool_env
from tests.monitor.conftest import (
    LOG_PATH_OPTION,
    Population,
    assert_html_agrees,
    exported_lines,
    packaged_model,
    write_monitor_logs,
)


def resampled(repo: Path, rows: int, seed: int) -> pd.DataFrame:
    """``rows`` records drawn with replacement from the pipeline's own data (a warehouse export)."""
    data = io.read_source(str(repo / "data" / "penguins.csv"))
    return data.sample(n=rows, replace=True, random_state=seed).reset_index(drop=True)


@pytest.mark.slow
def test_monitor_judges_exports_and_logs_against_the_packaged_reference(
    reproduced_repo: Path, tmp_path: Path, contract: Contract
) -> None:
    import bentoml

    model_tag = read_package_report(reproduced_repo / "reports/package.json").model_tag
    reference = io.read_table(Path(bentoml.models.get(model_tag).path) / REFERENCE_FILE)
    train = io.read_table(reproduced_repo / "data/split/train.parquet")
    assert len(reference) == len(train)
    assert "year" not in reference.columns  # dropped from the features, so not monitored

    same = tmp_path / "same.csv"
    resampled(reproduced_repo, 500, seed=1).to_csv(same, index=False)
    result = run(
        reproduced_repo, "conveyor", "monitor", "--current", same, "--out", tmp_path / "same", "--fail-on-alert"
    )
    assert "monitor: ok (500 records; alerts: none)" in result.stdout
    verdict = json.loads((tmp_path / "same" / "monitor.json").read_text())
    assert (verdict["status"], verdict["model_tag"], verdict["reference_rows"]) == ("ok", model_tag, len(train))
    assert_html_agrees(tmp_path / "same")

    shifted = resampled(reproduced_repo, 500, seed=2)
    shifted["flipper_length_mm"] = (shifted["flipper_length_mm"] + shifted["flipper_length_mm"].std()).round()
    shifted.to_parquet(tmp_path / "shifted.parquet")
    out = tmp_path / "shifted"
    result = run(
        reproduced_repo,
        "conveyor",
        "monitor",
        "--current",
        tmp_path / "shifted.parquet",
        "--out",
        out,
        "--fail-on-alert",
        check=False,
    )
    assert result.returncode == 1, result.stderr
    verdict = json.loads((out / "monitor.json").read_text())
    assert verdict["status"] == "alert"
    (data_drift,) = [c for c in verdict["checks"] if c["name"] == "data_drift"]
    assert data_drift["columns"] == ["flipper_length_mm"]
    assert (out / "summary.md").read_text().startswith("## Model monitor: 🔴 alert")
    assert_html_agrees(out)

    logs = tmp_path / "monitoring"
    records = resampled(reproduced_repo, 60, seed=3).drop(columns=["species", "year"])
    write_monitor_logs(logs, [("0123456789abcdef", records)], contract, model_tag=packaged_model(reproduced_repo))
    result = run(reproduced_repo, "conveyor", "monitor", "--logs", logs, "--out", tmp_path / "few", "--fail-on-alert")
    assert "monitor: insufficient_data (60 records; alerts: none)" in result.stdout
    assert_html_agrees(tmp_path / "few")


@pytest.mark.slow
def test_a_missing_current_window_names_the_flag(reproduced_repo: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent.csv"
    result = run(reproduced_repo, "conveyor", "monitor", "--current", missing, "--out", tmp_path / "out", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == f"conveyor monitor: error: {missing}: file not found (--current)"


@pytest.mark.slow
def test_an_unknown_model_is_a_one_line_error(reproduced_repo: Path, tmp_path: Path) -> None:
    window = tmp_path / "w.csv"
    resampled(reproduced_repo, 10, seed=0).to_csv(window, index=False)
    result = run(
        reproduced_repo,
        "conveyor",
        "monitor",
        "--model",
        "conveyor-model:nope",
        "--current",
        window,
        "--out",
        tmp_path,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "conveyor monitor: error: model conveyor-model:nope: not in the BentoML store ($BENTOML_HOME); run the pipeline or pass --model"
    )


WINDOW = 500
SHIFTED = "flipper_length_mm"
# The log thread keeps to monitor.log_max_cpu_share (2%) of a core: it rests about 49 s for
# every second it spends exporting, so on a loaded machine 1,000 single-record requests take
# a minute or more to reach the file. The wait ends as soon as they have.
FLUSH_TIMEOUT_S = 150.0


def send(client: httpx.Client, records: pd.DataFrame, columns: list[str]) -> list[str]:
    """POST each record alone to /predict; the ``X-Request-ID`` of each one answered (the contract
    refuses the odd draw outside its ranges, which then is simply not logged)."""
    ids = []
    rows = records[columns].astype(object).where(records[columns].notna(), None).to_dict("records")
    for row in rows:
        response = client.post(
            "/predict", content=json.dumps({"records": [row]}), headers={"content-type": "application/json"}
        )
        if response.status_code == 200:
            ids.append(response.headers["x-request-id"])
        else:
            assert response.status_code == 400, response.text
    return ids


def dropped_records(metrics: str) -> int:
    """``conveyor_prediction_log_records_total{outcome="dropped"}`` from a ``/metrics`` page."""
    found = re.search(r'^conveyor_prediction_log_records_total\{outcome="dropped"\} (\S+)$', metrics, re.MULTILINE)
    return int(float(found.group(1))) if found else 0


def logged_lines(logs: Path, expected: int) -> list[str]:
    """The service's data log lines, once there are ``expected`` of them (the log thread writes them
    shortly after each answer)."""
    deadline = time.monotonic() + FLUSH_TIMEOUT_S
    while True:
        lines = [
            line
            for path in sorted((logs / MONITOR_NAME / "data").glob("data.*.log*"))
            for line in path.read_text().splitlines()
            if line.strip()
        ]
        if len(lines) >= expected or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def window(directory: Path, lines: list[str], ids: list[str]) -> Path:
    """A log folder holding the lines of the requests ``ids``, laid out as BentoML writes it."""
    wanted = set(ids)
    kept = [line for line in lines if json.loads(line)["request_id"] in wanted]
    assert len(kept) == len(ids)
    data = directory / MONITOR_NAME / "data"
    data.mkdir(parents=True)
    (data / "data.1.log").write_text("\n".join(kept) + "\n")
    return directory


def verdict(repo: Path, logs: Path, out: Path) -> dict[str, object]:
    run(repo, "conveyor", "monitor", "--logs", logs, "--out", out)
    return dict(json.loads((out / "monitor.json").read_text()))


@pytest.mark.slow
def test_served_traffic_is_logged_and_a_shift_is_named(
    reproduced_repo: Path, tmp_path: Path, contract: Contract
) -> None:
    population = Population(io.read_source(str(ROOT / "data" / "penguins.csv")), contract)
    model_tag = read_package_report(reproduced_repo / "reports/package.json").model_tag
    logs = tmp_path / "served-logs"
    port = free_port()
    # BentoML's own configuration says where its monitor writes (here: JSON lines under logs/).
    env = tool_env() | {"BENTOML_CONFIG_OPTIONS": f"{LOG_PATH_OPTION}{logs}"}
    command = ["bentoml", "serve", "--host", "127.0.0.1", "--port", str(port)]
    rng = np.random.default_rng(11)
    with (
        running(command, cwd=reproduced_repo, env=env, port=port, log=tmp_path / "serve.log"),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
    ):
        columns = client.get("/metadata").json()["features"]
        same = send(client, population.draw(WINDOW, rng), columns)
        shifted = send(client, population.shifted(WINDOW, rng, SHIFTED), columns)
        # On a loaded machine the log may drop a few records rather than slow the answers; each
        # is counted (records are dropped when handed over, so the count is final by now).
        dropped = dropped_records(client.get("/metrics").text)
        lines = logged_lines(logs, len(same) + len(shifted) - dropped)
    assert len(same) > 0.9 * WINDOW
    assert len(shifted) > 0.9 * WINDOW
    assert dropped < 0.1 * (len(same) + len(shifted)), f"{dropped} records dropped"
    assert len(lines) == len(same) + len(shifted) - dropped
    logged = {json.loads(line)["request_id"] for line in lines}
    same, shifted = [i for i in same if i in logged], [i for i in shifted if i in logged]
    first = json.loads(lines[0])
    assert first["model_tag"] == model_tag
    assert first["endpoint"] == "/predict"

    calm = verdict(reproduced_repo, window(tmp_path / "same", lines, same), tmp_path / "out-same")
    assert calm["status"] == "ok", calm
    assert calm["rows"] == len(same)
    moved = verdict(reproduced_repo, window(tmp_path / "shifted", lines, shifted), tmp_path / "out-shifted")
    assert moved["status"] == "alert", moved
    assert_html_agrees(tmp_path / "out-same")
    assert_html_agrees(tmp_path / "out-shifted")
    checks = {check["name"]: check for check in moved["checks"]}  # type: ignore[attr-defined]
    assert checks["data_drift"]["columns"] == [SHIFTED]
    shutil.rmtree(logs)


def test_the_verdict_reports_what_the_logs_held_beyond_the_window(
    tmp_path: Path, params: Config, bundle: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bentoml.models

    from conveyor.monitor.run import run as monitor

    model_tag = bundle.info.model_tag
    # The session's bundle, as if the store held it (bentoml.models itself: bentoml's attribute is a lazy proxy).
    monkeypatch.setattr(bentoml.models, "get", lambda tag: SimpleNamespace(path=str(bundle.directory)))
    data = tmp_path / "monitoring" / MONITOR_NAME / "data"
    data.mkdir(parents=True)
    # A crash left the last line of data.0.log half-written; data.1.log is partly another model's.
    (data / "data.0.log").write_text(exported_lines(120, model_tag=model_tag) + '{"timestamp": "2026-12-')
    (data / "data.1.log").write_text(exported_lines(30, model_tag="conveyor-model:older", start=120))
    out = tmp_path / "out"
    report = monitor(
        configured(params, monitor={"max_window_rows": 100}),
        model_tag=model_tag,
        out=out,
        logs=str(tmp_path / "monitoring"),
    )
    written = json.loads((out / "monitor.json").read_text())
    counts = ("rows", "logged_records", "torn_lines", "other_model_records")
    assert [written[name] for name in counts] == [100, 120, 1, 30]
    assert report.rows == 100
    assert (
        "**Not judged:** a sample of 100 of this model's 120 logged records (monitor.max_window_rows);"
        " 30 records of another model_tag left out; 1 half-written last line(s) skipped."
    ) in (out / "summary.md").read_text()
