"""The GitHub workflows: lint (zizmor, GitHub's schema), the security rules the README promises,
and the Makefile targets their `run:` steps call that need tools this machine lacks (Docker)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, edit_params, make, run, write_package_report

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
STAND_INS = Path(__file__).parent / "stand-ins"
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(?:/[\w./-]+)?@[0-9a-f]{40}$")
# Which steps justify each write permission (a substring of the step's `uses:` or `run:`). The
# deploy pull request is written with a GitHub App's token, not the job's.
WRITE_NEEDS = {
    "pull-requests": ("cml comment",),
    "packages": ("make image",),
    "id-token": ("configure-aws-credentials",),
    "issues": ("make monitor-alert",),
    "actions": ("make monitor-alert",),  # dispatches retrain.yml
}
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


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


def test_checks_run_what_ci_runs_in_its_order() -> None:
    ci = [
        line.split()[1]
        for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line.startswith("make ")
    ]
    checks = [
        step["run"].split()[1]
        for step in steps(load(ROOT / ".github" / "workflows" / "checks.yml"))
        if step.get("run", "").startswith("make ")
    ]
    assert ci == ["run", "check-repro", "lint", "test"]
    assert [target for target in checks if target in ci] == ci, "checks.yml must run .ci/run's targets in its order"


def test_pull_request_runs_are_superseded_and_releases_are_not() -> None:
    for name in ("checks.yml", "model-report.yml"):
        concurrency = load(ROOT / ".github" / "workflows" / name)["concurrency"]
        assert "pull_request.number" in concurrency["group"]
        assert concurrency["cancel-in-progress"] in (True, "${{ github.event_name == 'pull_request' }}")
    assert load(ROOT / ".github" / "workflows" / "deploy.yml")["concurrency"]["cancel-in-progress"] is False


def test_reports_are_posted_by_a_job_that_runs_no_pull_request_code() -> None:
    report = load(ROOT / ".github" / "workflows" / "model-report.yml")
    (job,) = report["jobs"].values()
    assert "pull-requests" not in job["permissions"], "the job that runs the pull request's code cannot comment"
    assert not any("cml" in s.get("run", "") or "setup-cml" in s.get("uses", "") for s in steps(report))
    assert any("upload-artifact" in s.get("uses", "") for s in steps(report))
    commenter = load(ROOT / ".github" / "workflows" / "model-report-comment.yml")
    assert set(commenter["on"]) == {"workflow_run"}
    assert commenter["on"]["workflow_run"]["workflows"] == [report["name"]]
    used = [s.get("uses", "") for s in steps(commenter)]
    assert not any(u.startswith("actions/checkout@") for u in used)
    assert not any("make" in s.get("run", "") for s in steps(commenter))
    (comment,) = commenter["jobs"].values()
    for conclusion in ("'success'", "'failure'"):
        assert f"github.event.workflow_run.conclusion == {conclusion}" in comment["if"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_cml_is_a_pinned_release_without_vega_and_publishes_nothing(path: Path) -> None:
    for step in steps(load(path)):
        if "setup-cml" in step.get("uses", ""):
            assert re.fullmatch(r"\d+\.\d+\.\d+", step["with"]["version"]), "an exact CML release, not latest"
            assert step["with"]["vega"] is False, "no global npm install of floating versions"
        if step.get("run", "").startswith("cml comment"):
            # Without it CML uploads every local file the Markdown names to a third-party host.
            assert "--no-publish" in step["run"].split()
            assert '--target="pr/$PR_NUMBER"' in step["run"], "the pull request found from the workflow_run"


def test_pull_requests_assume_the_read_only_role_and_only_main_the_write_role() -> None:
    workflows = {path.name: path.read_text() for path in WORKFLOWS}
    assert "DVC_REMOTE_ROLE_ARN" not in "".join(workflows.values()), "one role for both is what let PRs write"
    assert "vars.DVC_REMOTE_READ_ROLE_ARN" in workflows["model-report.yml"]
    assert "WRITE_ROLE" not in workflows["model-report.yml"]
    assert "vars.DVC_REMOTE_WRITE_ROLE_ARN" in workflows["deploy.yml"]
    assert "READ_ROLE" not in workflows["deploy.yml"]
    deploy = load(ROOT / ".github" / "workflows" / "deploy.yml")
    assert set(deploy["on"]) == {"push", "workflow_dispatch"}
    assert deploy["on"]["push"]["branches"] == ["main"]
    retrain = load(ROOT / ".github" / "workflows" / "retrain.yml")
    assert "READ_ROLE" not in workflows["retrain.yml"], "it pushes the refreshed data"
    for name, job in [*deploy["jobs"].items(), *retrain["jobs"].items()]:
        assert job["if"] == "github.ref == 'refs/heads/main'", f"{name}: a manual run from another branch"
        assert job["environment"] == "release", f"{name}: the protected environment the write role trusts"


def test_the_deploy_pull_request_is_opened_as_a_github_app() -> None:
    (job,) = [j for j in load(ROOT / ".github" / "workflows" / "deploy.yml")["jobs"].values() if "needs" in j]
    by_use = {s["uses"].split("@")[0]: s for s in job["steps"] if "uses" in s}
    app = by_use["actions/create-github-app-token"]
    assert app["with"]["permission-contents"] == app["with"]["permission-pull-requests"] == "write"
    # GITHUB_TOKEN's pull requests start no workflows: the required checks would never run.
    assert by_use["peter-evans/create-pull-request"]["with"]["token"] == f"${{{{ steps.{app['id']}.outputs.token }}}}"
    assert job["env"]["DIGEST"] == "${{ needs.image.outputs.digest }}"


def make_image(folder: Path, docker: Path) -> subprocess.CompletedProcess[str]:
    """`make image` of a packaged bento with stand-ins for bentoml and ``docker``, as in a workflow step."""
    (folder / "reports").mkdir()
    write_package_report(
        folder / "reports" / "package.json", model_tag="conveyor-model:abc123", bento_tag="conveyor:abc123"
    )
    return make(
        folder,
        "image",
        f"BENTOML={STAND_INS / 'bin' / 'bentoml'}",
        f"DOCKER={docker}",
        "GITHUB_REPOSITORY=Acme/Conveyor",
        "TAG=0123456789abcdef",
        f"STAND_IN_LOG={folder / 'calls.jsonl'}",
        f"GITHUB_OUTPUT={folder / 'github-output'}",
        check=False,
    )


def test_make_image_pushes_the_packaged_bento_and_keeps_the_digest_the_push_returned(tmp_path: Path) -> None:
    result = make_image(tmp_path, STAND_INS / "bin" / "docker")
    assert result.returncode == 0, result.stderr
    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert [(c["tool"], c["args"]) for c in calls] == [
        ("bentoml", ["containerize", "conveyor:abc123", "--image-tag", "ghcr.io/acme/conveyor:0123456789abcdef"]),
        ("docker", ["push", "ghcr.io/acme/conveyor:0123456789abcdef"]),
    ]
    pushed = re.search(r"(?m)^0123456789abcdef: digest: (sha256:[0-9a-f]{64}) size: \d+$", result.stdout)
    assert pushed, result.stdout
    assert (tmp_path / "build" / "image-digest").read_text() == pushed[1] + "\n"
    assert (tmp_path / "github-output").read_text() == f"digest={pushed[1]}\n", "the step output `digest`"


def test_make_image_fails_when_the_push_names_no_digest(tmp_path: Path) -> None:
    result = make_image(tmp_path, Path("/bin/true"))
    assert result.returncode != 0
    assert "docker push printed no digest for ghcr.io/acme/conveyor:0123456789abcdef" in result.stderr
    assert not (tmp_path / "build" / "image-digest").exists()


def test_make_set_image_pins_the_overlay_to_the_digest_make_image_kept(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    digest = "sha256:" + "5e" * 32
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "image-digest").write_text(digest + "\n")
    make(tmp_path, "set-image", "GITHUB_REPOSITORY=Acme/Conveyor", "TAG=feedface")
    kustomization = yaml.safe_load((tmp_path / "deploy" / "overlays" / "staging" / "kustomization.yaml").read_text())
    assert kustomization["images"] == [
        {"name": "conveyor", "newName": "ghcr.io/acme/conveyor", "newTag": "feedface", "digest": digest}
    ]
    assert DIGEST.match(digest)


def test_make_set_image_refuses_to_run_without_a_digest(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    before = (tmp_path / "deploy" / "overlays" / "staging" / "kustomization.yaml").read_text()
    result = make(tmp_path, "set-image", "TAG=feedface", check=False)
    assert result.returncode != 0
    assert "--digest '' is not an image digest" in result.stderr
    assert (tmp_path / "deploy" / "overlays" / "staging" / "kustomization.yaml").read_text() == before


def test_make_ci_repro_verifies_what_it_pulls_from_the_remote(tmp_path: Path) -> None:
    stand_ins = tmp_path / "bin"
    stand_ins.mkdir()
    (stand_ins / "dvc").symlink_to(STAND_INS / "bin" / "record")
    log = tmp_path / "calls.jsonl"
    make(tmp_path, "ci-repro", "DVC_REMOTE_URL=s3://bucket/conveyor", f"STAND_IN_LOG={log}", tools=stand_ins)
    calls = [json.loads(line)["args"] for line in log.read_text().splitlines()]
    assert calls[:3] == [
        ["remote", "add", "--local", "--default", "--force", "ci", "s3://bucket/conveyor"],
        ["remote", "modify", "--local", "ci", "verify", "true"],
        ["repro", "--pull"],
    ]


def stand_in_cml(tmp_path: Path, *args: str, event: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call the `cml` stand-in as a workflow_run step (or in a pull_request event); its log entry."""
    # The log lies outside the report's folder, which the stand-in copies beside the log.
    workspace = tmp_path / "workspace"
    workspace.mkdir(exist_ok=True)
    (workspace / "report.md").write_text("# report\n")
    env = {"STAND_IN_LOG": str(tmp_path / "calls.jsonl"), "GITHUB_SHA": "a" * 40, "GITHUB_EVENT_NAME": "workflow_run"}
    if event is not None:
        (tmp_path / "event.json").write_text(json.dumps(event))
        env |= {"GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(tmp_path / "event.json")}
    result = run(workspace, "env", *(f"{k}={v}" for k, v in env.items()), STAND_INS / "bin" / "cml", *args, check=False)
    entry: dict[str, Any] = json.loads((tmp_path / "calls.jsonl").read_text().splitlines()[-1])
    assert (result.returncode != 0) == ("error" in entry), result.stderr
    return entry


@pytest.mark.parametrize(
    ("args", "refusal"),
    [
        # What model-report-comment.yml ran before: CML 0.20.6 declares these two mutually exclusive.
        (["--target=pr", "--commit-sha=" + "b" * 40], "Arguments commit-sha and target are mutually exclusive"),
        (["--pr", "--target=pr/7"], "Arguments pr and target are mutually exclusive"),
        (["--head-sha=" + "b" * 40, "--pr"], "Arguments pr and commit-sha are mutually exclusive"),
        (
            ["--rm-watermark", "--watermark-title=t"],
            "Arguments watermark-title and rm-watermark are mutually exclusive",
        ),
        # A workflow_run names no pull request: CML would look one up for $GITHUB_SHA, the base branch's.
        (["--target=pr"], 'PR for commit sha "' + "a" * 40 + '" not found'),
        (["--target=mr/7"], 'unsupported comment target "mr/7"'),
        (["--target=7"], 'Failed to parse comment --target="7"'),
        (["--target=pr/"], "GitHub has no pr ''"),
        (["--target=pr/seven"], "GitHub has no pr 'seven'"),
        (["--target=pr/7", "--publish-to=x"], "Unknown argument: --publish-to=x"),
        (["--target=pr/7", "--no-target"], "Unknown argument: --no-target"),
        (["--target=pr/7", "--target=pr/8"], "--target given twice"),
        (["--target", "--no-publish"], 'Failed to parse comment --target=""'),
        (["--target=pr/7", "--rm-watermark"], "watermarks are mandatory for updatable comments"),
        (["--log=loud"], "Invalid values: Argument: log"),
    ],
)
def test_the_cml_stand_in_refuses_what_cml_0_20_6_refuses(tmp_path: Path, args: list[str], refusal: str) -> None:
    entry = stand_in_cml(tmp_path, "comment", "update", *args, "report.md")
    assert refusal in entry["error"]


@pytest.mark.parametrize(
    ("args", "target"),
    [
        (["--target=pr/7", "--no-publish", "--watermark-title=Conveyor model report"], "pr/7"),
        (["--target", "issue/12"], "issue/12"),
        (["--target=commit/abcdef1"], "commit/abcdef1"),
        (["--target=commit"], "commit/" + "a" * 40),
        (["--commit-sha=abcdef1"], "commit/abcdef1"),  # deprecated, still accepted alone
        ([], "commit/" + "a" * 40),  # `auto`: no pull request in a workflow_run, so the commit
    ],
)
def test_the_cml_stand_in_resolves_targets_as_cml_0_20_6_does(tmp_path: Path, args: list[str], target: str) -> None:
    assert stand_in_cml(tmp_path, "comment", "update", *args, "report.md")["target"] == target


def test_the_cml_stand_in_finds_the_pull_request_of_a_pull_request_event(tmp_path: Path) -> None:
    event = {"pull_request": {"number": 9, "head": {"sha": "c" * 40}}}
    assert stand_in_cml(tmp_path, "comment", "update", "--target=pr", "report.md", event=event)["target"] == "pr/9"


def test_the_cml_stand_in_needs_exactly_one_existing_markdown_file(tmp_path: Path) -> None:
    assert "Not enough non-option arguments" in stand_in_cml(tmp_path, "comment", "update", "--target=pr/7")["error"]
    assert "Unknown argument: more.md" in stand_in_cml(tmp_path, "comment", "update", "report.md", "more.md")["error"]
    assert "ENOENT" in stand_in_cml(tmp_path, "comment", "create", "missing.md")["error"]
    assert "models only" in stand_in_cml(tmp_path, "pr", "create", "report.md")["error"]


def test_deploy_loads_the_online_store_and_ci_gets_feast_only_with_the_feature_store_on(tmp_path: Path) -> None:
    (image,) = [job for job in load(ROOT / ".github" / "workflows" / "deploy.yml")["jobs"].values() if "outputs" in job]
    commands = [step.get("run", "") for step in image["steps"]]
    assert commands.index("make bento") < commands.index("make online-store") < commands.index("make image")
    shutil.copy2(ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "feature_repo").mkdir()
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy2(ROOT / "feature_repo" / name, tmp_path / "feature_repo" / name)
    off = make(tmp_path, "-n", "online-store").stdout + make(tmp_path, "-n", "ci-repro").stdout
    assert "feature_store.enabled is false in params.yaml: no online store to load" in off
    assert "materialize.py" not in off
    assert "--project feature_repo" not in off
    edit_params(tmp_path, lambda params: params["feature_store"].update(enabled=True))
    materialize = make(tmp_path, "-n", "online-store").stdout
    assert "materialize.py --repo . --apply --start 2000-01-01T00:00:00" in materialize
    # The retrain workflow's `make retrain` runs ci-repro: ingest from the store needs the Feast environment.
    ci = make(tmp_path, "-n", "ci-repro").stdout
    assert ci.index("sync --frozen --project feature_repo") < ci.index("dvc repro --pull")
