"""The model-report workflows, run for real by `act` on this host, offline.

The workflow files are the ones in `.github/workflows/`, unchanged: act maps each pinned remote
action to a local stand-in (`--local-repository`, see stand-ins/README.md). `cml` is a stand-in
that holds each call to CML 0.20.6's option rules, records it with the pull request or commit it
would comment on, and keeps the Markdown it was given; `actions/github-script` runs the
workflow's own script against recorded GitHub API answers.

`model report` runs the pull request's pipeline and uploads the report; `model report comment`
then finds the pull request from the `workflow_run` event and posts the report on it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import BIN, ROOT, clone_of, commit_all, run, tool_env

STAND_INS = Path(__file__).parent / "stand-ins"
REPORTER = ".github/workflows/model-report.yml"
COMMENTER = ".github/workflows/model-report-comment.yml"
REPOSITORY = "acme/conveyor"
REPOSITORY_ID = 1001
FORK = "mallory/conveyor"
BRANCH = "weaker-model"
HEAD_SHA = "0123456789abcdef0123456789abcdef01234567"
RUN_ID = 4242
# Pinned remote action (owner/name, without the sha) -> its stand-in folder.
STAND_IN_FOR = {
    "actions/checkout": "checkout",
    "actions/setup-python": "setup-python",
    "actions/cache": "cache",
    "actions/upload-artifact": "upload-artifact",
    "actions/download-artifact": "download-artifact",
    "actions/github-script": "github-script",
    "iterative/setup-cml": "setup-cml",
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def remote_actions(workflow: Path) -> set[str]:
    """Every ``owner/name@sha`` the workflow uses."""
    steps = [s for job in yaml.safe_load(workflow.read_text())["jobs"].values() for s in job["steps"]]
    return {s["uses"] for s in steps if "uses" in s and not s["uses"].startswith("./")}


def act(
    repo: Path, workflow: str, event_name: str, event: dict[str, Any], work: Path
) -> subprocess.CompletedProcess[str]:
    """Run the workflow's ``event_name`` jobs with act on the host; stand-ins for every remote action.

    ``work`` holds what the stand-ins share across runs: ``artifacts/``, the call log
    ``calls.jsonl`` (with ``calls.jsonl.files/``) and the GitHub API answers ``github-api.json``.
    """
    work.mkdir(exist_ok=True)
    (work / "event.json").write_text(json.dumps(event))
    api = work / "github-api.json"
    if not api.exists():
        api.write_text(json.dumps({"pulls": []}))
    installed = ROOT / ".tools" / "bin" / "uv"  # where `make setup` puts it
    uv = str(installed) if installed.exists() else shutil.which("uv") or "uv"
    stand_in_env = {
        "STAND_IN_SOURCE": str(repo),
        "STAND_IN_CACHE": str(repo),
        "STAND_IN_VENV": str(BIN.parent),
        "STAND_IN_UV": uv,
        "STAND_IN_ARTIFACTS": str(work / "artifacts"),
        "STAND_IN_LOG": str(work / "calls.jsonl"),
        "STAND_IN_CML_BIN": str(STAND_INS / "bin"),
        "STAND_IN_GITHUB_API": str(api),
    }
    result = run_act(repo, work, event_name=event_name, workflow=workflow, stand_in_env=stand_in_env)
    (work / f"act-{Path(workflow).stem}.log").write_text(result.stdout + result.stderr)
    return result


def run_act(
    repo: Path,
    work: Path,
    *,
    event_name: str,
    workflow: str,
    stand_in_env: dict[str, str],
    path_first: tuple[Path, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """``act`` on ``workflow`` in ``repo`` with ``work/event.json``: every remote action mapped to its
    stand-in, ``stand_in_env`` passed to the steps, ``path_first`` before the tools on PATH."""
    mappings = []
    for uses in sorted(remote_actions(repo / workflow)):
        folder = STAND_IN_FOR.get(uses.split("@")[0], "unavailable")
        mappings += ["--local-repository", f"{uses}={STAND_INS / folder}"]
    args = [
        str(BIN / "act"),
        event_name,
        "--workflows",
        workflow,
        "--eventpath",
        str(work / "event.json"),
        "--platform",
        "ubuntu-latest=-self-hosted",
        "--action-offline-mode",
        *mappings,
    ]
    for key, value in stand_in_env.items():
        args += ["--env", f"{key}={value}"]
    env = tool_env() | stand_in_env | {"XDG_CACHE_HOME": str(work / "xdg-cache")}
    env["PATH"] = os.pathsep.join([*map(str, path_first), env["PATH"]])
    return subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, timeout=900, check=False)


def calls(work: Path, tool: str) -> list[dict[str, Any]]:
    """The stand-ins' log of calls to ``tool``, in order."""
    log = work / "calls.jsonl"
    entries = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return [entry for entry in entries if entry["tool"] == tool]


