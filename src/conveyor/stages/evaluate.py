"""evaluate: metrics, plots, permutation importance and per-slice metrics on the test split.

Everything written here is a function of the model and the test split: no timings (``make
bench`` measures speed), so re-running on the same inputs rewrites the same bytes. Every file is
bounded whatever the split's size, since the reports and plots are tracked in git: curves keep at
most ``evaluate.plot_points`` points, the confusion matrix is one count per cell, and permutation
importance runs on a seeded sample of at most ``evaluate.importance_rows`` rows.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from dvclive.live import Live
from numpy.typing import NDArray
from sklearn.inspection import permutation_importance
from sklearn.metrics import balanced_accuracy_score, precision_recall_curve, roc_curve
from sklearn.pipeline import Pipeline

from conveyor import io
from conveyor.artifacts import EvaluationRecord, ImportanceSample
from conveyor.config import Config
from conveyor.model.features import MISSING_CATEGORY, model_frame, spec_of, target_values
from conveyor.model.metrics import classification_metrics, regression_metrics
from conveyor.model.predict import predict, predict_proba

__all__ = [
    "CLASSIFICATION_PLOTS",
    "PLACEHOLDER",
    "REGRESSION_PLOTS",
    "Evaluation",
    "bounded_curve",
    "confusion_counts",
    "evaluate",
    "importance",
    "run",
    "slices",
    "write",
]

# Every plot in dvc.yaml is a folder under <out>/plots. Each task fills its own folders; write()
# puts the placeholder in the other task's (see conveyor.io.PLOT_PLACEHOLDER).
PLACEHOLDER = io.PLOT_PLACEHOLDER
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
    importance_sample: ImportanceSample
    slices: list[dict[str, Any]]
    plot_points: int
    seed: int


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
    scores, sample = importance(model, test, cfg)
    return Evaluation(
        metrics=metrics,
        y_true=y_true,
        y_pred=y_pred,
        proba=proba,
        classes=classes,
        importance=scores,
        importance_sample=sample,
        slices=slices(model, test, y_true, y_pred, cfg),
        plot_points=cfg.evaluate.plot_points,
        seed=cfg.split.seed,
    )


def importance(
    model: Pipeline, test: pd.DataFrame, cfg: Config
) -> tuple[dict[str, dict[str, float]], ImportanceSample]:
    """Permutation importance of each input column (the score lost when it is shuffled), and its rows.

    The model is scored ``importance_repeats`` times per column, so a test split over
    ``evaluate.importance_rows`` rows is sampled (without replacement, seeded by ``split.seed``).
    Classification scores balanced accuracy on integer-coded labels: scikit-learn's metrics sort
    the labels on every call, and sorting strings is most of the time on a large sample.
    """
    spec = spec_of(model)
    seed, repeats = cfg.split.seed, cfg.evaluate.importance_repeats
    sample = ImportanceSample(
        rows=min(len(test), cfg.evaluate.importance_rows), test_rows=len(test), repeats=repeats, seed=seed
    )
    if sample.rows < len(test):
        test = test.iloc[np.sort(np.random.default_rng(seed).choice(len(test), size=sample.rows, replace=False))]
    y = target_values(test, cfg.data.target, task=cfg.task)
    scoring: str | Callable[[Pipeline, pd.DataFrame, NDArray[Any]], float] = "neg_root_mean_squared_error"
    if cfg.task == "classification":
        # The model's classes, then any label of the sample it never saw (scored as always missed).
        labels = [*model.classes_, *sorted(set(pd.unique(y)) - set(model.classes_))]
        y, scoring = _codes(y, labels), _balanced_accuracy(labels)
    result = permutation_importance(
        model, model_frame(test, spec), y, scoring=scoring, n_repeats=repeats, random_state=seed
    )
    ranked = sorted(
        zip(spec.columns, result.importances_mean, result.importances_std, strict=True), key=lambda r: -r[1]
    )
    return {name: {"mean": float(mean), "std": float(std)} for name, mean, std in ranked}, sample


def _balanced_accuracy(labels: list[Any]) -> Callable[[Pipeline, pd.DataFrame, NDArray[Any]], float]:
    """A scorer of the model's balanced accuracy against labels coded as indices into ``labels``."""

    def score(estimator: Pipeline, X: pd.DataFrame, y_codes: NDArray[Any]) -> float:  # noqa: N803 (scikit-learn's name)
        return float(balanced_accuracy_score(y_codes, _codes(estimator.predict(X), labels)))

    return score


def _codes(values: NDArray[Any], labels: list[Any]) -> NDArray[np.int64]:
    """Each value's index in ``labels`` (every value must be one of them)."""
    return np.asarray(pd.Categorical(values, categories=labels).codes, dtype=np.int64)


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
    task = "classification" if evaluation.classes is not None else "regression"
    for folder in other_task:
        io.write_plot_placeholder(out / "plots" / folder, f"No plot: the model is a {task} model.")
        written.add(out / "plots" / folder / io.PLOT_PLACEHOLDER)
    # The plots folder persists (dvc.yaml): what an earlier run drew and this one did not (another
    # class, the other task's curves) goes only now that every new file is in place.
    io.remove_others(out / "plots", keep=written)
    io.write_json(evaluation.importance, out / "importance.json")
    io.write_json({"slices": evaluation.slices}, out / "slices.json")


