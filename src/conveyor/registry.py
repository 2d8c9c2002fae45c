"""What ``params.yaml`` may name: the estimators and metrics of each task.

Kept free of scikit-learn imports so that loading the config (which checks these names) costs
milliseconds: every stage is its own process, and the stages that never fit a model (ingest,
validate) should not pay seconds of imports to check ``model.estimator``. An estimator class is
imported only when it is needed, and then only its own module.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from sklearn.base import BaseEstimator

Task = Literal["classification", "regression"]

ESTIMATORS: dict[Task, dict[str, str]] = {
    "classification": {
        "logistic_regression": "sklearn.linear_model:LogisticRegression",
        "random_forest": "sklearn.ensemble:RandomForestClassifier",
        "hist_gradient_boosting": "sklearn.ensemble:HistGradientBoostingClassifier",
    },
    "regression": {
        "ridge": "sklearn.linear_model:Ridge",
        "random_forest": "sklearn.ensemble:RandomForestRegressor",
        "hist_gradient_boosting": "sklearn.ensemble:HistGradientBoostingRegressor",
    },
}

HIGHER_IS_BETTER: dict[Task, dict[str, bool]] = {
    "classification": {
        "accuracy": True,
        "balanced_accuracy": True,
        "f1_macro": True,
        "precision_macro": True,
        "recall_macro": True,
        "roc_auc": True,
        "log_loss": False,
    },
    "regression": {"rmse": False, "mae": False, "r2": True},
}


def metric_names(task: Task) -> frozenset[str]:
    """The metrics computed for ``task``."""
    return frozenset(HIGHER_IS_BETTER[task])


def higher_is_better(task: Task, name: str) -> bool:
    """Whether a larger value of metric ``name`` is an improvement."""
    return HIGHER_IS_BETTER[task][name]


def estimator_class(task: Task, name: str) -> type[BaseEstimator]:
    """The scikit-learn class registered as ``name`` for ``task`` (imported on first use)."""
    module, _, attribute = ESTIMATORS[task][name].partition(":")
    cls: type[BaseEstimator] = getattr(importlib.import_module(module), attribute)
    return cls


def check_estimator(task: Task, name: str, params: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming ``model.estimator`` or ``model.params.<key>`` if either is unusable."""
    registry = ESTIMATORS[task]
    if name not in registry:
        raise ValueError(f"model.estimator: {name!r} is not a {task} estimator; expected one of {sorted(registry)}")
    cls = estimator_class(task, name)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ValueError(
            f"model.params.{unknown[0]}: not a parameter of {cls.__name__}; expected some of {sorted(accepted)}"
        )
