"""The issue's "done when": a packaged model under a real ``bentoml serve`` logs the traffic it answers,
and ``conveyor monitor --logs`` on those logs says ``ok`` for same-distribution traffic, then ``alert``
naming the shifted column once one numeric feature moves by a standard deviation."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, run, tool_env
from helpers_monitor import LOG_PATH_OPTION, Population
from helpers_process import free_port, running

from conveyor import io
from conveyor.contract import Contract
from conveyor.serving.prediction_log import MONITOR_NAME

pytestmark = pytest.mark.slow

WINDOW = 500
SHIFTED = "flipper_length_mm"
FLUSH_TIMEOUT_S = 30.0


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


def test_served_traffic_is_logged_and_a_shift_is_named(
    reproduced_repo: Path, tmp_path: Path, contract: Contract
) -> None:
    population = Population(io.read_source(str(ROOT / "data" / "penguins.csv")), contract)
    model_tag = io.read_json(reproduced_repo / "reports/package.json")["model_tag"]
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
        lines = logged_lines(logs, len(same) + len(shifted))
    assert len(same) > 0.9 * WINDOW
    assert len(shifted) > 0.9 * WINDOW
    assert len(lines) == len(same) + len(shifted)
    first = json.loads(lines[0])
    assert first["model_tag"] == model_tag
    assert first["endpoint"] == "/predict"

    calm = verdict(reproduced_repo, window(tmp_path / "same", lines, same), tmp_path / "out-same")
    assert calm["status"] == "ok", calm
    assert calm["rows"] == len(same)
    moved = verdict(reproduced_repo, window(tmp_path / "shifted", lines, shifted), tmp_path / "out-shifted")
    assert moved["status"] == "alert", moved
    checks = {check["name"]: check for check in moved["checks"]}  # type: ignore[attr-defined]
    assert checks["data_drift"]["columns"] == [SHIFTED]
    shutil.rmtree(logs)
