"""The gate's decision: thresholds, the champion comparison, and which model the verdict is about."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conveyor import io
from conveyor.artifacts import Champion, ChampionStatus, EvaluationRecord, GateVerdict
from conveyor.config import Bound, Config, GateConfig
from conveyor.errors import ArtifactError, ClusterError, DataError
from conveyor.model.registry import Task
from conveyor.stages.gate import ModelMismatch, champion_checks, check_model, decide
from tests.conftest import ROOT, clone_of, edit_params, run, stages_run

METRICS = {"accuracy": 0.95, "f1_macro": 0.94, "log_loss": 0.20}
EVALUATION = EvaluationRecord(model_sha256="a" * 64, test_sha256="b" * 64, metrics=METRICS)


def _gate(
    thresholds: dict[str, Bound], compare: tuple[str, ...] = (), tolerance: float = 0.0, **options: str
) -> GateConfig:
    return GateConfig.model_validate(
        {"thresholds": thresholds, "compare": compare, "tolerance": tolerance, **options}, strict=False
    )


def _scored(
    cfg: GateConfig, task: Task = "classification", metrics: dict[str, float] = METRICS, **baseline: float
) -> Champion:
    return Champion(
        rev="main",
        status="scored",
        model_sha256="c" * 64,
        metrics=baseline,
        reason="model at main scored on the current test split",
        checks=champion_checks(metrics, baseline, cfg, task=task),
        challenger_sha256="a" * 64,
    )


def _unscored(status: ChampionStatus) -> Champion:
    return Champion(
        rev="main", status=status, model_sha256=None, metrics=None, reason="why", challenger_sha256="a" * 64
    )


def test_thresholds_only_without_champion() -> None:
    cfg = _gate({"accuracy": Bound(min=0.9), "log_loss": Bound(max=0.3)})
    verdict = decide(EVALUATION, _unscored("no_revision"), cfg)
    assert verdict.accepted is True
    assert verdict.model_sha256 == "a" * 64
    assert [(c.metric, c.direction, c.bound, c.baseline) for c in verdict.checks] == [
        ("accuracy", ">=", 0.9, None),
        ("log_loss", "<=", 0.3, None),
    ]


@pytest.mark.parametrize(
    ("bound", "accepted"),
    [
        (Bound(min=0.95), True),  # the bound itself passes
        (Bound(min=0.96), False),
        (Bound(max=0.95), True),
        (Bound(max=0.94), False),
        (Bound(min=0.9, max=0.99), True),
        (Bound(min=0.96, max=0.99), False),
    ],
)
def test_min_and_max_bounds(bound: Bound, accepted: bool) -> None:
    assert decide(EVALUATION, _unscored("no_revision"), _gate({"accuracy": bound})).accepted is accepted


def test_a_missing_metric_fails_its_check() -> None:
    evaluation = EVALUATION.model_copy(update={"metrics": {"accuracy": 0.99}})
    verdict = decide(evaluation, _unscored("no_revision"), _gate({"f1_macro": Bound(min=0.5)}))
    assert verdict.accepted is False
    assert verdict.checks[0].value is None
    assert "f1_macro: missing" in str(verdict.checks[0])


@pytest.mark.parametrize(
    ("champion_f1", "accepted"),
    [(0.90, True), (0.95, True), (0.9499, True), (0.9501, False), (0.99, False)],
)
def test_higher_is_better_metric_against_the_champion(champion_f1: float, accepted: bool) -> None:
    # tolerance 0.01: the challenger's 0.94 may trail the champion by at most 0.01.
    cfg = _gate({}, compare=("f1_macro",), tolerance=0.01)
    champion = _scored(cfg, f1_macro=champion_f1)
    assert decide(EVALUATION, champion, cfg).accepted is accepted
    check = champion.checks[0]
    assert (check.kind, check.direction, check.baseline) == ("champion", ">=", champion_f1)
    assert check.bound == pytest.approx(champion_f1 - 0.01)


@pytest.mark.parametrize(("champion_loss", "accepted"), [(0.25, True), (0.195, True), (0.185, False)])
def test_lower_is_better_metric_against_the_champion(champion_loss: float, accepted: bool) -> None:
    cfg = _gate({}, compare=("log_loss",), tolerance=0.01)
    champion = _scored(cfg, log_loss=champion_loss)
    assert decide(EVALUATION, champion, cfg).accepted is accepted
    assert champion.checks[0].direction == "<="
    assert champion.checks[0].bound == pytest.approx(champion_loss + 0.01)


def test_regression_directions() -> None:
    cfg = _gate({"r2": Bound(min=0.5)}, compare=("rmse", "r2"))
    better = _scored(cfg, "regression", {"rmse": 300.0, "r2": 0.8}, rmse=350.0, r2=0.7)
    assert all(check.passed for check in better.checks)
    worse = _scored(cfg, "regression", {"rmse": 400.0, "r2": 0.6}, rmse=350.0, r2=0.7)
    assert [c.metric for c in worse.checks if not c.passed] == ["rmse", "r2"]


def test_compare_defaults_to_the_thresholds_metrics() -> None:
    cfg = _gate({"accuracy": Bound(min=0.5), "log_loss": Bound(max=1.0)})
    champion = _scored(cfg, accuracy=0.99, log_loss=0.1)
    assert [c.metric for c in champion.checks if not c.passed] == ["accuracy", "log_loss"]
    assert decide(EVALUATION, champion, cfg).accepted is False


@pytest.mark.parametrize("status", ["no_revision", "not_tracked", "not_in_cache", "same_model"])
def test_the_documented_no_champion_cases_leave_thresholds_alone(status: ChampionStatus) -> None:
    cfg = _gate({"accuracy": Bound(min=0.9)}, compare=("accuracy",))
    assert decide(EVALUATION, _unscored(status), cfg).accepted is True


def test_an_incompatible_champion_rejects_unless_explicitly_allowed() -> None:
    strict = _gate({"accuracy": Bound(min=0.9)})
    assert decide(EVALUATION, _unscored("incompatible"), strict).accepted is False
    lenient = _gate({"accuracy": Bound(min=0.9)}, incompatible_champion="thresholds_only")
    assert decide(EVALUATION, _unscored("incompatible"), lenient).accepted is True


def test_a_failed_check_reads_as_a_reason() -> None:
    cfg = _gate({}, compare=("f1_macro",), tolerance=0.01)
    check = _scored(cfg, f1_macro=0.99).checks[0]
    assert str(check) == "champion f1_macro: 0.9400, needs >= 0.9800 (champion 0.9900)"


def test_the_gate_refuses_a_model_file_that_evaluate_did_not_score(tmp_path: Path, trained_model_file: Path) -> None:
    record = EvaluationRecord(model_sha256=io.file_sha256(trained_model_file), test_sha256="b" * 64, metrics=METRICS)
    assert check_model(trained_model_file, record, source=tmp_path / "evaluation.json") == record.model_sha256
    truncated = tmp_path / "model.skops"
    truncated.write_bytes(trained_model_file.read_bytes()[:1000])
    with pytest.raises(ModelMismatch, match=r"model\.skops: not the model evaluate scored"):
        check_model(truncated, record, source=tmp_path / "evaluation.json")
    # Even a file whose hash was recorded must be a whole archive: a corrupt model is named, not accepted.
    corrupt = EvaluationRecord(model_sha256=io.file_sha256(truncated), test_sha256="b" * 64, metrics=METRICS)
    with pytest.raises(ArtifactError, match=r"model\.skops: not a readable skops model"):
        check_model(truncated, corrupt, source=tmp_path / "evaluation.json")


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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_on_main_the_champion_is_the_same_model(reproduced_repo: Path, tmp_path: Path) -> None:
    repo = clone_of(reproduced_repo, tmp_path / "repo")
    run(repo, "dvc", "repro", "--force", "--single-item", "gate")
    champion = io.read_artifact(repo / "reports/champion.json", Champion)
    assert champion.status == "same_model"
    assert run(repo, "git", "status", "--porcelain").stdout == "", "the tracked verdict does not depend on main"


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_model_changed_after_evaluate_is_never_accepted(reproduced_repo: Path, tmp_path: Path) -> None:
    repo = clone_of(reproduced_repo, tmp_path / "repo")
    model = repo / "models/model.skops"
    model.unlink()  # the cache holds a read-only link; the stage would write a new file, not through it
    model.write_bytes(io.read_bytes(reproduced_repo / "models/model.skops")[:4096])
    result = run(repo, "conveyor", *GATE_ARGS, check=False)
    assert result.returncode == 1
    assert "models/model.skops: not the model evaluate scored" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("predicts", "status"),
    [
        # After `conveyor init` the old model is seldom in the cache: its card (in git) says enough.
        ({"task": "classification", "target": "island"}, "other_target"),
        ({"task": "classification", "target": "species"}, "not_in_cache"),
    ],
)
def test_a_champion_in_no_cache_is_judged_by_its_card_first(
    params: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, predicts: dict[str, str], status: str
) -> None:
    import json

    from conveyor.stages import gate

    monkeypatch.setattr(gate, "_fetch", lambda *_, **__: (None, json.dumps(predicts).encode()))
    champion = gate.find_champion(
        model_sha256="a" * 64,
        model_path=Path("models/model.skops"),
        card_path=Path("models/model.json"),
        score_on_test=lambda model: {},
        metrics=METRICS,
        cfg=params,
        root=tmp_path,
    )
    assert (champion.status, champion.model_sha256, champion.checks) == (status, None, [])


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (DataError("data/split/test.parquet: no column 'island'"), "incompatible"),
        (ClusterError("dask.address: cannot reach the scheduler at tcp://127.0.0.1:9"), None),
    ],
)
def test_a_champion_that_cannot_be_scored_is_incompatible_but_a_cluster_failure_stops_the_gate(
    params: Config, trained_model_file: Path, monkeypatch: pytest.MonkeyPatch, error: Exception, status: str | None
) -> None:
    from conveyor.stages import gate

    monkeypatch.setattr(gate, "_fetch", lambda *_, **__: (trained_model_file.read_bytes(), None))

    def scorer(model: object) -> dict[str, float]:
        raise error

    def champion() -> Champion:
        return gate.find_champion(
            model_sha256="a" * 64,
            model_path=Path("models/model.skops"),
            card_path=Path("models/model.json"),
            score_on_test=scorer,
            metrics=METRICS,
            cfg=params,
            root=trained_model_file.parent,
        )

    if status is None:
        with pytest.raises(ClusterError, match="cannot reach the scheduler"):
            champion()
    else:
        found = champion()
        assert found.status == status
        assert "no column 'island'" in found.reason


@pytest.mark.parametrize("engine", ["pandas", "dask"])
def test_without_a_champion_to_score_the_gate_imports_neither_scikit_learn_nor_dask(engine: str) -> None:
    # What keeps a first run's gate (or one whose champion is in no cache) a fraction of a second.
    script = (
        "import sys, yaml; from pathlib import Path; from conveyor.config import parse_config; "
        f"raw = yaml.safe_load(Path({str(ROOT / 'params.yaml')!r}).read_text()); "
        f"raw['engine'] = {engine!r}; raw['model'] = {{'estimator': 'xgboost', 'params': {{}}}}; "
        "from conveyor.stages import gate; gate.champion_scorer(parse_config(raw, check_params=False), Path('test.parquet')); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'scipy', 'dask', 'distributed', 'skops'}))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
