"""`dvc repro` end to end in a copy of the repository, and which stages a change reruns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import clone_of, commit_all, run
from helpers_model import edit_params, stages_from, stages_run

from conveyor import io
from conveyor.registry import metric_names

pytestmark = pytest.mark.slow


def _declared_outputs(repo: Path) -> list[str]:
    stages = yaml.safe_load((repo / "dvc.lock").read_text(encoding="utf-8"))["stages"]
    return [out["path"] for stage in stages.values() for out in stage.get("outs", [])]


def test_every_stage_output_exists_and_the_gate_accepts(reproduced_repo: Path) -> None:
    outputs = _declared_outputs(reproduced_repo)
    assert {"models/model.skops", "models/model.json", "reports/metrics.json", "reports/gate.json"} <= set(outputs)
    missing = [path for path in outputs if not (reproduced_repo / path).exists()]
    assert missing == []
    gate = io.read_json(reproduced_repo / "reports/gate.json")
    assert gate["accepted"] is True
    assert all(check["passed"] for check in gate["checks"])
    metrics = io.read_json(reproduced_repo / "reports/metrics.json")
    assert metric_names("classification") <= set(metrics)
    assert metrics["accuracy"] >= 0.9


def test_model_metadata_traces_the_model(reproduced_repo: Path) -> None:
    meta = io.read_json(reproduced_repo / "models/model.json")
    # The fixture trained at the copy's first commit, then committed the results on top.
    trained_at = run(reproduced_repo, "git", "rev-parse", "HEAD~1").stdout.strip()
    assert meta["git_revision"] == trained_at
    assert meta["data_hash"] == io.table_hash(io.read_table(reproduced_repo / "data/split/train.parquet"))
    assert meta["params"]["model"] == yaml.safe_load((reproduced_repo / "params.yaml").read_text())["model"]
    assert {"scikit-learn", "pandas", "numpy", "skops"} <= set(meta["libraries"])
    assert "not installed" not in meta["libraries"].values()
    assert meta["training_seconds"] > 0
    assert meta["classes"] == ["Adelie", "Chinstrap", "Gentoo"]


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
    gate = io.read_json(repo / "reports/gate.json")
    assert gate["accepted"] is True
    assert gate["decided_by"] == "thresholds and champion"
    assert {c["metric"] for c in gate["checks"] if c["kind"] == "champion"} == {"f1_macro", "log_loss"}
    commit_all(repo, "more iterations")

    edit_params(repo, lambda p: p["gate"]["thresholds"]["accuracy"].update(min=0.85))
    assert stages_run(run(repo, "dvc", "repro").stdout) == stages_from(repo, "gate")
