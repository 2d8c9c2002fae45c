"""evaluate: metrics, plots, permutation importance and per-slice metrics on the test split.

Everything written here is a function of the model and the test split: no timings (``make
bench`` measures speed), so re-running on the same inputs rewrites the same bytes.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from dvclive.live import Live
from numpy.typing import NDArray
from sklearn.inspection import permutation_importance
from sklearn.metrics import roc_curve
from sklearn.pipeline import Pipeline

from conveyor import io
from conveyor.artifacts import EvaluationRecord
from conveyor.config import Config
from conveyor.features import MISSING_CATEGORY, model_frame, spec_of, target_values
from conveyor.metrics import classification_metrics, regression_metrics
from conveyor.predict import predict, predict_proba

# Every plot in dvc.yaml is a folder under <out>/plots. Each task fills its own folders; write()
# puts PLACEHOLDER in the other task's, because `dvc plots show/diff` reports a declared path that
# does not exist as an error, and git (hence a baseline revision) keeps no empty folder. DVC reads
# the placeholder's empty list as a plot without points: no figure, no error.
PLACEHOLDER = "none.json"
CLASSIFICATION_PLOTS = ("sklearn/confusion_matrix", "custom/roc", "sklearn/precision_recall", "sklearn/calibration")
REGRESSION_PLOTS = ("custom/predicted_vs_actual", "custom/residuals")


@dataclass(frozen=True)
class Evaluation:
    """Everything the evaluate stage reports about one model on one test split."""

    metrics: dict[str, float]
    y_true: NDArray[Any]
    y_pred: NDArray[Any]
    proba: NDArray[np.float64] | None
    classes: list[str] | None
    importance: dict[str, dict[str, float]]
    slices: list[dict[str, Any]]


def evaluate(model: Pipeline, test: pd.DataFrame, cfg: Config) -> Evaluation:
    """Evaluate ``model`` on ``test`` (DataFrame of shape (n_samples, n_columns), target included)."""
    task, target = cfg.task, cfg.data.target
    y_true = target_values(test, target, task=task)
    y_pred = predict(model, test)
    if task == "classification":
        proba = predict_proba(model, test)
        classes: list[str] | None = [str(c) for c in model.classes_]
        metrics = classification_metrics(y_true, y_pred, proba, model.classes_)
    else:
        proba, classes = None, None
        metrics = regression_metrics(y_true, y_pred)
    return Evaluation(
        metrics=metrics,
        y_true=y_true,
        y_pred=y_pred,
        proba=proba,
        classes=classes,
        importance=importance(model, test, cfg),
        slices=slices(model, test, y_true, y_pred, cfg),
    )


def importance(model: Pipeline, test: pd.DataFrame, cfg: Config) -> dict[str, dict[str, float]]:
    """Permutation importance of each input column: the score lost when it is shuffled."""
    spec = spec_of(model)
    scoring = "balanced_accuracy" if cfg.task == "classification" else "neg_root_mean_squared_error"
    result = permutation_importance(
        model,
        model_frame(test, spec),
        target_values(test, cfg.data.target, task=cfg.task),
        scoring=scoring,
        n_repeats=cfg.evaluate.importance_repeats,
        random_state=cfg.split.seed,
    )
    ranked = sorted(
        zip(spec.columns, result.importances_mean, result.importances_std, strict=True), key=lambda r: -r[1]
    )
    return {name: {"mean": float(mean), "std": float(std)} for name, mean, std in ranked}


def slices(
    model: Pipeline, test: pd.DataFrame, y_true: NDArray[Any], y_pred: NDArray[Any], cfg: Config
) -> list[dict[str, Any]]:
    """Metrics for each value of each categorical feature with at least ``evaluate.min_slice_rows`` rows."""
    rows = []
    for column in spec_of(model).categorical:
        values = test[column].astype("object").where(test[column].notna(), MISSING_CATEGORY).astype(str).to_numpy()
        for value in sorted(set(values)):
            mask = values == value
            if mask.sum() < cfg.evaluate.min_slice_rows:
                continue
            rows.append(
                {
                    "column": column,
                    "value": value,
                    "rows": int(mask.sum()),
                    **_slice_metrics(y_true[mask], y_pred[mask], cfg),
                }
            )
    return rows


def _slice_metrics(y_true: NDArray[Any], y_pred: NDArray[Any], cfg: Config) -> dict[str, float]:
    if cfg.task == "classification":
        return {"accuracy": float(np.mean(y_true == y_pred))}
    errors = y_pred.astype(float) - y_true.astype(float)
    return {"rmse": float(np.sqrt(np.mean(errors**2))), "mae": float(np.mean(np.abs(errors)))}


def write(evaluation: Evaluation, out: Path) -> None:
    """Log metrics and plots with dvclive into ``out`` and the JSON reports beside them.

    dvclive writes into a staging folder inside ``out``; each file is then renamed into place,
    so a run killed midway leaves no torn metrics or plot file (see :func:`conveyor.io.atomic_path`).
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".evaluate-", dir=out))
    except OSError as exc:
        raise io.disk_error(out, exc) from None
    written: set[Path] = set()
    try:
        _log_with_dvclive(evaluation, staging)
        for staged in sorted(path for path in staging.rglob("*") if path.is_file()):
            written.add(out / staged.relative_to(staging))
            io.move_into_place(staged, out / staged.relative_to(staging))
    except (OSError, sqlite3.Error) as exc:
        # dvclive's writes (and the SQLite it opens) on a full or read-only disk: one line naming the folder.
        reason = exc if isinstance(exc, OSError) else OSError(0, str(exc))
        raise io.disk_error(out, reason) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    other_task = REGRESSION_PLOTS if evaluation.classes is not None else CLASSIFICATION_PLOTS
    for folder in other_task:
        io.write_text("[]\n", out / "plots" / folder / PLACEHOLDER)
        written.add(out / "plots" / folder / PLACEHOLDER)
    # The plots folder persists (dvc.yaml): what an earlier run drew and this one did not (another
    # class, the other task's curves) goes only now that every new file is in place.
    io.remove_others(out / "plots", keep=written)
    io.write_json(evaluation.importance, out / "importance.json")
    io.write_json({"slices": evaluation.slices}, out / "slices.json")


