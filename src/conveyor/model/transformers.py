"""The few feature transformers scikit-learn lacks, small enough to read in one go.

Each is a plain scikit-learn transformer (``__init__`` only stores, ``fit`` returns ``self``,
fitted attributes end in ``_``), so it lives inside the model's ``Pipeline`` and skops saves it;
the registry's :data:`conveyor.model.registry.PIPELINE_TYPES` trusts each by name. Everything
else the ``features.derived`` kinds need is scikit-learn's own (see :mod:`conveyor.model.features`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, TransformerMixin

__all__ = ["PERIODS", "DateParts", "SignedLog", "TwoColumns", "as_datetimes"]

# The period of each cyclical date part, and its first value: sin/cos of 2*pi*(value-first)/period.
PERIODS: dict[str, tuple[float, int]] = {"month": (12, 1), "dayofweek": (7, 0), "dayofyear": (366, 1), "hour": (24, 0)}
PARTS = ("year", "month", "day", "dayofweek", "dayofyear", "hour")
# pandas' accessor for each part (its ``dayofweek`` spelling is deprecated).
ACCESSORS = {"dayofweek": "day_of_week", "dayofyear": "day_of_year"}


def _column(X: Any) -> pd.Series:  # noqa: N803 (scikit-learn's name)
    """The single column of ``X`` (a DataFrame, Series or array of shape (n_samples, 1)) as a Series."""
    if isinstance(X, pd.DataFrame):
        return X.iloc[:, 0]
    if isinstance(X, pd.Series):
        return X
    array = np.asarray(X, dtype=object)
    return pd.Series(array.reshape(len(array), -1)[:, 0])


def as_datetimes(values: pd.Series) -> pd.Series:
    """``values`` (datetime64, or ISO 8601 strings, dates or datetimes) as UTC datetimes; NaT where missing or unparsable.

    A naive time is taken as UTC and an aware one converted to it, so a row's parts do not
    depend on the zone of the machine that predicts.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        return pd.to_datetime(values, utc=True)
    text = values.astype("object").map(
        lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
    )
    return pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")


class DateParts(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Calendar parts of one date column: year, month, day, day of week, day of year, hour.

    Parameters
    ----------
    parts : sequence of str
        Which of ``year``, ``month``, ``day``, ``dayofweek``, ``dayofyear``, ``hour``.
    cyclical : bool
        Also output ``<part>_sin`` and ``<part>_cos`` for each periodic part (:data:`PERIODS`).

    A missing or unparsable date gives NaN in every output; the pipeline imputes after this.
    """

    def __init__(self, *, parts: Sequence[str] = PARTS, cyclical: bool = True) -> None:
        self.parts = parts
        self.cyclical = cyclical

    def fit(self, X: Any, y: ArrayLike | None = None) -> DateParts:  # noqa: N803
        """Check ``parts``; ``X`` of shape (n_samples, 1)."""
        unknown = [part for part in self.parts if part not in PARTS]
        if unknown:
            raise ValueError(f"parts: unknown date parts {unknown}; expected some of {list(PARTS)}")
        self.n_features_in_ = 1
        return self

    def transform(self, X: Any) -> NDArray[np.float64]:  # noqa: N803
        """Float array of shape (n_samples, len(get_feature_names_out()))."""
        dates = as_datetimes(_column(X)).dt
        columns: list[NDArray[np.float64]] = []
        for part in self.parts:
            value = getattr(dates, ACCESSORS.get(part, part)).to_numpy(dtype="float64", na_value=np.nan)
            columns.append(value)
            if self.cyclical and part in PERIODS:
                period, first = PERIODS[part]
                angle = 2 * np.pi * (value - first) / period
                columns += [np.sin(angle), np.cos(angle)]
        return np.column_stack(columns) if columns else np.empty((len(dates.year), 0))

    def get_feature_names_out(self, input_features: ArrayLike | None = None) -> NDArray[np.object_]:
        """``<part>`` for each part, followed by ``<part>_sin``, ``<part>_cos`` for a periodic one."""
        names: list[str] = []
        for part in self.parts:
            names.append(part)
            if self.cyclical and part in PERIODS:
                names += [f"{part}_sin", f"{part}_cos"]
        return np.asarray(names, dtype=object)


class TwoColumns(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """The ratio (``a / b``) or the difference (``a - b``) of two numeric columns.

    Parameters
    ----------
    operation : ``"ratio"`` or ``"difference"``
        A ratio with ``b == 0`` is NaN (imputed after this), never infinite.
    """

    def __init__(self, *, operation: str = "ratio") -> None:
        self.operation = operation

    def fit(self, X: Any, y: ArrayLike | None = None) -> TwoColumns:  # noqa: N803
        """Check ``operation`` and that ``X`` has two columns."""
        if self.operation not in ("ratio", "difference"):
            raise ValueError(f"operation: {self.operation!r}; expected 'ratio' or 'difference'")
        if np.shape(X)[1] != 2:
            raise ValueError(f"expected 2 columns, got {np.shape(X)[1]}")
        self.n_features_in_ = 2
        return self

    def transform(self, X: Any) -> NDArray[np.float64]:  # noqa: N803
        """Float array of shape (n_samples, 1)."""
        values = np.asarray(X, dtype=np.float64)
        a, b = values[:, 0], values[:, 1]
        if self.operation == "difference":
            return (a - b).reshape(-1, 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(b == 0, np.nan, a / np.where(b == 0, 1.0, b))
        return ratio.reshape(-1, 1)

    def get_feature_names_out(self, input_features: ArrayLike | None = None) -> NDArray[np.object_]:
        """One name: ``ratio`` or ``difference``."""
        return np.asarray([self.operation], dtype=object)


class SignedLog(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """``sign(x) * log(1 + |x|)`` of each column: a log scale defined at 0 and below, monotonic."""

    def fit(self, X: Any, y: ArrayLike | None = None) -> SignedLog:  # noqa: N803
        """Nothing to learn; records the number of columns."""
        self.n_features_in_ = int(np.shape(X)[1])
        return self

    def transform(self, X: Any) -> NDArray[np.float64]:  # noqa: N803
        """Float array of the shape of ``X``."""
        values = np.asarray(X, dtype=np.float64)
        result: NDArray[np.float64] = np.sign(values) * np.log1p(np.abs(values))
        return result

    def get_feature_names_out(self, input_features: ArrayLike | None = None) -> NDArray[np.object_]:
        """``log`` for one column, ``log0``, ``log1``, … for several."""
        if self.n_features_in_ == 1:
            return np.asarray(["log"], dtype=object)
        return np.asarray([f"log{i}" for i in range(self.n_features_in_)], dtype=object)
