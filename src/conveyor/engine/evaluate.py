"""evaluate with ``engine: dask``: metrics and slices summed over the test partitions, the rest on a sample.

Each partition is predicted in its own task and returns sums: a confusion matrix and the log
loss (classification), or squared and absolute errors and the target's moments (regression),
and the same per slice. These give every metric exactly over the whole test split except
``roc_auc``, which needs the scores ranked. That, the curves, the confusion-matrix and
calibration plots and permutation importance come from the pandas engine's own code
(:func:`conveyor.stages.evaluate.evaluate`) on the seeded sample of ``evaluate.importance_rows``
rows it draws (``reports/evaluation.json`` records its size under ``importance``): the same rows
the pandas engine takes for importance, so those agree exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
from distributed import Client
from numpy.typing import NDArray
from sklearn.pipeline import Pipeline

from conveyor import io
from conveyor.artifacts import EvaluationRecord
from conveyor.config import Config
from conveyor.engine import cluster, tables
from conveyor.model.features import MISSING_CATEGORY, spec_of, target_values
from conveyor.model.metrics import score
from conveyor.model.predict import predict, predict_proba
from conveyor.stages.evaluate import Evaluation, evaluate, write

__all__ = [
    "Sums",
    "classification_metrics",
    "evaluate_partitioned",
    "metrics_partitioned",
    "regression_metrics",
    "run",
    "sample_rows",
    "score_test_split",
    "sums",
]


@dataclasses.dataclass
class Sums:
    """One partition's contribution: ``pairs`` counts (actual, predicted) or holds error sums, overall and per slice."""

    rows: int
    pairs: pd.Series
    log_loss: float
    slices: pd.DataFrame


def _slice_values(part: pd.DataFrame, column: str) -> NDArray[np.object_]:
    values = part[column].astype("object").where(part[column].notna(), MISSING_CATEGORY)
    return values.astype(str).to_numpy(dtype=object)


def sums(part: pd.DataFrame, model: Pipeline, cfg: Config) -> Sums:
    """Predict one partition and reduce it to :class:`Sums`."""
    y_true = target_values(part, cfg.data.target, task=cfg.task)
    y_pred = predict(model, part)
    if cfg.task == "classification":
        proba = predict_proba(model, part)
        index = {str(c): i for i, c in enumerate(model.classes_)}
        columns = np.asarray([index[str(v)] for v in y_true], dtype=np.intp)
        # scikit-learn's log_loss: rows scaled to sum to 1, then clipped at the dtype's eps.
        chosen = proba[np.arange(len(proba)), columns] / proba.sum(axis=1)
        loss = float(-np.log(np.clip(chosen, np.finfo(np.float64).eps, 1.0)).sum())
        pairs = pd.DataFrame({"actual": y_true.astype(str), "predicted": y_pred.astype(str)}).value_counts()
        row_values = pd.DataFrame({"hit": (y_true.astype(str) == y_pred.astype(str)).astype("float64")})
    else:
        actual, predicted = y_true.astype("float64"), y_pred.astype("float64")
        errors = predicted - actual
        pairs = pd.Series(
            {"sse": errors @ errors, "sae": np.abs(errors).sum(), "sy": actual.sum(), "syy": actual @ actual}
        )
        loss = 0.0
        row_values = pd.DataFrame({"se": errors**2, "ae": np.abs(errors)})
    per_slice = [
        row_values.assign(column=column, value=_slice_values(part, column), rows=1).groupby(["column", "value"]).sum()
        for column in spec_of(model).categorical
    ]
    return Sums(
        rows=len(part),
        pairs=pairs,
        log_loss=loss,
        slices=pd.concat(per_slice) if per_slice else pd.DataFrame(),
    )


def classification_metrics(confusion: pd.Series, log_loss: float, rows: int) -> dict[str, float]:
    """scikit-learn's macro metrics from counts of (actual, predicted) labels; ``log_loss`` is the summed loss."""
    labels = sorted(set(confusion.index.get_level_values(0)) | set(confusion.index.get_level_values(1)))
    matrix = (
        confusion.reindex(pd.MultiIndex.from_product([labels, labels]), fill_value=0)
        .to_numpy()
        .reshape(len(labels), -1)
    )
    hits = np.diag(matrix).astype("float64")
    actual, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    recall = np.divide(hits, actual, out=np.zeros_like(hits), where=actual > 0)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(hits), where=precision + recall > 0)
    return {
        "accuracy": float(hits.sum() / rows),
        "balanced_accuracy": float(recall[actual > 0].mean()),
        "f1_macro": float(f1.mean()),
        "precision_macro": float(precision.mean()),
        "recall_macro": float(recall.mean()),
        "log_loss": log_loss / rows,
    }


def regression_metrics(total: pd.Series, rows: int) -> dict[str, float]:
    """RMSE, MAE and R² from summed errors and target moments."""
    spread = total["syy"] - total["sy"] ** 2 / rows
    return {
        "rmse": float(np.sqrt(total["sse"] / rows)),
        "mae": float(total["sae"] / rows),
        "r2": float(1.0 - total["sse"] / spread) if spread > 0 else 0.0,
    }


