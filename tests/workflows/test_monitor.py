"""The model-monitor workflow, run for real by `act` on this host, offline, three times in a row.

The workflow file is the one in `.github/workflows/`, unchanged; remote actions are the stand-ins
of `test_act.py` and `gh` is a stand-in that keeps the repository's issues in a JSON file
(stand-ins/gh/gh). Logs are written by BentoML's own `bentoml.monitor`. First a shifted window
(with `monitor.retrain_on_alert` on): one issue opened, the retrain workflow dispatched. Then
still shifted, and the last main pipeline over its time budget: the same issue updated, naming the
slowest stage. Then a window from the training distribution: the issue closed with a comment.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conveyor import io
from conveyor.contract import Contract
from tests.conftest import BIN, ROOT, clone_of, commit_all, run
from tests.monitor.conftest import packaged_model, write_monitor_logs
from tests.workflows.test_act import STAND_IN_FOR, STAND_INS, remote_actions, run_act

WORKFLOW = ".github/workflows/monitor.yml"
REPOSITORY = "acme/conveyor"


def act_dispatch(repo: Path, work: Path, logs: Path, timings: Path) -> str:
    """Run the workflow's workflow_dispatch jobs with act; returns act's log."""
    (work / "event.json").write_text(
        json.dumps({"inputs": {"logs_url": str(logs)}, "repository": {"full_name": REPOSITORY}})
    )
    stand_in_env = {
        "STAND_IN_SOURCE": str(repo),
        "STAND_IN_CACHE": str(repo),
        "STAND_IN_VENV": str(BIN.parent),
        "STAND_IN_UV": str(ROOT / ".tools" / "bin" / "uv"),
        "STAND_IN_ARTIFACTS": str(work / "artifacts"),
        "STAND_IN_LOG": str(work / "gh.jsonl"),
        "STAND_IN_GH_STATE": str(work / "issues.json"),
        "STAND_IN_GH_RUN_ID": "4242",
        "STAND_IN_TIMINGS": str(timings),
    }
    # `gh` is on every GitHub runner; here the stand-in is.
    result = run_act(
        repo,
        work,
        event_name="workflow_dispatch",
        workflow=WORKFLOW,
        stand_in_env=stand_in_env,
        path_first=(STAND_INS / "gh",),
    )
    log = result.stdout + result.stderr
    (work / f"act-{len(list(work.glob('act-*.log')))}.log").write_text(log)
    assert result.returncode == 0, log[-4000:]
    return log


def test_every_remote_action_of_the_monitor_has_a_stand_in() -> None:
    used = {uses.split("@")[0] for uses in remote_actions(ROOT / WORKFLOW)}
    used.discard("aws-actions/configure-aws-credentials")  # only with vars.MONITOR_ROLE_ARN set
    assert used <= set(STAND_IN_FOR)


def logged_window(directory: Path, repo: Path, contract: Contract, *, seed: int, shift: str | None = None) -> Path:
    """500 served records (resampled from the pipeline's data) as BentoML's monitor logs them."""
    records = io.read_source(str(repo / "data/penguins.csv")).sample(n=500, replace=True, random_state=seed)
    records = records.drop(columns=["species", "year"]).reset_index(drop=True)
    if shift is not None:
        records[shift] = (records[shift] + records[shift].std()).round()
    write_monitor_logs(
        directory,
        [(f"{seed * 1000 + i:016x}", records.iloc[i * 100 : (i + 1) * 100]) for i in range(5)],
        contract,
        model_tag=packaged_model(repo),
    )
    return directory


@pytest.mark.slow
def test_the_monitor_opens_updates_then_closes_one_issue(
    reproduced_repo: Path, tmp_path: Path, contract: Contract
) -> None:
    repo = clone_of(reproduced_repo, tmp_path / "repo")
    run(repo, "git", "remote", "add", "origin", f"https://github.com/{REPOSITORY}.git")
    params = repo / "params.yaml"
    params.write_text(re.sub(r"(?m)^(  retrain_on_alert:) false", r"\1 true", params.read_text()))
    commit_all(repo, "retrain on alert")
    work = tmp_path / "act"
    work.mkdir()
    shifted = logged_window(tmp_path / "shifted", repo, contract, seed=1, shift="bill_length_mm")
    same = logged_window(tmp_path / "same", repo, contract, seed=2)
    fast, slow = tmp_path / "fast.json", tmp_path / "slow.json"
    fast.write_text(json.dumps({"ingest": 3.0, "train": 4.0, "package": 9.0}))
    slow.write_text(json.dumps({"ingest": 3.0, "train": 2400.0, "package": 9.0}))

    def calls() -> list[list[str]]:
        logged = [c["args"] for c in map(json.loads, (work / "gh.jsonl").read_text().splitlines())]
        return [args[:2] for args in logged if args[:2] != ["auth", "token"]]

    def issues() -> list[dict[str, object]]:
        return list(json.loads((work / "issues.json").read_text())["issues"])

    act_dispatch(repo, work, shifted, fast)
    (opened,) = issues()
    assert (opened["state"], opened["labels"], opened["title"]) == ("open", ["model-monitor"], "Model monitor: alert")
    body = str(opened["body"])
    assert body.startswith("## Model monitor: 🔴 alert")
    assert "**Drifted columns:** `bill_length_mm`" in body
    assert calls() == [
        ["run", "list"],
        ["run", "download"],
        ["issue", "list"],
        ["label", "create"],
        ["issue", "create"],
        ["workflow", "run"],
    ]
    uploaded = work / "artifacts" / "monitor-report"
    assert json.loads((uploaded / "monitor.json").read_text())["status"] == "alert"
    assert (uploaded / "report.html").is_file()

    first = len(calls())
    act_dispatch(repo, work, shifted, slow)
    (updated,) = issues()
    assert updated["state"] == "open"
    assert ["issue", "create"] not in calls()[first:]
    assert "slowest stage train (2400 s)" in str(updated["body"])
    assert updated["comments"] == [updated["body"]]

    act_dispatch(repo, work, same, fast)
    (closed,) = issues()
    assert closed["state"] == "closed"
    comments = list(closed["comments"])  # type: ignore[call-overload]
    assert comments[-1].startswith("Checks pass again: ")
    assert calls().count(["issue", "create"]) == 1
