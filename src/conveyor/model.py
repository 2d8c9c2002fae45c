"""The estimator registry and the one ``Pipeline`` (features + estimator) every model is."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, Literal

from sklearn.base import BaseEstimator
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline

from conveyor.config import FeaturesConfig, ModelConfig
from conveyor.features import FeatureSpec, build_preprocessor

Task = Literal["classification", "regression"]

ESTIMATORS: dict[Task, dict[str, type[BaseEstimator]]] = {
    "classification": {
        "logistic_regression": LogisticRegression,
        "random_forest": RandomForestClassifier,
        "hist_gradient_boosting": HistGradientBoostingClassifier,
    },
    "regression": {
        "ridge": Ridge,
        "random_forest": RandomForestRegressor,
        "hist_gradient_boosting": HistGradientBoostingRegressor,
    },
}


def check_estimator(task: Task, name: str, params: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming ``model.estimator`` or ``model.params.<key>`` if either is unusable."""
    registry = ESTIMATORS[task]
    if name not in registry:
        raise ValueError(f"model.estimator: {name!r} is not a {task} estimator; expected one of {sorted(registry)}")
    accepted = set(inspect.signature(registry[name].__init__).parameters) - {"self"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ValueError(
            f"model.params.{unknown[0]}: not a parameter of {registry[name].__name__}; expected some of {sorted(accepted)}"
        )


def build_estimator(task: Task, cfg: ModelConfig) -> BaseEstimator:
    """An unfitted estimator from the registry with ``model.params`` applied."""
    check_estimator(task, cfg.estimator, cfg.params)
    return ESTIMATORS[task][cfg.estimator](**cfg.params)


def build_pipeline(spec: FeatureSpec, features: FeaturesConfig, model: ModelConfig, *, task: Task) -> Pipeline:
    """The unfitted model: ``Pipeline([("features", ColumnTransformer), ("estimator", …)])``."""
    return Pipeline([("features", build_preprocessor(spec, features)), ("estimator", build_estimator(task, model))])