def _log_with_dvclive(evaluation: Evaluation, staging: Path) -> None:
    with Live(dir=str(staging), dvcyaml=None, save_dvc_exp=False, report=None) as live:
        for name, value in evaluation.metrics.items():
            live.log_metric(name, value, plot=False)
        limit = evaluation.plot_points
        if evaluation.classes is not None and evaluation.proba is not None:
            _classification_plots(
                live, evaluation.y_true, evaluation.y_pred, evaluation.proba, evaluation.classes, limit=limit
            )
        else:
            _regression_plots(live, evaluation.y_true, evaluation.y_pred, limit=limit, seed=evaluation.seed)
        live.log_plot(
            "importance",
            [{"feature": k, "importance": v["mean"]} for k, v in evaluation.importance.items()],
            x="importance",
            y="feature",
        )


def _classification_plots(
    live: Live,
    y_true: NDArray[Any],
    y_pred: NDArray[Any],
    proba: NDArray[np.float64],
    classes: list[str],
    *,
    limit: int,
) -> None:
    plots = Path(live.plots_dir) / "sklearn"
    # DVC's confusion template counts rows; one row per cell with its count keeps the file's size
    # to classes², and the template sums the counts.
    cells = confusion_counts(y_true, y_pred, classes)
    io.write_text(json.dumps(cells, indent=2) + "\n", plots / "confusion_matrix" / "test.json")
    for index, label in enumerate(classes):
        is_label = (y_true == label).astype(int)
        scores = proba[:, index]
        name = _file_name(label)
        fpr, tpr, thresholds = roc_curve(is_label, scores)
        # roc_curve starts at threshold +inf ("nothing is positive"), which JSON cannot hold
        # (dvclive would write a bare `Infinity`); no probability exceeds 1, so 1.0 means the same.
        kept = bounded_curve(fpr, tpr, limit)
        roc = [
            {"fpr": float(f), "tpr": float(t), "threshold": float(min(h, 1.0))}
            for f, t, h in zip(fpr[kept], tpr[kept], thresholds[kept], strict=True)
        ]
        live.log_plot(f"roc/{name}", roc, x="fpr", y="tpr")
        # As dvclive's own precision_recall plot writes it (one point per threshold), thinned.
        precision, recall, cut = precision_recall_curve(is_label, scores)
        precision, recall = precision[: len(cut)], recall[: len(cut)]
        kept = bounded_curve(recall, precision, limit)
        points = [
            {"precision": float(p), "recall": float(r), "threshold": float(t)}
            for p, r, t in zip(precision[kept], recall[kept], cut[kept], strict=True)
        ]
        io.write_json({"precision_recall": points}, plots / "precision_recall" / f"{name}.json")
        live.log_sklearn_plot("calibration", is_label, scores, name=f"calibration/{name}.json", n_bins=5)


def confusion_counts(y_true: NDArray[Any], y_pred: NDArray[Any], classes: list[str]) -> list[dict[str, Any]]:
    """One ``{actual, predicted, count}`` per pair of labels, zero counts included, labels sorted."""
    seen = set(pd.unique(y_true)) | set(pd.unique(y_pred))
    labels = sorted({*classes, *(str(v) for v in seen)})
    n = len(labels)
    actual = _codes(np.asarray(y_true).astype(str), labels)
    predicted = _codes(np.asarray(y_pred).astype(str), labels)
    counts = np.bincount(actual * n + predicted, minlength=n * n)
    return [
        {"actual": labels[i // n], "predicted": labels[i % n], "count": int(count)} for i, count in enumerate(counts)
    ]


def bounded_curve(x: NDArray[Any], y: NDArray[Any], limit: int) -> NDArray[np.intp]:
    """Indices of at most ``limit`` points of the curve through ``(x, y)``, both ends included.

    The points are spread evenly along the curve's length (in the unit square of the ROC and
    precision-recall plots), so a stretch where thousands of thresholds sit close together keeps a
    few points while a long straight stretch keeps its ends: the curve drawn looks the same.
    """
    if len(x) <= limit:
        return np.arange(len(x))
    length = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
    chosen = np.searchsorted(length, np.linspace(0.0, length[-1], limit), side="left")
    return np.unique(np.concatenate([[0], np.minimum(chosen, len(x) - 1), [len(x) - 1]]))


def _regression_plots(live: Live, y_true: NDArray[Any], y_pred: NDArray[Any], *, limit: int, seed: int) -> None:
    actual = y_true.astype(float)
    predicted = y_pred.astype(float)
    # A scatter of every row would grow with the test split: a sample of rows (split.seed), in order.
    rows = np.arange(len(actual))
    if len(rows) > limit:
        rows = np.sort(np.random.default_rng(seed).choice(len(actual), size=limit, replace=False))
    points = [
        {"actual": float(a), "predicted": float(p), "residual": float(p - a)}
        for a, p in zip(actual[rows], predicted[rows], strict=True)
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
    if cfg.engine == "dask":
        from conveyor.engine import evaluate as dask_evaluate

        return dask_evaluate.run(cfg, model_path=model_path, test=test, out=out)
    model_sha256, test_sha256 = io.file_sha256(model_path), io.file_sha256(test)
    evaluation = evaluate(io.load_model(model_path), io.read_table(test), cfg)
    write(evaluation, out)
    record = EvaluationRecord(
        model_sha256=model_sha256,
        test_sha256=test_sha256,
        metrics=evaluation.metrics,
        importance=evaluation.importance_sample,
    )
    io.write_artifact(record, out / "evaluation.json")
    return evaluation
