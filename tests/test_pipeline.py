"""`dvc repro` end to end in a copy of the repository, and which stages a change reruns."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from conveyor import io
from conveyor.artifacts import Champion, GateVerdict, ModelCard, PackageReport
from conveyor.model.registry import metric_names
from tests.conftest import BIN, clone_of, commit_all, edit_params, run, stages_from, stages_run, tracked_files

pytestmark = pytest.mark.slow


def _declared_outputs(repo: Path) -> list[str]:
    stages = yaml.safe_load((repo / "dvc.lock").read_text(encoding="utf-8"))["stages"]
    return [out["path"] for stage in stages.values() for out in stage.get("outs", [])]


def test_every_stage_output_exists_and_the_gate_accepts(reproduced_repo: Path) -> None:
    outputs = _declared_outputs(reproduced_repo)
    assert {"models/model.skops", "models/model.json", "reports/metrics.json", "reports/gate.json"} <= set(outputs)
    missing = [path for path in outputs if not (reproduced_repo / path).exists()]
    assert missing == []
    gate = io.read_artifact(reproduced_repo / "reports/gate.json", GateVerdict)
    assert gate.accepted is True
    assert all(check.passed for check in gate.checks)
    assert gate.model_sha256 == io.file_sha256(reproduced_repo / "models/model.skops")
    metrics = io.read_json(reproduced_repo / "reports/metrics.json")
    assert metric_names("classification") <= set(metrics)
    assert metrics["accuracy"] >= 0.9


def test_model_card_traces_the_model(reproduced_repo: Path) -> None:
    card = io.read_artifact(reproduced_repo / "models/model.json", ModelCard)
    assert card.provenance.data_hash == io.table_hash(io.read_table(reproduced_repo / "data/split/train.parquet"))
    assert card.params["model"] == yaml.safe_load((reproduced_repo / "params.yaml").read_text())["model"]
    assert {"scikit-learn", "pandas", "numpy", "skops"} <= set(card.provenance.libraries)
    assert "not installed" not in card.provenance.libraries.values()
    assert card.classes == ["Adelie", "Chinstrap", "Gentoo"]


def test_the_packaged_model_names_the_commit_it_was_packaged_from(reproduced_repo: Path) -> None:
    import bentoml

    tag = io.read_artifact(reproduced_repo / "reports/package.json", PackageReport).model_tag
    packaged_at = run(reproduced_repo, "git", "rev-parse", "HEAD~1").stdout.strip()
    assert bentoml.models.get(tag).info.labels["git_revision"] == packaged_at


def test_the_same_inputs_give_the_same_bytes(reproduced_repo: Path, tmp_path: Path) -> None:
    repo = clone_of(reproduced_repo, tmp_path / "repo")
    before = {name: (repo / name).read_bytes() for name in [*tracked_files(repo), "models/model.skops"]}
    # Only the system's directories and this environment's: no uv, dvc or bentoml from elsewhere.
    path = os.pathsep.join([str(BIN), "/usr/local/bin", "/usr/bin", "/bin"])
    assert str(shutil.which("uv", path=path)).startswith(str(BIN)), "the project's own uv builds the bento"
    run(repo, "dvc", "repro", "--force", env={"PATH": path}, timeout=600)
    changed = [name for name, data in before.items() if (repo / name).read_bytes() != data]
    assert changed == [], "a second run of the same code, data and params rewrote these"
    assert run(repo, "git", "status", "--porcelain").stdout == ""


def test_dvc_metrics_and_plots_show(reproduced_repo: Path, tmp_path: Path) -> None:
    shown = json.loads(run(reproduced_repo, "dvc", "metrics", "show", "--json").stdout)
    # DVC 3 keys the workspace as "" in --json output.
    workspace = shown[""]["data"]["reports/metrics.json"]["data"]
    assert workspace["accuracy"] == io.read_json(reproduced_repo / "reports/metrics.json")["accuracy"]
    html = tmp_path / "html"
    run(reproduced_repo, "dvc", "plots", "show", "--out", html)
    assert (html / "index.html").stat().st_size > 0
    # The JSON DVC renders must be strict JSON (no Infinity) and free of load errors.
    rendered: dict[str, Any] = json.loads(run(reproduced_repo, "dvc", "plots", "show", "--json").stdout)
    assert rendered.get("errors") in (None, [])
    names = set(rendered["data"])
    assert "reports/plots/sklearn/confusion_matrix/test.json" in names
    for kind, folder in (("roc", "custom"), ("precision_recall", "sklearn"), ("calibration", "sklearn")):
        assert {f"reports/plots/{folder}/{kind}/{label}.json" for label in ("Adelie", "Chinstrap", "Gentoo")} <= names
    assert "reports/plots/custom/importance.json" in names


def test_reruns_only_what_a_change_affects(reproduced_repo: Path, tmp_path: Path) -> None:
    repo = clone_of(reproduced_repo, tmp_path / "repo")
    assert stages_run(run(repo, "dvc", "repro").stdout) == []

    # An equal model on a branch (lbfgs converges long before 1000 iterations): a model.params
    # change, so passed through tune and trained again, and accepted against main's because it is no worse.
    run(repo, "git", "checkout", "--quiet", "-b", "equal")
    edit_params(repo, lambda p: p["model"]["params"].update(max_iter=2000))
    result = run(repo, "dvc", "repro")
    assert stages_run(result.stdout) == stages_from(repo, "tune")
    assert io.read_artifact(repo / "reports/gate.json", GateVerdict).accepted is True
    champion = io.read_artifact(repo / "reports/champion.json", Champion)
    assert champion.status == "scored"
    assert {c.metric for c in champion.checks} == {"f1_macro", "log_loss"}
    commit_all(repo, "more iterations")

    edit_params(repo, lambda p: p["gate"]["thresholds"]["accuracy"].update(min=0.85))
    assert stages_run(run(repo, "dvc", "repro").stdout) == stages_from(repo, "gate")
