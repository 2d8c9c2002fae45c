"""`conveyor monitor` on the model the pipeline packaged: its reference comes from the bundle alone."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import run
from helpers_monitor import write_monitor_logs

from conveyor import io
from conveyor.contract import Contract
from conveyor.monitor.checks import REFERENCE_FILE


def resampled(repo: Path, rows: int, seed: int) -> pd.DataFrame:
    """``rows`` records drawn with replacement from the pipeline's own data (a warehouse export)."""
    data = io.read_source(str(repo / "data" / "penguins.csv"))
    return data.sample(n=rows, replace=True, random_state=seed).reset_index(drop=True)


@pytest.mark.slow
def test_monitor_judges_exports_and_logs_against_the_packaged_reference(
    reproduced_repo: Path, tmp_path: Path, contract: Contract
) -> None:
    import bentoml

    model_tag = io.read_json(reproduced_repo / "reports/package.json")["model_tag"]
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
    assert (out / "report.html").stat().st_size > 0

    logs = tmp_path / "monitoring"
    records = resampled(reproduced_repo, 60, seed=3).drop(columns=["species", "year"])
    write_monitor_logs(logs, [("0123456789abcdef", records)], contract)
    result = run(reproduced_repo, "conveyor", "monitor", "--logs", logs, "--out", tmp_path / "few", "--fail-on-alert")
    assert "monitor: insufficient_data (60 records; alerts: none)" in result.stdout


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
