"""Champion and challenger in a real git repository: the gate compares against the model on main.

``reproduced_repo`` is ``main`` with an accepted model committed (dvc.lock, plus the model in the
local DVC cache). Each test works in its own clone of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import clone_of, run
from helpers_model import edit_params, stages_run

from conveyor import io
from conveyor.artifacts import Champion, GateVerdict

pytestmark = pytest.mark.slow

GATE_ARGS = (
    "gate",
    "--model=models/model.skops",
    "--metadata=models/model.json",
    "--test=data/split/test.parquet",
    "--evaluation=reports/evaluation.json",
    "--out=reports/gate.json",
    "--champion=reports/champion.json",
)
RELAXED = {"accuracy": {"min": 0.0}, "f1_macro": {"min": 0.0}, "log_loss": {"max": 100.0}}


def test_a_worse_model_on_a_branch_is_rejected_against_the_champion(reproduced_repo: Path, tmp_path: Path) -> None:
    repo = clone_of(reproduced_repo, tmp_path / "repo")
    champion: dict[str, Any] = io.read_json(repo / "reports/metrics.json")
    run(repo, "git", "checkout", "--quiet", "-b", "stump")

    def weaker(params: dict[str, Any]) -> None:
        # One depth-1 tree: it can split off Gentoo but not tell Adelie from Chinstrap.
        params["model"] = {
            "estimator": "random_forest",
            "params": {"n_estimators": 1, "max_depth": 1, "random_state": 0},
        }
        params["gate"]["thresholds"] = RELAXED  # every threshold holds: only the champion can reject it

    edit_params(repo, weaker)
    result = run(repo, "dvc", "repro", check=False)  # the whole pipeline: it must stop at the gate
    assert result.returncode != 0
    assert "model rejected by the gate (reports/gate.json, reports/champion.json)" in result.stderr
    assert "champion f1_macro:" in result.stderr
    assert "Traceback" not in result.stderr
    gate = io.read_artifact(repo / "reports/gate.json", GateVerdict)
    assert gate.accepted is False
    assert all(c.passed for c in gate.checks)
    assert {c.kind for c in gate.checks} == {"threshold"}
    scored = io.read_artifact(repo / "reports/champion.json", Champion)
    assert scored.status == "scored"
    assert scored.challenger_sha256 == gate.model_sha256 != scored.model_sha256
    compared = {c.metric: c for c in scored.checks}
    assert set(compared) == {"f1_macro", "log_loss"}
    assert not compared["f1_macro"].passed
    for name, check in compared.items():
        # The champion was scored again on the same test split: its metrics are main's.
        assert check.baseline == pytest.approx(champion[name], abs=1e-9)
    assert stages_run(result.stdout) == ["tune", "train", "evaluate", "gate"]  # nothing downstream ran


def _drop_from_cache(repo: Path, rev: str, path: str) -> None:
    """Delete the DVC cache object of ``path`` as committed at ``rev`` (as if never pulled)."""
    lock = yaml.safe_load(run(repo, "git", "show", f"{rev}:dvc.lock").stdout)
    (md5,) = [out["md5"] for stage in lock["stages"].values() for out in stage.get("outs", []) if out["path"] == path]
    (repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]).unlink()


def test_without_a_champion_thresholds_decide(reproduced_repo: Path, tmp_path: Path) -> None:
    repo = clone_of(reproduced_repo, tmp_path / "repo")
    run(repo, "git", "checkout", "--quiet", "-b", "boosting")
    # main's model is committed but its file is in no cache: as in a clone that never pulled it.
    _drop_from_cache(repo, "main", "models/model.skops")
    edit_params(
        repo,
        lambda p: p.update(
            model={"estimator": "hist_gradient_boosting", "params": {"max_iter": 100, "random_state": 0}}
        ),
    )
    result = run(repo, "dvc", "repro", "gate")
    assert stages_run(result.stdout) == ["tune", "train", "evaluate", "gate"]
    assert io.read_artifact(repo / "reports/gate.json", GateVerdict).accepted
    champion = io.read_artifact(repo / "reports/champion.json", Champion)
    assert (champion.status, champion.checks) == ("not_in_cache", [])
    assert "in neither the DVC cache nor a remote" in champion.reason

    # A baseline revision that does not exist (a repository whose default branch is not main).
    edit_params(repo, lambda p: p["gate"].update(baseline_rev="no-such-branch"))
    result = run(repo, "dvc", "repro", "gate")
    assert stages_run(result.stdout) == ["gate"]
    assert io.read_artifact(repo / "reports/gate.json", GateVerdict).accepted
    champion = io.read_artifact(repo / "reports/champion.json", Champion)
    assert champion.status == "no_revision"
    assert "no git revision 'no-such-branch'" in champion.reason


def test_on_main_the_champion_is_the_same_model(reproduced_repo: Path, tmp_path: Path) -> None:
    repo = clone_of(reproduced_repo, tmp_path / "repo")
    run(repo, "dvc", "repro", "--force", "--single-item", "gate")
    champion = io.read_artifact(repo / "reports/champion.json", Champion)
    assert champion.status == "same_model"
    assert run(repo, "git", "status", "--porcelain").stdout == "", "the tracked verdict does not depend on main"


def test_an_incompatible_champion_rejects_unless_allowed(reproduced_repo: Path, tmp_path: Path) -> None:
    repo = clone_of(reproduced_repo, tmp_path / "repo")
    run(repo, "git", "checkout", "--quiet", "-b", "no-island")
    # The branch drops a column main's model reads: main's model cannot be scored on the new data.
    contract = yaml.safe_load((repo / "data/contract.yaml").read_text())
    del contract["columns"]["island"]
    (repo / "data/contract.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))
    result = run(repo, "dvc", "repro", "gate", check=False)
    assert result.returncode != 0
    assert "champion: the model at main cannot be scored on this data" in result.stderr
    assert "'island'" in result.stderr
    assert "Traceback" not in result.stderr
    assert io.read_artifact(repo / "reports/champion.json", Champion).status == "incompatible"
    assert not io.read_artifact(repo / "reports/gate.json", GateVerdict).accepted

    edit_params(repo, lambda p: p["gate"].update(incompatible_champion="thresholds_only"))
    run(repo, "dvc", "repro", "gate")
    assert io.read_artifact(repo / "reports/gate.json", GateVerdict).accepted


def test_a_model_changed_after_evaluate_is_never_accepted(reproduced_repo: Path, tmp_path: Path) -> None:
    repo = clone_of(reproduced_repo, tmp_path / "repo")
    model = repo / "models/model.skops"
    model.unlink()  # the cache holds a read-only link; the stage would write a new file, not through it
    model.write_bytes(io.read_bytes(reproduced_repo / "models/model.skops")[:4096])
    result = run(repo, "conveyor", *GATE_ARGS, check=False)
    assert result.returncode == 1
    assert "models/model.skops: not the model evaluate scored" in result.stderr
    assert "Traceback" not in result.stderr
