"""Metrics for both tasks, checked against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conveyor.model.metrics import classification_metrics, regression_metrics
from conveyor.model.registry import higher_is_better, metric_names

CLASSIFICATION_KEYS = {
    "accuracy",
    "balanced_accuracy",
    "f1_macro",
    "precision_macro",
    "recall_macro",
    "roc_auc",
    "log_loss",
}


def test_binary_roc_auc_uses_the_second_class_as_positive() -> None:
    y_true = np.array(["a", "b", "a", "b"], dtype=object)
    proba = np.array([[0.9, 0.1], [0.1, 0.9], [0.2, 0.8], [0.7, 0.3]])
    result = classification_metrics(y_true, np.array(["a", "b", "b", "a"], dtype=object), proba, ["a", "b"])
    # Pairs (positive b, negative a) ranked right: (0.9, 0.1), (0.9, 0.8), (0.3, 0.1); wrong: (0.3, 0.8).
    assert result["roc_auc"] == pytest.approx(0.75)
    assert result["accuracy"] == pytest.approx(0.5)
    expected_log_loss = -(math.log(0.9) + math.log(0.9) + math.log(0.2) + math.log(0.3)) / 4
    assert result["log_loss"] == pytest.approx(expected_log_loss)
    assert set(result) == CLASSIFICATION_KEYS


def test_multiclass_roc_auc_follows_the_classes_order() -> None:
    y_true = np.array(["x", "y", "z", "x", "y", "z"], dtype=object)
    proba = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]] * 2)
    right = classification_metrics(y_true, y_true, proba, ["x", "y", "z"])
    assert right["roc_auc"] == pytest.approx(1.0)
    assert right["f1_macro"] == pytest.approx(1.0)
    # The columns shifted by one against the classes: every class now ranks the wrong rows first.
    wrong = classification_metrics(y_true, y_true, proba[:, [1, 2, 0]], ["x", "y", "z"])
    assert wrong["roc_auc"] < 0.5


def test_macro_averages_weigh_classes_equally() -> None:
    y_true = np.array(["a"] * 8 + ["b"] * 2, dtype=object)
    y_pred = np.array(["a"] * 10, dtype=object)
    proba = np.tile([0.9, 0.1], (10, 1))
    result = classification_metrics(y_true, y_pred, proba, ["a", "b"])
    assert result["accuracy"] == pytest.approx(0.8)
    assert result["balanced_accuracy"] == pytest.approx(0.5)
    assert result["recall_macro"] == pytest.approx(0.5)
    assert result["precision_macro"] == pytest.approx(0.4)  # (0.8 + 0 for the never-predicted b) / 2


def test_regression_metrics() -> None:
    result = regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 5.0])
    assert result["rmse"] == pytest.approx(math.sqrt(4 / 3))
    assert result["mae"] == pytest.approx(2 / 3)
    assert result["r2"] == pytest.approx(1 - 4 / 2)


def test_directions() -> None:
    assert metric_names("classification") == CLASSIFICATION_KEYS
    assert metric_names("regression") == {"rmse", "mae", "r2"}
    assert higher_is_better("classification", "f1_macro")
    assert not higher_is_better("classification", "log_loss")
    assert not higher_is_better("regression", "rmse")
    assert higher_is_better("regression", "r2")
