"""The gate's decision: thresholds, the champion comparison and what gate.json records."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.config import Bound, GateConfig
from conveyor.stages.gate import Champion, Check, decide

METRICS = {"accuracy": 0.95, "f1_macro": 0.94, "log_loss": 0.20, "latency": {"single_row_ms": 4.0}}


def _gate(thresholds: dict[str, Bound], compare: tuple[str, ...] = (), tolerance: float = 0.0) -> GateConfig:
    return GateConfig(thresholds=thresholds, compare=compare, tolerance=tolerance)


def _champion(**metrics: float) -> Champion:
    return Champion("main", "0" * 40, dict(metrics), "model at main scored on the current test split")


def _failed(verdict: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["kind"], c["metric"]) for c in verdict["checks"] if not c["passed"]]


def test_thresholds_only_without_champion() -> None:
    cfg = _gate({"accuracy": Bound(min=0.9), "log_loss": Bound(max=0.3)})
    verdict = decide(METRICS, cfg, task="classification", champion=None)
    assert verdict["accepted"] is True
    assert verdict["decided_by"] == "thresholds only"
    assert verdict["champion"] is None
    assert [(c["metric"], c["direction"], c["bound"], c["baseline"]) for c in verdict["checks"]] == [
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
    verdict = decide(METRICS, _gate({"accuracy": bound}), task="classification", champion=None)
    assert verdict["accepted"] is accepted


def test_a_missing_metric_fails_its_check() -> None:
    verdict = decide({"accuracy": 0.99}, _gate({"f1_macro": Bound(min=0.5)}), task="classification", champion=None)
    assert verdict["accepted"] is False
    assert verdict["checks"][0]["value"] is None
    assert "f1_macro: missing" in str(Check(**verdict["checks"][0]))


@pytest.mark.parametrize(
    ("champion_f1", "accepted"),
    [(0.90, True), (0.95, True), (0.9499, True), (0.9501, False), (0.99, False)],
)
def test_higher_is_better_metric_against_the_champion(champion_f1: float, accepted: bool) -> None:
    # tolerance 0.01: the challenger's 0.94 may trail the champion by at most 0.01.
    cfg = _gate({}, compare=("f1_macro",), tolerance=0.01)
    verdict = decide(METRICS, cfg, task="classification", champion=_champion(f1_macro=champion_f1))
    assert verdict["accepted"] is accepted
    check = verdict["checks"][0]
    assert (check["kind"], check["direction"], check["baseline"]) == ("champion", ">=", champion_f1)
    assert check["bound"] == pytest.approx(champion_f1 - 0.01)
    assert verdict["decided_by"] == "thresholds and champion"


@pytest.mark.parametrize(("champion_loss", "accepted"), [(0.25, True), (0.195, True), (0.185, False)])
def test_lower_is_better_metric_against_the_champion(champion_loss: float, accepted: bool) -> None:
    cfg = _gate({}, compare=("log_loss",), tolerance=0.01)
    verdict = decide(METRICS, cfg, task="classification", champion=_champion(log_loss=champion_loss))
    assert verdict["accepted"] is accepted
    assert verdict["checks"][0]["direction"] == "<="
    assert verdict["checks"][0]["bound"] == pytest.approx(champion_loss + 0.01)


def test_regression_directions() -> None:
    cfg = _gate({"r2": Bound(min=0.5)}, compare=("rmse", "r2"))
    better = decide({"rmse": 300.0, "r2": 0.8}, cfg, task="regression", champion=_champion(rmse=350.0, r2=0.7))
    assert better["accepted"] is True
    worse = decide({"rmse": 400.0, "r2": 0.6}, cfg, task="regression", champion=_champion(rmse=350.0, r2=0.7))
    assert _failed(worse) == [("champion", "rmse"), ("champion", "r2")]


def test_compare_defaults_to_the_thresholds_metrics() -> None:
    cfg = _gate({"accuracy": Bound(min=0.5), "log_loss": Bound(max=1.0)})
    verdict = decide(METRICS, cfg, task="classification", champion=_champion(accuracy=0.99, log_loss=0.1))
    assert _failed(verdict) == [("champion", "accuracy"), ("champion", "log_loss")]


def test_a_champion_that_could_not_be_scored_leaves_thresholds_alone() -> None:
    unscored = Champion("main", None, None, "no git revision 'main' here: first run, so thresholds alone decide")
    cfg = _gate({"accuracy": Bound(min=0.9)}, compare=("accuracy",))
    verdict = decide(METRICS, cfg, task="classification", champion=unscored)
    assert verdict["accepted"] is True
    assert verdict["decided_by"] == "thresholds only"
    assert verdict["champion"]["reason"].startswith("no git revision 'main'")
    assert [c["kind"] for c in verdict["checks"]] == ["threshold"]


def test_a_failed_check_reads_as_a_reason() -> None:
    cfg = _gate({}, compare=("f1_macro",), tolerance=0.01)
    verdict = decide(METRICS, cfg, task="classification", champion=_champion(f1_macro=0.99))
    assert str(Check(**verdict["checks"][0])) == "champion f1_macro: 0.9400, needs >= 0.9800 (champion 0.9900)"
