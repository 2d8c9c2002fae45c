"""The evaluate stage's core (metrics, slices, importance) and what write() puts on disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT
from helpers_model import configured, labelled, regression
from helpers_monitor import Population
from sklearn.inspection import permutation_importance

from conveyor import io
from conveyor.artifacts import ImportanceSample
from conveyor.config import Config
from conveyor.contract import Contract
from conveyor.features import model_frame, spec_of, target_values
from conveyor.registry import metric_names
from conveyor.stages.evaluate import (
    CLASSIFICATION_PLOTS,
    PLACEHOLDER,
    REGRESSION_PLOTS,
    Evaluation,
    bounded_curve,
    confusion_counts,
    evaluate,
    importance,
    write,
)
from conveyor.stages.split import split
from conveyor.stages.train import train


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
    """The other task's plot folders hold only the placeholder, which `.dvcignore` hides from DVC."""
    ignored = (ROOT / ".dvcignore").read_text(encoding="utf-8").splitlines()
    assert PLACEHOLDER in ignored
    for folder in folders:
        assert [p.name for p in (out / "plots" / folder).iterdir()] == [PLACEHOLDER], folder
        assert "No plot" in (out / "plots" / folder / PLACEHOLDER).read_text(encoding="utf-8"), folder


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


def test_importance_on_a_sample_is_seeded_and_recorded(
    fast: Config, contract: Contract, penguins: pd.DataFrame
) -> None:
    sampled = configured(fast, evaluate={"importance_rows": 40})
    train_df, test_df = split(labelled(penguins, sampled), sampled.split, target="species", stratify=True)
    model = train(train_df, sampled, contract)
    first, sample = importance(model, test_df, sampled)
    assert sample == ImportanceSample(rows=40, test_rows=len(test_df), repeats=2, seed=sampled.split.seed)
    assert importance(model, test_df, sampled) == (first, sample)
    reseeded = configured(sampled, split={"seed": sampled.split.seed + 1})
    assert importance(model, test_df, reseeded)[0] != first
    # The whole split when it is no larger than the sample.
    assert importance(model, test_df, fast)[1].rows == len(test_df)


def test_importance_on_integer_codes_equals_scikit_learns_on_the_labels(
    fast: Config, contract: Contract, penguins: pd.DataFrame
) -> None:
    train_df, test_df = split(labelled(penguins, fast), fast.split, target="species", stratify=True)
    model = train(train_df, fast, contract)
    spec = spec_of(model)
    expected = permutation_importance(
        model,
        model_frame(test_df, spec),
        target_values(test_df, "species", task="classification"),
        scoring="balanced_accuracy",
        n_repeats=2,
        random_state=fast.split.seed,
    )
    scores, _ = importance(model, test_df, fast)
    for name, mean, std in zip(spec.columns, expected.importances_mean, expected.importances_std, strict=True):
        assert scores[name] == {"mean": pytest.approx(mean, abs=1e-12), "std": pytest.approx(std, abs=1e-12)}, name


def test_bounded_curve_keeps_both_ends_and_at_most_the_limit() -> None:
    # A ROC-like curve: 10,000 points crowded near (0, 1), then one long straight stretch.
    x = np.concatenate([np.linspace(0.0, 0.01, 10_000), [1.0]])
    y = np.concatenate([np.linspace(0.0, 1.0, 10_000), [1.0]])
    kept = bounded_curve(x, y, 50)
    assert 2 <= len(kept) <= 50
    assert kept[0] == 0
    assert kept[-1] == len(x) - 1
    assert list(kept) == sorted(set(kept))
    # Spread along the length: the crowded climb keeps most of the points, in order.
    assert np.all(np.diff(y[kept][:-1]) > 0)
    assert list(bounded_curve(x[:30], y[:30], 50)) == list(range(30))


def test_confusion_counts_has_one_count_per_cell() -> None:
    y_true = np.array(["a", "a", "a", "b", "b", "c"], dtype=object)
    y_pred = np.array(["a", "a", "b", "b", "b", "a"], dtype=object)
    cells = {(c["actual"], c["predicted"]): c["count"] for c in confusion_counts(y_true, y_pred, ["a", "b"])}
    # "c" is in the test split but not among the model's classes: it still gets its row.
    assert cells == {
        ("a", "a"): 2,
        ("a", "b"): 1,
        ("a", "c"): 0,
        ("b", "a"): 0,
        ("b", "b"): 2,
        ("b", "c"): 0,
        ("c", "a"): 1,
        ("c", "b"): 0,
        ("c", "c"): 0,
    }


def test_regression_plots_keep_at_most_plot_points(
    params: Config, contract: Contract, penguins: pd.DataFrame, in_tmp: Path
) -> None:
    cfg = configured(regression(params), evaluate={"importance_repeats": 1, "plot_points": 10})
    evaluation = _evaluation(cfg, contract, penguins)
    write(evaluation, in_tmp / "reports")
    points = _strict_json(in_tmp / "reports" / "plots" / "custom" / "predicted_vs_actual" / "test.json")
    assert isinstance(points, list)
    assert len(points) == 10
    actual = set(evaluation.y_true.astype(float).tolist())
    assert {p["actual"] for p in points} <= actual


@pytest.mark.slow
def test_every_file_stays_under_1_mb_at_a_million_test_rows(
    params: Config, contract: Contract, penguins: pd.DataFrame, in_tmp: Path
) -> None:
    """evaluate's core and write() on a 1M-row test split: what git tracks does not grow with the data."""
    rows = 1_000_000
    cfg = configured(params, evaluate={"importance_repeats": 1})
    train_df, _ = split(penguins, cfg.split, target="species", stratify=True)
    model = train(train_df, cfg, contract)
    test_df = Population(penguins, contract).draw(rows, np.random.default_rng(0))
    evaluation = evaluate(model, test_df, cfg)
    assert evaluation.importance_sample.rows == cfg.evaluate.importance_rows
    assert evaluation.importance_sample.test_rows == rows
    out = in_tmp / "reports"
    write(evaluation, out)
    sizes = {str(path.relative_to(out)): path.stat().st_size for path in out.rglob("*") if path.is_file()}
    assert len(sizes) >= 15
    assert {name: size for name, size in sizes.items() if size >= 1_000_000} == {}
    cells = _strict_json(out / "plots" / "sklearn" / "confusion_matrix" / "test.json")
    assert isinstance(cells, list)
    assert sum(c["count"] for c in cells) == rows
    for folder in ("custom/roc", "sklearn/precision_recall"):
        for path in (out / "plots" / folder).iterdir():
            curve = _strict_json(path)
            points = curve["precision_recall"] if isinstance(curve, dict) else curve
            assert isinstance(points, list)
            assert 2 <= len(points) <= cfg.evaluate.plot_points, path
