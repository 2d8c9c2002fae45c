"""Feature columns and their (unfitted) preparation, built from ``params.yaml`` and the contract.

The preparation lives inside the model's ``Pipeline`` so that serving can never skew from
training. What stays outside is :func:`model_frame`: putting columns in order with canonical
dtypes, the one step every caller (train, evaluate, the service) takes before the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from conveyor.config import FeaturesConfig
from conveyor.contract import Contract
from conveyor.errors import ConfigError, DataError

# pandas and scikit-learn are imported where they are used: the service's own process reads a
# FeatureSpec from here and never builds or runs a pipeline (scikit-learn is a second of its start).
if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

# Missing categories travel as this string rather than NaN: string tensors (ONNX) have no NaN,
# and as a value of its own the encoder can learn that "missing" carries information.
MISSING_CATEGORY = "__missing__"


@dataclass(frozen=True)
class FeatureSpec:
    """The model's input columns, by kind, in the order the pipeline sees them."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        """All input columns: numeric first, then categorical."""
        return self.numeric + self.categorical


def resolve_features(cfg: FeaturesConfig, contract: Contract, *, target: str) -> FeatureSpec:
    """The feature columns: those listed in ``features`` (null: the contract's), minus target and drop."""
    for key, names in (("numeric", cfg.numeric), ("categorical", cfg.categorical), ("drop", cfg.drop)):
        unknown = [name for name in names or () if name not in contract.columns]
        if unknown:
            raise ConfigError(f"features.{key}: columns not in the data contract: {unknown}")
    not_numeric = [name for name in cfg.numeric or () if not contract.columns[name].is_numeric]
    if not_numeric:
        raise ConfigError(f"features.numeric: columns are not numeric in the data contract: {not_numeric}")
    excluded = {target, *cfg.drop}
    # An explicit empty list means "none of this kind"; only null falls back to the contract.
    listed_numeric = contract.numeric_columns() if cfg.numeric is None else cfg.numeric
    listed_categorical = contract.categorical_columns() if cfg.categorical is None else cfg.categorical
    numeric = tuple(c for c in listed_numeric if c not in excluded)
    categorical = tuple(c for c in listed_categorical if c not in excluded)
    if not numeric and not categorical:
        raise ConfigError("features: no feature columns remain after removing the target and features.drop")
    return FeatureSpec(numeric=numeric, categorical=categorical)


def build_preprocessor(spec: FeatureSpec, cfg: FeaturesConfig) -> ColumnTransformer:
    """An unfitted ``ColumnTransformer`` with a ``numeric`` and a ``categorical`` branch."""
    from sklearn.compose import ColumnTransformer

    transformers: list[tuple[str, Pipeline, list[str]]] = []
    if spec.numeric:
        transformers.append(("numeric", _numeric_branch(cfg), list(spec.numeric)))
    if spec.categorical:
        transformers.append(("categorical", _categorical_branch(cfg), list(spec.categorical)))
    return ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=True)


def _numeric_branch(cfg: FeaturesConfig) -> Pipeline:
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

    imputer = (
        SimpleImputer(strategy="constant", fill_value=0.0)
        if cfg.numeric_imputation == "zero"
        else SimpleImputer(strategy=cfg.numeric_imputation)
    )
    scalers = {"standard": StandardScaler, "minmax": MinMaxScaler, "robust": RobustScaler}
    steps: list[tuple[str, object]] = [("impute", imputer)]
    if cfg.scaling != "none":
        steps.append(("scale", scalers[cfg.scaling]()))
    return Pipeline(steps)


def _categorical_branch(cfg: FeaturesConfig) -> Pipeline:
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    steps: list[tuple[str, object]] = []
    if cfg.categorical_imputation == "most_frequent":
        steps.append(("impute", SimpleImputer(missing_values=MISSING_CATEGORY, strategy="most_frequent")))
    if cfg.encoding == "onehot":
        steps.append(("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)))
    else:
        steps.append(("encode", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)))
    return Pipeline(steps)


def model_frame(df: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """The feature columns of ``df`` in pipeline order with canonical dtypes.

    Parameters
    ----------
    df : DataFrame of shape (n_samples, >= n_features); extra columns are ignored.

    Returns
    -------
    DataFrame of shape (n_samples, n_features): numeric columns float64, categorical columns
    object dtype holding strings, missing values as ``MISSING_CATEGORY``.
    """
    import pandas as pd

    missing = [c for c in spec.columns if c not in df.columns]
    if missing:
        raise DataError(f"the data lacks the model's feature columns {missing}")
    frame = {name: _numbers(df[name], name) for name in spec.numeric}
    for name in spec.categorical:
        column = df[name]
        # Text columns (the str dtype, or objects that are all strings) need no str() per value.
        is_text = isinstance(column.dtype, pd.StringDtype) or pd.api.types.infer_dtype(column, skipna=True) == "string"
        column = column.astype("object").where(column.notna(), MISSING_CATEGORY)
        frame[name] = column if is_text else column.map(str).astype("object")
    return pd.DataFrame(frame, index=df.index, columns=list(spec.columns))


def _numbers(column: pd.Series, name: str) -> pd.Series:
    import pandas as pd

    try:
        return pd.to_numeric(column, errors="raise").astype("float64")
    except (ValueError, TypeError):
        raise DataError(f"column {name!r}: the model takes numbers, the data has {column.dtype} values") from None


def spec_of(pipeline: Pipeline) -> FeatureSpec:
    """The ``FeatureSpec`` a fitted or unfitted Conveyor pipeline was built for."""
    preprocessor = pipeline.named_steps["features"]
    columns = {name: tuple(cols) for name, _, cols in preprocessor.transformers}
    return FeatureSpec(numeric=columns.get("numeric", ()), categorical=columns.get("categorical", ()))


def target_values(df: pd.DataFrame, target: str, *, task: str) -> np.ndarray:
    """The label column as the estimator sees it: strings (classification) or float64 (regression).

    Returns
    -------
    ndarray of shape (n_samples,)
    """
    import pandas as pd

    if task == "classification":
        return df[target].astype(str).to_numpy(dtype=object)
    return pd.to_numeric(df[target], errors="raise").to_numpy(dtype="float64")