def _slices(parts: list[Sums], cfg: Config) -> list[dict[str, Any]]:
    frames = [p.slices for p in parts if len(p.slices)]
    if not frames:
        return []
    table = pd.concat(frames).groupby(level=["column", "value"], sort=False).sum()
    rows = []
    for column in dict.fromkeys(table.index.get_level_values("column")):
        for value, row in table.xs(column, level="column").sort_index().iterrows():
            if row["rows"] < cfg.evaluate.min_slice_rows:
                continue
            n = row["rows"]
            measured = (
                {"accuracy": float(row["hit"] / n)}
                if cfg.task == "classification"
                else {"rmse": float(np.sqrt(row["se"] / n)), "mae": float(row["ae"] / n)}
            )
            rows.append({"column": column, "value": value, "rows": int(n), **measured})
    return rows


def _take(part: pd.DataFrame, positions: NDArray[np.intp]) -> pd.DataFrame:
    return part.iloc[positions]


def sample_rows(client: Client, df: dd.DataFrame, cfg: Config) -> tuple[pd.DataFrame, int]:
    """The rows the pandas engine's importance would sample from ``df`` (same seed, same positions), and the row count."""
    (lengths,) = cluster.compute(client, [dask.delayed(len)(part) for part in df.to_delayed()])
    total = int(sum(lengths))
    size = min(total, cfg.evaluate.importance_rows)
    chosen = np.arange(total)
    if size < total:
        chosen = np.sort(np.random.default_rng(cfg.split.seed).choice(total, size=size, replace=False))
    starts = np.cumsum([0, *lengths])
    takes = []
    for number, part in enumerate(df.to_delayed()):
        local = chosen[(chosen >= starts[number]) & (chosen < starts[number + 1])] - starts[number]
        if len(local):
            takes.append(dask.delayed(_take)(part, local))
    (pieces,) = cluster.compute(client, takes)
    return pd.concat(pieces, ignore_index=True), total


def evaluate_partitioned(client: Client, model: Pipeline, df: dd.DataFrame, cfg: Config) -> Evaluation:
    """The pandas engine's :class:`Evaluation`, its metrics and slices over every partition of ``df``."""
    summed, sample, total = _summed(client, model, df, cfg)
    on_sample = evaluate(model, sample, cfg)
    metrics = _metrics(summed, total, on_sample.metrics, cfg)
    importance_sample = on_sample.importance_sample.model_copy(update={"test_rows": total})
    return dataclasses.replace(
        on_sample, metrics=metrics, slices=_slices(summed, cfg), importance_sample=importance_sample
    )


def metrics_partitioned(client: Client, model: Pipeline, df: dd.DataFrame, cfg: Config) -> dict[str, float]:
    """The metrics :func:`evaluate_partitioned` gives ``model`` on ``df``, without importance, slices or
    plots: how gate scores the champion on the test split evaluate scored the candidate on."""
    summed, sample, total = _summed(client, model, df, cfg)
    return _metrics(summed, total, score(model, sample, target=cfg.data.target, task=cfg.task), cfg)


def _summed(client: Client, model: Pipeline, df: dd.DataFrame, cfg: Config) -> tuple[list[Sums], pd.DataFrame, int]:
    # Each partition's sums, the seeded sample the sums cannot give (ROC AUC, importance) and the row count.
    parts = [dask.delayed(sums)(part, model, cfg) for part in df.to_delayed()]
    sample, total = sample_rows(client, df, cfg)
    (summed,) = cluster.compute(client, parts)
    return list(summed), sample, total


def _metrics(summed: list[Sums], total: int, on_sample: Mapping[str, float], cfg: Config) -> dict[str, float]:
    # Every metric from the partitions' sums, but ROC AUC (a ranking, not a sum): from the sample.
    pairs = pd.concat([p.pairs for p in summed])
    if cfg.task == "regression":
        return regression_metrics(pairs.groupby(level=0).sum(), total)
    metrics = classification_metrics(pairs.groupby(level=[0, 1]).sum(), sum(p.log_loss for p in summed), total)
    metrics["roc_auc"] = on_sample["roc_auc"]
    return {name: metrics[name] for name in on_sample}


def score_test_split(cfg: Config, model: Pipeline, test: Path) -> dict[str, float]:
    """:func:`metrics_partitioned` of ``model`` on the test folder, on a cluster of its own (gate's, for the champion)."""
    with cluster.connect(cfg.dask, stage="gate") as client:
        return metrics_partitioned(client, model, tables.read_table(test), cfg)


def run(cfg: Config, *, model_path: Path, test: Path, out: Path) -> Evaluation:
    """Evaluate the saved model on the test folder across the cluster; write what the pandas engine writes."""
    model_sha256, test_sha256 = io.file_sha256(model_path), io.file_sha256(test)
    model = io.load_model(model_path)
    with cluster.connect(cfg.dask, stage="evaluate") as client:
        evaluation = evaluate_partitioned(client, model, tables.read_table(test), cfg)
    write(evaluation, out)
    record = EvaluationRecord(
        model_sha256=model_sha256,
        test_sha256=test_sha256,
        metrics=evaluation.metrics,
        importance=evaluation.importance_sample,
    )
    io.write_artifact(record, out / "evaluation.json")
    return evaluation
