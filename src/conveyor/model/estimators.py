"""Estimators the registry names that need a thin adapter to behave like scikit-learn's.

xgboost's classifier accepts only labels ``0 … n_classes - 1``; every other classifier in the
registry takes the labels as they are (``"Adelie"``) and reports them in ``classes_``, which the
metrics, the service and the ONNX converter read. :class:`XGBClassifier` encodes the labels for
xgboost and decodes its answers, and is otherwise xgboost's own class (same parameters, same
booster), so tuning and saving treat it like any other estimator.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xgboost
from numpy.typing import ArrayLike, NDArray

__all__ = ["XGBClassifier"]


class XGBClassifier(xgboost.XGBClassifier):
    """``xgboost.XGBClassifier`` for labels of any type.

    Attributes
    ----------
    labels_ : ndarray of shape (n_classes,)
        The sorted distinct labels seen in ``fit``; xgboost's class ``i`` is ``labels_[i]``.
    """

    @property
    def classes_(self) -> NDArray[Any]:
        """The labels, in the order of ``predict_proba``'s columns."""
        labels: NDArray[Any] | None = getattr(self, "labels_", None)
        # While xgboost fits it checks its own encoded classes against this attribute.
        return np.arange(self.n_classes_) if labels is None else labels

    def fit(self, X: ArrayLike, y: ArrayLike, **kwargs: Any) -> XGBClassifier:  # noqa: N803 (scikit-learn's name)
        """Fit on ``y`` encoded as ``0 … n_classes - 1``; ``X`` of shape (n_samples, n_features)."""
        labels, encoded = np.unique(np.asarray(y), return_inverse=True)
        self.labels_ = None
        super().fit(X, encoded, **kwargs)
        self.labels_ = labels
        return self

    def predict(self, X: ArrayLike, **kwargs: Any) -> NDArray[Any]:  # noqa: N803
        """Labels of shape (n_samples,), in the type ``fit`` saw."""
        return np.asarray(self.classes_)[np.asarray(super().predict(X, **kwargs), dtype=np.intp)]
