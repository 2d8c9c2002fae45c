"""The one prediction path: evaluate, the gate and the service all predict through here."""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.pipeline import Pipeline

from conveyor.model.features import model_frame, spec_of

__all__ = ["predict", "predict_proba"]


def predict(model: Pipeline, df: pd.DataFrame) -> NDArray[np.generic]:
    """Predicted labels (classification) or values (regression).

    Parameters
    ----------
    model : a fitted Conveyor pipeline
    df : DataFrame of shape (n_samples, >= n_features); columns beyond the features are ignored.

    Returns
    -------
    ndarray of shape (n_samples,)
    """
    return np.asarray(model.predict(model_frame(df, spec_of(model))))


def predict_proba(model: Pipeline, df: pd.DataFrame) -> NDArray[np.float64]:
    """Class probabilities of shape (n_samples, n_classes), columns in ``model.classes_`` order."""
    return np.asarray(model.predict_proba(model_frame(df, spec_of(model))), dtype=np.float64)