def _log_with_dvclive(evaluation: Evaluation, staging: Path) -> None:
    with Live(dir=str(staging), dvcyaml=None, save_dvc_exp=False, report=None) as live:
        for name, value in evaluation.metrics.items():
            live.log_metric(name, value, plot=False)
        if evaluation.classes is not None and evaluation.proba is not None:
            _classification_plots(live, evaluation.y_true, evaluation.y_pred, evaluation.proba, evaluation.classes)
        else:
            _regression_plots(live, evaluation.y_true, evaluation.y_pred)
        live.log_plot(
            "importance",
            [{"feature": k, "importance": v["mean"]} for k, v in evaluation.importance.items()],
            x="importance",
            y="feature",
        )


def _classification_plots(
    live: Live, y_true: NDArray[Any], y_pred: NDArray[Any], proba: NDArray[np.float64], classes: list[str]
) -> None:
    live.log_sklearn_plot("confusion_matrix", y_true.tolist(), y_pred.tolist(), name="confusion_matrix/test.json")
    for index, label in enumerate(classes):
        is_label = (y_true == label).astype(int)
        scores = proba[:, index]
        name = _file_name(label)
        fpr, tpr, thresholds = roc_curve(is_label, scores)
        # roc_curve starts at threshold +inf ("nothing is positive"), which JSON cannot hold
        # (dvclive would write a bare `Infinity`); no probability exceeds 1, so 1.0 means the same.
        roc = [
            {"fpr": float(f), "tpr": float(t), "threshold": float(min(h, 1.0))}
            for f, t, h in zip(fpr, tpr, thresholds, strict=True)
        ]
        live.log_plot(f"roc/{name}", roc, x="fpr", y="tpr")
        live.log_sklearn_plot("precision_recall", is_label, scores, name=f"precision_recall/{name}.json")
        live.log_sklearn_plot("calibration", is_label, scores, name=f"calibration/{name}.json", n_bins=5)


def _regression_plots(live: Live, y_true: NDArray[Any], y_pred: NDArray[Any]) -> None:
    actual = y_true.astype(float)
    predicted = y_pred.astype(float)
    points = [
        {"actual": float(a), "predicted": float(p), "residual": float(p - a)}
        for a, p in zip(actual, predicted, strict=True)
    ]
    live.log_plot(
        "predicted_vs_actual/test", points, x="actual", y="predicted", template="scatter", title="Predicted vs actual"
    )
    live.log_plot("residuals/test", points, x="predicted", y="residual", template="scatter", title="Residuals")


def _file_name(label: str) -> str:
    # Class labels come from the data; keep them from escaping their plot folder.
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label).lstrip(".") or "_"


def run(cfg: Config, *, model_path: Path, test: Path, out: Path) -> Evaluation:
    """Evaluate the saved model on the saved test split and write everything under ``out``.

    ``<out>/evaluation.json`` ties the metrics to the exact model and test files they came from.
    """
    model_sha256, test_sha256 = io.file_sha256(model_path), io.file_sha256(test)
    evaluation = evaluate(io.load_model(model_path), io.read_table(test), cfg)
    write(evaluation, out)
    record = EvaluationRecord(model_sha256=model_sha256, test_sha256=test_sha256, metrics=evaluation.metrics)
    io.write_artifact(record, out / "evaluation.json")
    return evaluation
