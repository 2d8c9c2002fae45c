"""The GitHub side of monitoring: one issue labelled ``model-monitor``, the last pipeline's stage
timings, and the retrain dispatch. Everything goes through the ``gh`` CLI (on every GitHub
runner, authenticated by ``GH_TOKEN``), so the same code runs in the workflow and by hand.

The issue follows the verdicts: opened on the first ``alert``, updated (body and a comment) while
alerts last, closed with a comment on the first ``ok``. ``insufficient_data`` never closes it: no
evidence is not good news; it only adds a comment to an open issue.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from conveyor import io
from conveyor.artifacts import MonitorReport, StageTimings
from conveyor.errors import ConveyorError
from conveyor.monitor.render import REPORT_JSON, SUMMARY

__all__ = ["GitHubError", "dispatch", "fetch_stage_timings", "gh", "issue_body", "read_report", "run_url", "sync_issue"]

LABEL = "model-monitor"
TITLE = "Model monitor: alert"
TIMINGS_ARTIFACT = "stage-timings"
TIMINGS_FILE = "stage-timings.json"


class GitHubError(ConveyorError):
    """A ``gh`` call that failed (no token, no such repository…); the message has the command and
    what gh said. A ValueError so that the CLI reports it in one line, as other expected failures."""


def gh(*args: str) -> str:
    """Run ``gh`` with ``args``; its standard output, stripped."""
    try:
        result = subprocess.run(["gh", *args], capture_output=True, text=True, check=False, timeout=120)
    except FileNotFoundError:
        raise GitHubError("gh (the GitHub CLI) is not installed; it is on every GitHub-hosted runner") from None
    if result.returncode != 0:
        raise GitHubError(f"gh {' '.join(args[:2])}: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout.strip()


def fetch_stage_timings(repository: str, workflow: str, out: Path) -> StageTimings | None:
    """The stage timings of ``workflow``'s last successful run on ``main``, saved to ``out``.

    None (and nothing written) when there is no such run or it uploaded no timings: the pipeline
    time is then not checked, which the caller says.
    """
    run_id = gh(
        "run", "list", "--repo", repository, "--workflow", workflow, "--branch", "main", "--status", "success",
        "--limit", "1", "--json", "databaseId", "--jq", ".[0].databaseId // empty",
    )  # fmt: skip
    if not run_id:
        return None
    with tempfile.TemporaryDirectory() as folder:
        try:
            gh("run", "download", run_id, "--repo", repository, "--name", TIMINGS_ARTIFACT, "--dir", folder)
        except GitHubError:
            return None
        timings = StageTimings.model_validate(io.read_json(Path(folder) / TIMINGS_FILE))
    io.write_json(timings.root, out)
    return timings


def issue_body(report_dir: Path, run_url: str | None) -> str:
    """The summary the monitor wrote, and where the run and its full report are."""
    body = (report_dir / SUMMARY).read_text(encoding="utf-8")
    if run_url:
        body += f"\nRun and full report (artifact `monitor-report`): {run_url}\n"
    return body


def sync_issue(repository: str, report: MonitorReport, body: str, *, run_url: str | None) -> str:
    """Open, update or close the one issue labelled ``model-monitor``; say what was done."""
    found = gh(
        "issue", "list", "--repo", repository, "--label", LABEL, "--state", "open", "--limit", "1",
        "--json", "number", "--jq", ".[0].number // empty",
    )  # fmt: skip
    with tempfile.NamedTemporaryFile("w", suffix=".md", encoding="utf-8", delete=False) as file:
        file.write(body)
    try:
        return _act_on(repository, report, found or None, file.name, run_url)
    finally:
        os.unlink(file.name)


def _act_on(repository: str, report: MonitorReport, number: str | None, body_file: str, run_url: str | None) -> str:
    if report.status == "alert":
        if number is None:
            gh("label", "create", LABEL, "--repo", repository, "--color", "B60205", "--force",
               "--description", "Opened and closed by the model monitor workflow")  # fmt: skip
            url = gh(
                "issue", "create", "--repo", repository, "--label", LABEL, "--title", TITLE, "--body-file", body_file
            )
            return f"opened {url}"
        gh("issue", "edit", number, "--repo", repository, "--body-file", body_file)
        gh("issue", "comment", number, "--repo", repository, "--body-file", body_file)
        return f"updated #{number}"
    if number is None:
        return "no open issue, nothing to do"
    if report.status == "ok":
        gh(
            "issue",
            "close",
            number,
            "--repo",
            repository,
            "--comment",
            f"Checks pass again: {run_url or 'see the monitor run'}",
        )
        return f"closed #{number}"
    gh("issue", "comment", number, "--repo", repository, "--body-file", body_file)
    return f"commented on #{number} (too few records to judge)"


def dispatch(repository: str, workflow: str) -> None:
    """Start ``workflow`` (a ``workflow_dispatch`` workflow) on ``main``."""
    gh("workflow", "run", workflow, "--repo", repository, "--ref", "main")


def read_report(report_dir: Path) -> MonitorReport:
    """``monitor.json`` from a report folder (the workflow's artifact)."""
    return MonitorReport.model_validate(json.loads((report_dir / REPORT_JSON).read_text(encoding="utf-8")))


def run_url() -> str | None:
    """This GitHub Actions run's page, when running in one."""
    parts = [os.environ.get(name) for name in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")]
    if not all(parts):
        return None
    server, repository, run_id = parts
    return f"{server}/{repository}/actions/runs/{run_id}"
