"""The GitHub workflows: lint (zizmor, GitHub's schema), the security rules the README promises,
and the Makefile targets their `run:` steps call that need tools this machine lacks (Docker)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT
from helpers_make import make

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
STAND_INS = Path(__file__).parent / "stand-ins"
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(?:/[\w./-]+)?@[0-9a-f]{40}$")
# Which steps justify each write permission (a substring of the step's `uses:` or `run:`).
WRITE_NEEDS = {
    "pull-requests": ("cml comment", "create-pull-request"),
    "packages": ("make image",),
    "id-token": ("configure-aws-credentials",),
    "contents": ("create-pull-request",),
    "issues": ("make monitor-alert",),
    "actions": ("make monitor-alert",),  # dispatches retrain.yml
}


def load(path: Path) -> dict[Any, Any]:
    document: dict[Any, Any] = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as True.
    document["on"] = document.pop(True)
    return document


def steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def make_targets() -> set[str]:
    return set(re.findall(r"(?m)^([a-zA-Z_-]+):", (ROOT / "Makefile").read_text()))


def test_there_are_the_three_workflows_and_the_fork_commenter() -> None:
    assert {p.name for p in WORKFLOWS} == {
        "checks.yml",
        "model-report.yml",
        "model-report-comment.yml",
        "deploy.yml",
        "monitor.yml",
        "retrain.yml",
    }


def test_zizmor_and_the_workflow_schema_pass() -> None:
    result = make(ROOT, "lint-workflows")
    assert "No findings to report" in result.stdout + result.stderr
    assert "validation done" in result.stdout


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_permissions_start_empty_and_writes_are_justified(path: Path) -> None:
    workflow = load(path)
    assert workflow["permissions"] == {}
    for name, job in workflow["jobs"].items():
        used = " ".join(str(s.get("uses", "")) + " " + str(s.get("run", "")) for s in job["steps"])
        for scope, level in job["permissions"].items():
            if level == "write":
                assert any(need in used for need in WRITE_NEEDS[scope]), f"{name}: {scope}: write is not needed"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actions_are_pinned_with_a_version_comment(path: Path) -> None:
    text = path.read_text()
    for step in steps(load(path)):
        if "uses" not in step:
            continue
        assert PINNED.match(step["uses"]), step["uses"]
        assert re.search(re.escape(step["uses"]) + r" # v\d", text), f"{step['uses']}: no version comment"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_no_credentials_persist_and_no_untrusted_interpolation(path: Path) -> None:
    workflow = load(path)
    assert "pull_request_target" not in workflow["on"]
    for step in steps(workflow):
        if str(step.get("uses", "")).startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False
        assert "${{" not in step.get("run", ""), f"expression in run: {step['run']}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_run_step_is_a_make_target_conveyor_or_cml(path: Path) -> None:
    targets = make_targets()
    for step in steps(load(path)):
        if "run" not in step:
            continue
        command = step["run"].strip()
        assert "\n" not in command, command
        program, *args = command.split()
        assert program in {"make", "conveyor", "cml"}, command
        if program == "make":
            assert args[0] in targets, command


def test_pull_request_runs_are_superseded_and_releases_are_not() -> None:
    for name in ("checks.yml", "model-report.yml"):
        concurrency = load(ROOT / ".github" / "workflows" / name)["concurrency"]
        assert "pull_request.number" in concurrency["group"]
        assert concurrency["cancel-in-progress"] in (True, "${{ github.event_name == 'pull_request' }}")
    assert load(ROOT / ".github" / "workflows" / "deploy.yml")["concurrency"]["cancel-in-progress"] is False


def test_fork_reports_are_posted_without_running_pull_request_code() -> None:
    report = load(ROOT / ".github" / "workflows" / "model-report.yml")
    posting = [s for s in steps(report) if "cml" in s.get("run", "") or "setup-cml" in s.get("uses", "")]
    assert posting
    assert all("SAME_REPO == 'true'" in s["if"] for s in posting), "forks must not try to comment"
    assert any("upload-artifact" in s.get("uses", "") for s in steps(report))
    commenter = load(ROOT / ".github" / "workflows" / "model-report-comment.yml")
    assert set(commenter["on"]) == {"workflow_run"}
    assert commenter["on"]["workflow_run"]["workflows"] == [report["name"]]
    used = [s.get("uses", "") for s in steps(commenter)]
    assert not any(u.startswith("actions/checkout@") for u in used)
    assert not any("make" in s.get("run", "") for s in steps(commenter))


def test_make_image_containerizes_the_packaged_bento_and_pushes_it(tmp_path: Path) -> None:
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "package.json").write_text(json.dumps({"bento_tag": "conveyor:abc123"}))
    log = tmp_path / "calls.jsonl"
    make(
        tmp_path,
        "image",
        f"BENTOML={STAND_INS / 'bin' / 'bentoml'}",
        f"DOCKER={STAND_INS / 'bin' / 'docker'}",
        "GITHUB_REPOSITORY=Acme/Conveyor",
        "TAG=0123456789abcdef",
        f"STAND_IN_LOG={log}",
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(c["tool"], c["args"]) for c in calls] == [
        ("bentoml", ["containerize", "conveyor:abc123", "--image-tag", "ghcr.io/acme/conveyor:0123456789abcdef"]),
        ("docker", ["push", "ghcr.io/acme/conveyor:0123456789abcdef"]),
    ]


def test_make_set_image_points_the_overlay_at_the_commit(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    make(
        tmp_path,
        "set-image",
        "GITHUB_REPOSITORY=Acme/Conveyor",
        "TAG=feedface",
    )
    kustomization = yaml.safe_load((tmp_path / "deploy" / "overlays" / "staging" / "kustomization.yaml").read_text())
    assert kustomization["images"] == [{"name": "conveyor", "newName": "ghcr.io/acme/conveyor", "newTag": "feedface"}]
