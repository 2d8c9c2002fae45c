"""What ``params.yaml`` may name: the estimators and metrics of each task.

Kept free of scikit-learn imports so that loading the config (which checks these names) costs
milliseconds: every stage is its own process, and the stages that never fit a model (ingest,
validate) should not pay seconds of imports to check ``model.estimator``. An estimator class is
imported only when it is needed, and then only its own module.
"""

from __future__ import annotations

import importlib
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
        "lightgbm": "lightgbm:LGBMClassifier",
        "xgboost": "conveyor.model.estimators:XGBClassifier",
    },
    "regression": {
        "ridge": "sklearn.linear_model:Ridge",
        "random_forest": "sklearn.ensemble:RandomForestRegressor",
        "hist_gradient_boosting": "sklearn.ensemble:HistGradientBoostingRegressor",
        "lightgbm": "lightgbm:LGBMRegressor",
        "xgboost": "xgboost:XGBRegressor",
    },
}

# Keyword arguments an estimator takes through ``**kwargs`` (so ``get_params`` does not list them)
# that params.yaml may set: lightgbm logs a warning per tree unless ``verbose: -1``.
EXTRA_PARAMETERS: dict[str, frozenset[str]] = {"lightgbm": frozenset({"verbose"})}

# What the tune stage searches when ``tune.space`` is empty, per estimator (both tasks): ranges
# that are sensible on small and medium tables, in the form ``tune.space`` takes.
DEFAULT_SPACES: dict[str, dict[str, dict[str, Any]]] = {
    "logistic_regression": {"C": {"low": 1e-3, "high": 1e2, "log": True}},
    "ridge": {"alpha": {"low": 1e-3, "high": 1e3, "log": True}},
    "random_forest": {
        "n_estimators": {"low": 50, "high": 300},
        "max_depth": {"low": 2, "high": 16},
        "min_samples_leaf": {"low": 1, "high": 10},
    },
    "hist_gradient_boosting": {
        "learning_rate": {"low": 0.01, "high": 0.3, "log": True},
        "max_leaf_nodes": {"low": 8, "high": 64},
        "l2_regularization": {"low": 1e-6, "high": 10.0, "log": True},
    },
    "lightgbm": {
        "n_estimators": {"low": 50, "high": 400},
        "learning_rate": {"low": 0.01, "high": 0.3, "log": True},
        "num_leaves": {"low": 8, "high": 64},
        "min_child_samples": {"low": 5, "high": 50},
        "reg_lambda": {"low": 1e-6, "high": 10.0, "log": True},
    },
    "xgboost": {
        "n_estimators": {"low": 50, "high": 400},
        "learning_rate": {"low": 0.01, "high": 0.3, "log": True},
        "max_depth": {"low": 2, "high": 8},
        "min_child_weight": {"low": 1.0, "high": 10.0},
        "reg_lambda": {"low": 1e-6, "high": 10.0, "log": True},
    },
}

# The scikit-learn estimators' keyword arguments, so that loading params.yaml checks
# ``model.params`` without importing scikit-learn (2 s in every stage process). A test compares
# this table with the installed classes; an estimator missing here is inspected on import instead.
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


def estimator_parameters(task: Task, name: str) -> frozenset[str]:
    """The keyword arguments the estimator registered as ``name`` accepts.

    From :data:`PARAMETERS` when the class is listed there (no import); else from ``get_params``
    rather than the ``__init__`` signature: xgboost's classes declare their parameters on a base
    class and take ``**kwargs`` in their own ``__init__``.
    """
    path = ESTIMATORS[task][name]
    declared = PARAMETERS.get(path) or frozenset(estimator_class(task, name)().get_params(deep=False))
    return declared | EXTRA_PARAMETERS.get(name, frozenset())


def check_estimator_name(task: Task, name: str) -> None:
    """Raise ``ValueError`` naming ``model.estimator`` if ``name`` is not registered for ``task`` (imports nothing)."""
    registry = ESTIMATORS[task]
    if name not in registry:
        raise ValueError(f"model.estimator: {name!r} is not a {task} estimator; expected one of {sorted(registry)}")


def check_estimator(task: Task, name: str, params: Mapping[str, Any], *, where: str = "model.params") -> None:
    """Raise ``ValueError`` naming ``model.estimator`` or ``<where>.<key>`` if either is unusable.

    ``where`` is the params section being checked: ``model.params``, or ``tune.space`` for the
    parameters a study searches.
    """
    check_estimator_name(task, name)
    accepted = estimator_parameters(task, name)
    unknown = sorted(set(params) - accepted)
    if unknown:
        class_name = ESTIMATORS[task][name].partition(":")[2]
        raise ValueError(f"{where}.{unknown[0]}: not a parameter of {class_name}; expected some of {sorted(accepted)}")
