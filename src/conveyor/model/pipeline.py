"""The one ``Pipeline`` (features + estimator) every model is; estimators come from the registry."""

from __future__ import annotations

import inspect

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.compose import TransformedTargetRegressor
from sklearn.pipeline import Pipeline

from conveyor.config import FeaturesConfig, ModelConfig
from conveyor.model.features import FeatureSpec, build_preprocessor
from conveyor.model.registry import Task, check_estimator, estimator_class

__all__ = ["build_estimator", "build_pipeline"]


def build_estimator(task: Task, cfg: ModelConfig, *, seed: int) -> BaseEstimator:
    """An unfitted estimator from the registry with ``model.params`` applied.

    An estimator that draws random numbers gets ``random_state=seed`` unless ``model.params``
    sets one: the same data and params must give the same model, byte for byte. With
    ``model.target_transform: log`` it is wrapped in a ``TransformedTargetRegressor``.
    """
    check_estimator(task, cfg.estimator, cfg.params)
    cls = estimator_class(task, cfg.estimator)
    params = dict(cfg.params)
    if "random_state" in inspect.signature(cls).parameters:
        params.setdefault("random_state", seed)
    estimator = cls(**params)
    if cfg.target_transform == "log":
        # Fitted on log(y) and answering exp() of it: a strictly positive target stays positive.
        # The wrapper is a registered type (skops trusts it; ONNX falls back, saying why).
        return TransformedTargetRegressor(regressor=estimator, func=np.log, inverse_func=np.exp, check_inverse=False)
    return estimator


def build_pipeline(
    spec: FeatureSpec, features: FeaturesConfig, model: ModelConfig, *, task: Task, seed: int
) -> Pipeline:
    """The unfitted model: ``Pipeline([("features", ColumnTransformer), ("estimator", …)])``."""
    return Pipeline(
        [
            ("features", build_preprocessor(spec, features, seed=seed)),
            ("estimator", build_estimator(task, model, seed=seed)),
        ]
    )
