"""The evaluate stage's core (metrics, slices, importance) and what write() puts on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conveyor import io
from conveyor.config import Config
from conveyor.contract import Contract
from conveyor.model.registry import metric_names
from conveyor.stages.evaluate import CLASSIFICATION_PLOTS, PLACEHOLDER, REGRESSION_PLOTS, Evaluation, evaluate, write
from conveyor.stages.split import split
from conveyor.stages.train import train
from tests.conftest import configured, labelled, regression


def _evaluation(cfg: Config, contract: Contract, penguins: pd.DataFrame) -> Evaluation:
    stratify = cfg.task == "classification"
    train_df, test_df = split(labelled(penguins, cfg), cfg.split, target=cfg.data.target, stratify=stratify)
    return evaluate(train(train_df, cfg, contract), test_df, cfg)


@pytest.fixture(scope="module")
def fast(params: Config) -> Config:
    return configured(params, evaluate={"importance_repeats": 2, "min_slice_rows": 5})


def _strict_json(path: Path) -> object:
    def refuse(constant: str) -> object:
        raise AssertionError(f"{path} holds {constant}, which is not JSON")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def _assert_placeholders(out: Path, folders: tuple[str, ...]) -> None:
    """The other task's plot folders hold only the placeholder: a JSON list of no points."""
    for folder in folders:
        assert [p.name for p in (out / "plots" / folder).iterdir()] == [PLACEHOLDER], folder
        assert _strict_json(out / "plots" / folder / PLACEHOLDER) == [], folder


def test_classification_evaluation(fast: Config, contract: Contract, penguins: pd.DataFrame) -> None:
    evaluation = _evaluation(fast, contract, penguins)
    assert set(evaluation.metrics) == metric_names("classification")
    assert evaluation.classes == ["Adelie", "Chinstrap", "Gentoo"]
    assert evaluation.proba is not None
    assert evaluation.proba.shape == (len(evaluation.y_true), 3)
    assert set(evaluation.importance) == {
        "bill_length_mm",
        "bill_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
        "island",
        "sex",
    }
    means = [v["mean"] for v in evaluation.importance.values()]
    assert means == sorted(means, reverse=True)
    # Bill length separates Chinstrap from Adelie: shuffling it must cost something.
    assert evaluation.importance["bill_length_mm"]["mean"] > 0.05
    sliced = {(s["column"], s["value"]) for s in evaluation.slices}
    assert {("island", "Biscoe"), ("island", "Dream"), ("sex", "male"), ("sex", "female")} <= sliced
    assert all(s["rows"] >= 5 and 0.0 <= s["accuracy"] <= 1.0 for s in evaluation.slices)


def test_classification_write(fast: Config, contract: Contract, penguins: pd.DataFrame, in_tmp: Path) -> None:
    out = in_tmp / "reports"
    write(_evaluation(fast, contract, penguins), out)
    metrics = io.read_json(out / "metrics.json")
    assert metric_names("classification") <= set(metrics)
    for folder in ("custom/roc", "sklearn/precision_recall", "sklearn/calibration"):
        files = sorted(p.name for p in (out / "plots" / folder).iterdir())
        assert files == ["Adelie.json", "Chinstrap.json", "Gentoo.json"], folder
    roc = _strict_json(out / "plots" / "custom" / "roc" / "Gentoo.json")
    assert isinstance(roc, list)
    assert roc[0] == {"fpr": 0.0, "tpr": 0.0, "threshold": 1.0}
    assert (out / "plots" / "sklearn" / "confusion_matrix" / "test.json").is_file()
    _assert_placeholders(out, REGRESSION_PLOTS)
    assert "slices" in io.read_json(out / "slices.json")
    plotted = io.read_json(out / "plots" / "custom" / "importance.json")
    assert [row["feature"] for row in plotted] == list(io.read_json(out / "importance.json"))


def test_regression_evaluation_and_plots(
    params: Config, contract: Contract, penguins: pd.DataFrame, in_tmp: Path
) -> None:
    cfg = configured(regression(params), evaluate={"importance_repeats": 2})
    evaluation = _evaluation(cfg, contract, penguins)
    assert set(evaluation.metrics) == {"rmse", "mae", "r2"}
    assert evaluation.metrics["r2"] > 0.7  # body mass follows flipper length and species closely
    assert evaluation.proba is None
    assert {"column", "value", "rows", "rmse", "mae"} <= set(evaluation.slices[0])
    assert {s["column"] for s in evaluation.slices} == {"species", "island", "sex"}
    out = in_tmp / "reports"
    write(evaluation, out)
    assert set(io.read_json(out / "metrics.json")) == {"rmse", "mae", "r2"}
    points = _strict_json(out / "plots" / "custom" / "predicted_vs_actual" / "test.json")
    assert isinstance(points, list)
    assert len(points) == len(evaluation.y_true)
    assert set(points[0]) == {"actual", "predicted", "residual"}
    assert points[0]["residual"] == pytest.approx(points[0]["predicted"] - points[0]["actual"])
    assert (out / "plots" / "custom" / "residuals" / "test.json").is_file()
    _assert_placeholders(out, CLASSIFICATION_PLOTS)
