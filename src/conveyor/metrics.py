"""Metrics for both tasks (their names and directions live in :mod:`conveyor.registry`).

Evaluate, the gate (for the champion) and the report all compute or read metrics through
this module, so a metric means the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from sklearn import metrics as skm
from sklearn.pipeline import Pipeline

from conveyor.features import target_values
from conveyor.predict import predict, predict_proba
from conveyor.registry import Task


def classification_metrics(
    y_true: ArrayLike, y_pred: ArrayLike, proba: NDArray[np.float64], classes: Sequence[object]
) -> dict[str, float]:
    """Metrics of a classifier.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
    proba : ndarray of shape (n_samples, n_classes), columns in the order of ``classes``
    classes : the fitted classifier's ``classes_``
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = list(classes)
    if set(pd.unique(y_true)) | set(pd.unique(y_pred)) <= set(labels):
        # Integer codes give the same metrics: scikit-learn sorts the labels in every metric, and
        # sorting strings dominated the time on large test splits.
        y_true = pd.Categorical(y_true, categories=labels).codes.astype(np.int64)
        y_pred = pd.Categorical(y_pred, categories=labels).codes.astype(np.int64)
        labels = list(range(len(labels)))
    if len(labels) == 2:
        roc_auc = skm.roc_auc_score(y_true == labels[1], proba[:, 1])
    else:
        roc_auc = skm.roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=labels)
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, y_pred)),
        "f1_macro": float(skm.f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "precision_macro": float(skm.precision_score(y_true, y_pred, average="macro", zero_division=0)),
        "recall_macro": float(skm.recall_score(y_true, y_pred, average="macro", zero_division=0)),
        "roc_auc": float(roc_auc),
        "log_loss": float(skm.log_loss(y_true, proba, labels=labels)),
    }


def regression_metrics(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float]:
    """RMSE, MAE and R² of a regressor; both arrays of shape (n_samples,)."""
    return {
        "rmse": float(skm.root_mean_squared_error(y_true, y_pred)),
        "mae": float(skm.mean_absolute_error(y_true, y_pred)),
        "r2": float(skm.r2_score(y_true, y_pred)),
    }


def score(model: Pipeline, df: pd.DataFrame, *, target: str, task: Task) -> dict[str, float]:
    """All metrics of ``model`` on ``df`` (which holds the features and the target column)."""
    y_true = target_values(df, target, task=task)
    y_pred = predict(model, df)
    if task == "regression":
        return regression_metrics(y_true, y_pred)
    return classification_metrics(y_true, y_pred, predict_proba(model, df), model.classes_)
