"""`python -m conveyor --help` lists every command of the public contract."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.cli import main
from tests.conftest import ROOT, write_package_report

PIPELINE_COMMANDS = ("ingest", "validate", "split", "tune", "train", "evaluate", "gate", "schema")


def test_help_lists_the_commands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: conveyor")
    # argparse lists each command on its own line, indented, followed by its help text.
    listed = {line.split()[0] for line in result.stdout.splitlines() if re.match(r"^    \w", line)}
    assert set(PIPELINE_COMMANDS) <= set(listed)


def test_a_command_without_its_paths_is_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", "train"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert "--data" in result.stderr


def test_stages_record_their_wall_time_when_asked(tmp_path: Path) -> None:
    timings = tmp_path / "stage-timings.json"
    env = os.environ | {"CONVEYOR_STAGE_TIMINGS": str(timings)}
    ingest = [sys.executable, "-m", "conveyor", "ingest", "--out", str(tmp_path / "raw.parquet")]
    for report in ("a.json", "b.json"):
        subprocess.run([*ingest, "--report", str(tmp_path / report)], cwd=ROOT, env=env, check=True, timeout=120)
    recorded = json.loads(timings.read_text())
    assert list(recorded) == ["ingest"]
    assert 0 < recorded["ingest"] < 120
    shown = subprocess.run(
        [sys.executable, "-m", "conveyor", "timings", "--file", str(timings)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "| `ingest` |" in shown
    assert "slowest: `ingest`" in shown


def test_without_the_variable_no_time_is_written(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CONVEYOR_STAGE_TIMINGS"}
    command = [sys.executable, "-m", "conveyor", "ingest", "--out", str(tmp_path / "raw.parquet")]
    subprocess.run([*command, "--report", str(tmp_path / "i.json")], cwd=ROOT, env=env, check=True, timeout=120)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i.json", "raw.parquet"]


def test_timings_of_a_job_where_no_stage_ran(tmp_path: Path) -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "conveyor", "timings", "--file", str(tmp_path / "stage-timings.json")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "No stage ran." in shown


def test_packaged_prints_the_tags_the_package_report_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "package.json"
    write_package_report(report, model_tag="conveyor-model:abc", bento_tag="conveyor:def")
    assert main(["packaged", "model-tag", "--report", str(report)]) == 0
    assert main(["packaged", "bento-tag", "--report", str(report)]) == 0
    assert capsys.readouterr().out == "conveyor-model:abc\nconveyor:def\n"
    # This session's store (see the bentoml_home fixture) holds neither.
    assert main(["packaged", "in-store", "--report", str(report)]) == 1
    error = capsys.readouterr().err
    assert error == (
        f"conveyor packaged: error: {report}: model conveyor-model:abc and bento conveyor:def"
        " not in this machine's BentoML store\n"
    )


def test_packaged_names_a_report_that_is_not_there(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["packaged", "bento-tag", "--report", str(tmp_path / "package.json")]) == 1
    assert "package.json" in capsys.readouterr().err
