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

# Each estimator's keyword arguments, so that loading params.yaml checks ``model.params`` without
# importing scikit-learn (2 s in every stage process). A test compares this table with the
# installed classes' signatures; an estimator missing here is inspected on import instead.
PARAMETERS: dict[str, frozenset[str]] = {
    "sklearn.ensemble:HistGradientBoostingClassifier": frozenset(
        {
            "categorical_features",
            "class_weight",
            "early_stopping",
            "interaction_cst",
            "l2_regularization",
            "learning_rate",
            "loss",
            "max_bins",
            "max_depth",
            "max_features",
            "max_iter",
            "max_leaf_nodes",
            "min_samples_leaf",
            "monotonic_cst",
            "n_iter_no_change",
            "random_state",
            "scoring",
            "tol",
            "validation_fraction",
            "verbose",
            "warm_start",
        }
    ),
    "sklearn.ensemble:HistGradientBoostingRegressor": frozenset(
        {
            "categorical_features",
            "early_stopping",
            "interaction_cst",
            "l2_regularization",
            "learning_rate",
            "loss",
            "max_bins",
            "max_depth",
            "max_features",
            "max_iter",
            "max_leaf_nodes",
            "min_samples_leaf",
            "monotonic_cst",
            "n_iter_no_change",
            "quantile",
            "random_state",
            "scoring",
            "tol",
            "validation_fraction",
            "verbose",
            "warm_start",
        }
    ),
    "sklearn.ensemble:RandomForestClassifier": frozenset(
        {
            "bootstrap",
            "ccp_alpha",
            "class_weight",
            "criterion",
            "max_depth",
            "max_features",
            "max_leaf_nodes",
            "max_samples",
            "min_impurity_decrease",
            "min_samples_leaf",
            "min_samples_split",
            "min_weight_fraction_leaf",
            "monotonic_cst",
            "n_estimators",
            "n_jobs",
            "oob_score",
            "random_state",
            "verbose",
            "warm_start",
        }
    ),
    "sklearn.ensemble:RandomForestRegressor": frozenset(
        {
            "bootstrap",
            "ccp_alpha",
            "criterion",
            "max_depth",
            "max_features",
            "max_leaf_nodes",
            "max_samples",
            "min_impurity_decrease",
            "min_samples_leaf",
            "min_samples_split",
            "min_weight_fraction_leaf",
            "monotonic_cst",
            "n_estimators",
            "n_jobs",
            "oob_score",
            "random_state",
            "verbose",
            "warm_start",
        }
    ),
    "sklearn.linear_model:LogisticRegression": frozenset(
        {
            "C",
            "class_weight",
            "dual",
            "fit_intercept",
            "intercept_scaling",
            "l1_ratio",
            "max_iter",
            "n_jobs",
            "penalty",
            "random_state",
            "solver",
            "tol",
            "verbose",
            "warm_start",
        }
    ),
    "sklearn.linear_model:Ridge": frozenset(
        {"alpha", "copy_X", "fit_intercept", "max_iter", "positive", "random_state", "solver", "tol"}
    ),
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
    accepted = parameters(ESTIMATORS[task][name])
    unknown = sorted(set(params) - accepted)
    if unknown:
        class_name = ESTIMATORS[task][name].partition(":")[2]
        raise ValueError(
            f"model.params.{unknown[0]}: not a parameter of {class_name}; expected some of {sorted(accepted)}"
        )


def parameters(path: str) -> frozenset[str]:
    """The keyword arguments of the estimator at ``path`` (``module:Class``): from the table, else its signature."""
    if path in PARAMETERS:
        return PARAMETERS[path]
    module, _, attribute = path.partition(":")
    cls = getattr(importlib.import_module(module), attribute)
    return frozenset(inspect.signature(cls.__init__).parameters) - {"self"}
