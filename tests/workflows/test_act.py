"""The model-report workflow, run for real by `act` on this host, offline.

The workflow file is the one in `.github/workflows/`, unchanged: act maps each pinned remote
action to a local stand-in (`--local-repository`, see stand-ins/README.md), and `cml` is a
stand-in that records its arguments and the report it was given. The pull request lowers the
regularisation strength so far that the gate rejects the model: the report must still be
posted, uploaded, and the job must fail after that.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import BIN, ROOT, clone_of, commit_all, run, tool_env

STAND_INS = Path(__file__).parent / "stand-ins"
WORKFLOW = ".github/workflows/model-report.yml"
REPOSITORY = "acme/conveyor"
# Pinned remote action (owner/name, without the sha) -> its stand-in folder.
STAND_IN_FOR = {
    "actions/checkout": "checkout",
    "actions/setup-python": "setup-python",
    "actions/cache": "cache",
    "actions/upload-artifact": "upload-artifact",
    "actions/download-artifact": "download-artifact",
    "iterative/setup-cml": "setup-cml",
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def remote_actions(workflow: Path) -> set[str]:
    """Every ``owner/name@sha`` the workflow uses."""
    steps = [s for job in yaml.safe_load(workflow.read_text())["jobs"].values() for s in job["steps"]]
    return {s["uses"] for s in steps if "uses" in s and not s["uses"].startswith("./")}


def act(repo: Path, event: dict[str, object], work: Path) -> subprocess.CompletedProcess[str]:
    """Run the workflow's pull_request jobs with act on the host; stand-ins for every remote action."""
    (work / "event.json").write_text(json.dumps(event))
    mappings = []
    for uses in sorted(remote_actions(repo / WORKFLOW)):
        folder = STAND_IN_FOR.get(uses.split("@")[0], "unavailable")
        mappings += ["--local-repository", f"{uses}={STAND_INS / folder}"]
    installed = ROOT / ".tools" / "bin" / "uv"  # where `make setup` puts it
    uv = str(installed) if installed.exists() else shutil.which("uv") or "uv"
    stand_in_env = {
        "STAND_IN_SOURCE": str(repo),
        "STAND_IN_CACHE": str(repo),
        "STAND_IN_VENV": str(BIN.parent),
        "STAND_IN_UV": uv,
        "STAND_IN_ARTIFACTS": str(work / "artifacts"),
        "STAND_IN_LOG": str(work / "cml.jsonl"),
        "STAND_IN_CML_BIN": str(STAND_INS / "bin"),
    }
    args = [
        str(BIN / "act"),
        "pull_request",
        "--workflows",
        WORKFLOW,
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
    return subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, timeout=900, check=False)


def pull_request_event(repo: Path, head_repository: str) -> dict[str, object]:
    head = run(repo, "git", "rev-parse", "HEAD").stdout.strip()
    return {
        "number": 7,
        "pull_request": {
            "number": 7,
            "head": {"ref": "weaker-model", "sha": head, "repo": {"full_name": head_repository}},
            "base": {"ref": "main", "repo": {"full_name": REPOSITORY}},
        },
        "repository": {"full_name": REPOSITORY},
    }


def test_every_remote_action_of_the_model_report_has_a_stand_in() -> None:
    used = {uses.split("@")[0] for uses in remote_actions(ROOT / WORKFLOW)}
    # Runs only with a DVC remote; without one the step is skipped, and `unavailable` fails if not.
    used.discard("aws-actions/configure-aws-credentials")
    assert used <= set(STAND_IN_FOR)
    assert all((STAND_INS / folder / "action.yml").is_file() for folder in [*STAND_IN_FOR.values(), "unavailable"])


@pytest.mark.slow
def test_model_report_workflow_posts_the_report_then_fails_on_rejection(reproduced_repo: Path, tmp_path: Path) -> None:
    repo = clone_of(reproduced_repo, tmp_path / "repo")
    run(repo, "git", "remote", "add", "origin", f"https://github.com/{REPOSITORY}.git")
    # The stand-in checkout clones the repo: main must be a branch of origin, as on GitHub.
    run(repo, "git", "update-ref", "refs/remotes/origin/main", "main")
    run(repo, "git", "checkout", "--quiet", "-b", "weaker-model")
    params = repo / "params.yaml"
    params.write_text(re.sub(r"(?m)^(\s+C:) 1\.0", r"\1 0.001", params.read_text()))
    commit_all(repo, "much stronger regularisation")
    work = tmp_path / "act"
    work.mkdir()

    result = act(repo, pull_request_event(repo, head_repository=REPOSITORY), work)
    log = result.stdout + result.stderr
    (work / "act.log").write_text(log)

    assert result.returncode != 0, log[-3000:]
    assert "Success - Main Write the report" in log, log[-3000:]
    # The last step reruns the pipeline only to end the job with the gate's own message.
    assert "model rejected by the gate" in log
    calls = [json.loads(line) for line in (work / "cml.jsonl").read_text().splitlines()]
    assert len(calls) == 1, calls
    assert calls[0]["args"] == [
        "comment",
        "update",
        "--target=pr",
        "--watermark-title=Conveyor model report",
        "report/report.md",
    ]
    (posted,) = map(Path, calls[0]["copied"])
    report = posted.read_text()
    assert report.index("## Gate: ❌ rejected") < report.index("## Metrics against `main`")
    assert "model.params.C" in report
    assert "0.001" in report
    for link in re.findall(r"!\[[^]]*\]\(([^)]+)\)", report):
        assert (posted.parent / link).read_bytes().startswith(PNG_SIGNATURE), link
    uploaded = work / "artifacts" / "model-report"
    assert (uploaded / "report.md").read_text() == report
