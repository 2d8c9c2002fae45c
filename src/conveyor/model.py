"""The one ``Pipeline`` (features + estimator) every model is; estimators come from the registry."""

from __future__ import annotations

from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline

from conveyor.config import FeaturesConfig, ModelConfig
from conveyor.features import FeatureSpec, build_preprocessor
from conveyor.registry import Task, check_estimator, estimator_class


def build_estimator(task: Task, cfg: ModelConfig) -> BaseEstimator:
    """An unfitted estimator from the registry with ``model.params`` applied."""
    check_estimator(task, cfg.estimator, cfg.params)
    return estimator_class(task, cfg.estimator)(**cfg.params)


def build_pipeline(spec: FeatureSpec, features: FeaturesConfig, model: ModelConfig, *, task: Task) -> Pipeline:
    """The unfitted model: ``Pipeline([("features", ColumnTransformer), ("estimator", …)])``."""
    return Pipeline([("features", build_preprocessor(spec, features)), ("estimator", build_estimator(task, model))])
