"""`conveyor alert`: one model-monitor issue follows the verdicts, against the `gh` stand-in."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conveyor.artifacts import CheckResult, MonitorReport, MonitorStatus
from conveyor.cli import main
from conveyor.monitor.render import REPORT_JSON, SUMMARY, summary_markdown
from conveyor.ops import alerts

STAND_INS = Path(__file__).parent.parent / "workflows" / "stand-ins"
REPOSITORY = "acme/conveyor"


@pytest.fixture
def github(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The gh stand-in first on PATH; returns its issues file."""
    monkeypatch.setenv("PATH", f"{STAND_INS / 'gh'}:{os.environ['PATH']}")
    monkeypatch.setenv("STAND_IN_LOG", str(tmp_path / "gh.jsonl"))
    monkeypatch.setenv("STAND_IN_GH_STATE", str(tmp_path / "issues.json"))
    monkeypatch.setenv("GITHUB_REPOSITORY", REPOSITORY)
    for name in ("GITHUB_SERVER_URL", "GITHUB_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "issues.json"


def report_folder(folder: Path, status: MonitorStatus) -> Path:
    """A monitor report folder as `conveyor monitor` writes it, with one check of that status."""
    check = CheckResult(name="data_drift", status=status, value=0.5, threshold=0.0, bound="max", message="x")
    report = MonitorReport(
        status=status,
        model_tag="m:1",
        source="s3://logs",
        rows=500,
        reference_rows=258,
        labelled_rows=0,
        checks=[check],
        drift=[],
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / REPORT_JSON).write_text(report.model_dump_json())
    (folder / SUMMARY).write_text(summary_markdown(report))
    return folder


def issues(state: Path) -> list[dict[str, object]]:
    return list(json.loads(state.read_text())["issues"])


def test_one_issue_is_opened_updated_kept_on_no_evidence_then_closed(
    github: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def sync(status: MonitorStatus) -> str:
        assert main(["alert", "sync", "--report", str(report_folder(tmp_path / status, status))]) == 0
        return capsys.readouterr().out.strip()

    assert sync("ok") == "alert sync: ok: no open issue, nothing to do"
    assert sync("alert") == f"alert sync: alert: opened https://github.com/{REPOSITORY}/issues/1"
    assert sync("alert") == "alert sync: alert: updated #1"
    assert sync("insufficient_data") == "alert sync: insufficient_data: commented on #1 (too few records to judge)"
    (issue,) = issues(github)
    assert issue["state"] == "open"
    assert sync("ok") == "alert sync: ok: closed #1"
    assert sync("alert") == f"alert sync: alert: opened https://github.com/{REPOSITORY}/issues/2"
    first, second = issues(github)
    assert (first["state"], second["state"]) == ("closed", "open")
    assert str(first["body"]).startswith("## Model monitor: 🔴 alert")
    assert len(first["comments"]) == 3  # type: ignore[arg-type]


def test_the_issue_links_the_run(github: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.com")
    monkeypatch.setenv("GITHUB_RUN_ID", "99")
    url = alerts.run_url()
    assert url == f"https://github.com/{REPOSITORY}/actions/runs/99"
    folder = report_folder(tmp_path / "r", "alert")
    alerts.sync_issue(REPOSITORY, alerts.read_report(folder), alerts.issue_body(folder, url), run_url=url)
    (issue,) = issues(github)
    assert str(issue["body"]).endswith(f"Run and full report (artifact `monitor-report`): {url}\n")


def test_timings_come_from_the_last_main_run_or_not_at_all(
    github: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "stage-timings.json"
    monkeypatch.delenv("STAND_IN_GH_RUN_ID", raising=False)
    assert alerts.fetch_stage_timings(REPOSITORY, "deploy.yml", out) is None
    monkeypatch.setenv("STAND_IN_GH_RUN_ID", "7")
    monkeypatch.delenv("STAND_IN_TIMINGS", raising=False)
    assert alerts.fetch_stage_timings(REPOSITORY, "deploy.yml", out) is None  # that run uploaded none
    assert not out.exists()
    uploaded = tmp_path / "uploaded.json"
    uploaded.write_text(json.dumps({"train": 3.5, "package": 8.4}))
    monkeypatch.setenv("STAND_IN_TIMINGS", str(uploaded))
    timings = alerts.fetch_stage_timings(REPOSITORY, "deploy.yml", out)
    assert timings is not None
    assert timings.slowest == "package"
    assert timings.total == pytest.approx(11.9)
    assert json.loads(out.read_text()) == {"train": 3.5, "package": 8.4}


def test_a_failing_gh_call_names_the_command(github: Path) -> None:
    with pytest.raises(alerts.GitHubError, match=r"^gh issue frobnicate: gh stand-in: unexpected call"):
        alerts.gh("issue", "frobnicate")