def pull_request_event(repo: Path, head_repository: str) -> dict[str, object]:
    head = run(repo, "git", "rev-parse", "HEAD").stdout.strip()
    return {
        "number": 7,
        "pull_request": {
            "number": 7,
            "head": {"ref": BRANCH, "sha": head, "repo": {"full_name": head_repository}},
            "base": {"ref": "main", "repo": {"full_name": REPOSITORY}},
        },
        "repository": {"full_name": REPOSITORY},
    }


def pull(number: int, head_repository: str, sha: str, *, state: str = "open") -> dict[str, Any]:
    """A pull request into this repository as GitHub's REST API (and the workflow_run payload) show it."""
    return {
        "number": number,
        "state": state,
        "head": {"label": f"{head_repository.partition('/')[0]}:{BRANCH}", "ref": BRANCH, "sha": sha},
        "base": {"ref": "main", "repo": {"id": REPOSITORY_ID, "name": "conveyor"}},
    }


def workflow_run_event(
    head_repository: str, *, conclusion: str = "failure", pull_requests: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """GitHub's `workflow_run` event for a completed `model report` run of a pull request at HEAD_SHA."""
    return {
        "action": "completed",
        "workflow_run": {
            "id": RUN_ID,
            "name": "model report",
            "event": "pull_request",
            "status": "completed",
            "conclusion": conclusion,
            "head_sha": HEAD_SHA,
            "head_branch": BRANCH,
            "head_repository": {"full_name": head_repository, "owner": {"login": head_repository.partition("/")[0]}},
            "html_url": f"https://github.com/{REPOSITORY}/actions/runs/{RUN_ID}",
            # GitHub leaves this empty for a fork's pull request.
            "pull_requests": pull_requests or [],
        },
        "repository": {"id": REPOSITORY_ID, "full_name": REPOSITORY},
    }


@pytest.fixture
def commenter_repo(tmp_path: Path) -> Path:
    """A repository with this project's workflows, its origin on GitHub as act reads it."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / ".github", repo / ".github")
    run(repo, "git", "init", "--quiet", "--initial-branch=main")
    run(repo, "git", "remote", "add", "origin", f"https://github.com/{REPOSITORY}.git")
    commit_all(repo, "workflows")
    return repo


def figures_shown(markdown: str) -> list[str]:
    """The title of each figure drawn in ``markdown`` the way GitHub renders it in the page: a
    ``### title`` heading followed by a Mermaid chart or a table (never an image link)."""
    shown = []
    for match in re.finditer(r"^### (.+)\n\n(.*)$", markdown, flags=re.MULTILINE):
        title, first = match.groups()
        if first == "```mermaid" or first.startswith("| "):
            shown.append(title)
    return shown


def uploaded_report(work: Path, markdown: str) -> None:
    """What `model report` uploads: report.md and its images."""
    report = work / "artifacts" / "model-report"
    (report / "report-images").mkdir(parents=True)
    (report / "report.md").write_text(markdown)
    (report / "report-images" / "metrics.png").write_bytes(PNG_SIGNATURE)


def test_every_remote_action_of_the_report_workflows_has_a_stand_in() -> None:
    used = {uses.split("@")[0] for path in (REPORTER, COMMENTER) for uses in remote_actions(ROOT / path)}
    # Runs only with a DVC remote; without one the step is skipped, and `unavailable` fails if not.
    used.discard("aws-actions/configure-aws-credentials")
    assert used <= set(STAND_IN_FOR)
    assert all((STAND_INS / folder / "action.yml").is_file() for folder in [*STAND_IN_FOR.values(), "unavailable"])


@pytest.mark.slow
def test_a_forks_report_is_posted_on_its_pull_request_found_by_owner_branch_and_head(
    commenter_repo: Path, tmp_path: Path
) -> None:
    work = tmp_path / "act"
    chart = "```mermaid\nxychart-beta\n    line [0.5000, 1.0000]\n```"
    uploaded_report(
        work,
        f"## Gate: ❌ rejected\n\n## Plots\n\n### ROC, Adelie against the rest\n\n{chart}\n\nLine: candidate.\n\n"
        "![ROC, Adelie against the rest](report-images/metrics.png)\n",
    )
    (work / "github-api.json").write_text(
        json.dumps(
            {
                "pulls": [
                    pull(5, "someone/conveyor", HEAD_SHA),  # same branch name and head, another owner
                    pull(6, FORK, "f" * 40, state="closed"),  # an older pull request from that branch
                    pull(7, FORK, HEAD_SHA),
                ]
            }
        )
    )

    result = act(commenter_repo, COMMENTER, "workflow_run", workflow_run_event(FORK), work)

    assert result.returncode == 0, result.stdout[-3000:]
    (lookup,) = calls(work, "github-script")
    assert lookup["params"] == {
        "owner": "acme",
        "repo": "conveyor",
        "state": "open",
        "head": f"mallory:{BRANCH}",
        "per_page": 100,
    }
    (posted,) = calls(work, "cml")
    assert posted["target"] == "pr/7"
    assert posted["args"] == [
        "comment",
        "update",
        "--target=pr/7",
        "--no-publish",
        "--watermark-title=Conveyor model report",
        "comment/report.md",
    ]
    comment = Path(posted["copied"][0]).read_text()
    assert comment.startswith(f"> ⚠️ Made by the pull request's own code, in a run from the fork `{FORK}`")
    assert f"https://github.com/{REPOSITORY}/actions/runs/{RUN_ID}" in comment
    assert "## Gate: ❌ rejected" in comment
    assert figures_shown(comment) == ["ROC, Adelie against the rest"]
    assert f"{chart}\n\nLine: candidate.\n" in comment
    assert "](report-images/" not in comment, "no image left for CML to upload or GitHub to break"


@pytest.mark.slow
def test_a_same_repository_report_is_posted_on_the_pull_request_the_event_names(
    commenter_repo: Path, tmp_path: Path
) -> None:
    work = tmp_path / "act"
    uploaded_report(work, "## Gate: ✅ accepted\n")
    event = workflow_run_event(REPOSITORY, conclusion="success", pull_requests=[pull(8, REPOSITORY, HEAD_SHA)])

    result = act(commenter_repo, COMMENTER, "workflow_run", event, work)

    assert result.returncode == 0, result.stdout[-3000:]
    assert calls(work, "github-script") == [], "the payload named the pull request: no lookup"
    (posted,) = calls(work, "cml")
    assert posted["target"] == "pr/8"
    comment = Path(posted["copied"][0]).read_text()
    assert comment.startswith(f"> From [run {RUN_ID}]")
    assert "fork" not in comment


@pytest.mark.slow
def test_a_report_is_capped_below_githubs_comment_limit(commenter_repo: Path, tmp_path: Path) -> None:
    work = tmp_path / "act"
    figure = (
        "### ROC\n\n```mermaid\nxychart-beta\n"
        + "    line [0.5000, 1.0000]\n" * 40
        + "```\n\n![ROC](report-images/roc.png)\n\n"
    )
    uploaded_report(work, "## Gate: ✅ accepted\n\n## Plots\n\n" + figure * 200)
    event = workflow_run_event(REPOSITORY, pull_requests=[pull(8, REPOSITORY, HEAD_SHA)])

    assert act(commenter_repo, COMMENTER, "workflow_run", event, work).returncode == 0

    (posted,) = calls(work, "cml")
    comment = Path(posted["copied"][0]).read_text()
    assert len(comment) < 65_536 - 1_000, "room for CML's watermark"
    assert comment.rstrip().endswith("cut at 60000 characters: the whole report is in the artifact.")
    assert comment.count("```") % 2 == 0, "cut at a heading: no chart is left open"
    assert comment.count("```mermaid") == len(figures_shown(comment)) >= 50


@pytest.mark.slow
@pytest.mark.parametrize(
    ("conclusion", "posted"),
    [("success", True), ("failure", True), ("cancelled", False), ("timed_out", False), ("skipped", False)],
)
def test_only_a_finished_runs_report_is_posted(
    commenter_repo: Path, tmp_path: Path, conclusion: str, posted: bool
) -> None:
    # `failure` is finished too: the gate rejected the model, and the report says why.
    work = tmp_path / "act"
    uploaded_report(work, "## Gate: ✅ accepted\n")
    event = workflow_run_event(REPOSITORY, conclusion=conclusion, pull_requests=[pull(8, REPOSITORY, HEAD_SHA)])

    result = act(commenter_repo, COMMENTER, "workflow_run", event, work)

    assert result.returncode == 0, result.stdout[-3000:]
    assert [call["target"] for call in calls(work, "cml")] == (["pr/8"] if posted else [])


@pytest.mark.slow
def test_nothing_is_posted_when_no_open_pull_request_has_the_reported_head(
    commenter_repo: Path, tmp_path: Path
) -> None:
    work = tmp_path / "act"
    uploaded_report(work, "## Gate: ✅ accepted\n")
    # The fork pushed again: its pull request's head is no longer the commit this report is for.
    (work / "github-api.json").write_text(json.dumps({"pulls": [pull(7, FORK, "e" * 40)]}))

    result = act(commenter_repo, COMMENTER, "workflow_run", workflow_run_event(FORK), work)

    assert result.returncode != 0
    assert f"0 open pull requests have head {HEAD_SHA}; expected one: nothing posted" in result.stdout
    assert calls(work, "cml") == []


@pytest.mark.slow
def test_model_report_uploads_the_report_then_fails_on_rejection_and_the_commenter_posts_it(
    reproduced_repo: Path, tmp_path: Path
) -> None:
    repo = clone_of(reproduced_repo, tmp_path / "repo")
    run(repo, "git", "remote", "add", "origin", f"https://github.com/{REPOSITORY}.git")
    # The stand-in checkout clones the repo: main must be a branch of origin, as on GitHub.
    run(repo, "git", "update-ref", "refs/remotes/origin/main", "main")
    run(repo, "git", "checkout", "--quiet", "-b", BRANCH)
    params = repo / "params.yaml"
    params.write_text(re.sub(r"(?m)^(\s+C:) 1\.0", r"\1 0.001", params.read_text()))
    commit_all(repo, "much stronger regularisation")
    work = tmp_path / "act"

    result = act(repo, REPORTER, "pull_request", pull_request_event(repo, head_repository=FORK), work)
    log = result.stdout + result.stderr

    assert result.returncode != 0, log[-3000:]
    assert "Success - Main Write the report" in log, log[-3000:]
    # The last step reruns the pipeline only to end the job with the gate's own message.
    assert "model rejected by the gate" in log
    assert calls(work, "cml") == [], "the job that ran the pull request's code posts nothing"
    uploaded = work / "artifacts" / "model-report"
    report = (uploaded / "report.md").read_text()
    assert report.index("## Gate: ❌ rejected") < report.index("## Metrics against `main`")
    assert "model.params.C" in report
    assert "0.001" in report
    plots = re.findall(r"!\[([^]]*)\]\(([^)]+)\)", report)
    assert len(plots) == 11, "confusion matrix, 3 ROC, 3 precision-recall, 3 calibration, importance"
    for _, link in plots:
        assert (uploaded / link).read_bytes().startswith(PNG_SIGNATURE), link

    head = run(repo, "git", "rev-parse", "HEAD").stdout.strip()
    event = workflow_run_event(FORK)
    event["workflow_run"]["head_sha"] = head
    (work / "github-api.json").write_text(json.dumps({"pulls": [pull(7, FORK, head)]}))
    result = act(repo, COMMENTER, "workflow_run", event, work)

    assert result.returncode == 0, result.stdout[-3000:]
    (posted,) = calls(work, "cml")
    assert posted["target"] == "pr/7"
    comment = Path(posted["copied"][0]).read_text()
    assert "## Gate: ❌ rejected" in comment
    assert "0.001" in comment
    # Every figure of the report, drawn by GitHub itself: nothing uploaded, no link to the artifact's PNGs.
    assert figures_shown(comment) == [title for title, _ in plots]
    assert comment.count("```mermaid") == 10
    assert "| **Adelie** |" in comment, "the confusion matrix as a table"
    assert "](report-images/" not in comment
