"""Feature columns and their (unfitted) preparation, built from ``params.yaml`` and the contract.

The preparation lives inside the model's ``Pipeline`` so that serving can never skew from
training. What stays outside is :func:`model_frame`: putting columns in order with canonical
dtypes, the one step every caller (train, evaluate, the service) takes before the pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from conveyor.config import Derived, FeaturesConfig, derived_columns
from conveyor.contract import Contract
from conveyor.errors import ConfigError, DataError

# pandas and scikit-learn are imported where they are used: the service's own process reads a
# FeatureSpec from here and never builds or runs a pipeline (scikit-learn is a second of its start).
if TYPE_CHECKING:
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

__all__ = [
    "INPUT_KINDS",
    "MISSING_CATEGORY",
    "NO_ONNX_KINDS",
    "FeatureSpec",
    "InputKind",
    "build_preprocessor",
    "is_bool_column",
    "model_frame",
    "resolve_features",
    "rows_frame",
    "spec_from_card",
    "spec_of",
    "target_values",
]

# Missing categories travel as this string rather than NaN: string tensors (ONNX) have no NaN,
# and as a value of its own the encoder can learn that "missing" carries information.
MISSING_CATEGORY = "__missing__"

# What a derived feature's input column holds, as the pipeline receives it (see model_frame).
InputKind = Literal["number", "category", "text", "datetime"]
INPUT_KINDS: dict[str, InputKind] = {
    "date_parts": "datetime",
    "ratio": "number",
    "difference": "number",
    "log": "number",
    "power": "number",
    "bins": "number",
    "text": "text",
    "target_encoding": "category",
    "missing_indicator": "number",
}
# Kinds with no ONNX converter (date parts parse strings, which ONNX cannot): such a model is
# served by scikit-learn, and the package report says which feature is why. Ratio, difference,
# log and the missing indicator have converters in conveyor.model.onnx.
NO_ONNX_KINDS = frozenset({"date_parts"})


@dataclass(frozen=True)
class FeatureSpec:
    """The model's input columns, by kind, in the order the pipeline sees them.

    ``numeric`` and ``categorical`` feed the prepared-as-is branches; ``extra`` are the columns
    only ``features.derived`` reads, each with what it holds (:data:`InputKind`).
    """

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    extra: tuple[tuple[str, InputKind], ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        """All input columns: numeric, then categorical, then the derived features' own."""
        return self.numeric + self.categorical + tuple(name for name, _ in self.extra)

    def kind_of(self, column: str) -> InputKind:
        """What ``column`` holds as the pipeline takes it."""
        if column in self.numeric:
            return "number"
        if column in self.categorical:
            return "category"
        return dict(self.extra)[column]

    def columns_of(self, kind: InputKind) -> tuple[str, ...]:
        """The input columns holding ``kind``, in :attr:`columns` order."""
        return tuple(column for column in self.columns if self.kind_of(column) == kind)


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
    extra = _derived_inputs(cfg.derived, contract, numeric=numeric, categorical=categorical)
    if not numeric and not categorical and not extra and not cfg.derived:
        raise ConfigError("features: no feature columns remain after removing the target and features.drop")
    return FeatureSpec(numeric=numeric, categorical=categorical, extra=extra)


def _derived_inputs(
    derived: Sequence[Derived], contract: Contract, *, numeric: Sequence[str], categorical: Sequence[str]
) -> tuple[tuple[str, InputKind], ...]:
    """The columns ``features.derived`` reads beyond ``numeric`` and ``categorical``, each checked against the contract."""
    extra: dict[str, InputKind] = {}
    for index, item in enumerate(derived):
        key = f"features.derived.{index}"
        kind = INPUT_KINDS[item.kind]
        for column in derived_columns(item):
            spec = contract.columns.get(column)
            if spec is None:
                raise ConfigError(f"{key}: {item.kind} reads {column!r}, which is not a column of the data contract")
            if (kind == "number") != spec.is_numeric:
                wanted = "a numeric" if kind == "number" else "a text, category or date"
                raise ConfigError(
                    f"{key}: {item.kind} needs {wanted} column; {column!r} is type {spec.type} in the data contract"
                )
            known = "number" if column in numeric else "category" if column in categorical else extra.get(column)
            if known is not None and known != kind:
                raise ConfigError(
                    f"{key}: {item.kind} reads {column!r} as {kind}, but the model already takes it as {known}"
                )
            if known is None:
                extra[column] = kind
    return tuple(extra.items())


def build_preprocessor(spec: FeatureSpec, cfg: FeaturesConfig, *, seed: int = 0) -> ColumnTransformer:
    """An unfitted ``ColumnTransformer``: a ``numeric`` and a ``categorical`` branch, and one step per ``features.derived``.

    ``seed`` seeds the derived steps that draw random numbers (target encoding's folds).
    """
    from sklearn.compose import ColumnTransformer

    transformers: list[tuple[str, Any, list[str] | str]] = []
    if spec.numeric:
        transformers.append(("numeric", _numeric_branch(cfg), list(spec.numeric)))
    if spec.categorical:
        transformers.append(("categorical", _categorical_branch(cfg), list(spec.categorical)))
    for index, item in enumerate(cfg.derived):
        columns = list(derived_columns(item))
        # Vectorizers take one column of strings (1-D), which a scalar column name selects.
        transformers.append(
            (
                derived_name(item, index),
                _derived_branch(item, cfg, seed=seed),
                columns[0] if item.kind == "text" else columns,
            )
        )
    # Dense output: HistGradientBoosting refuses sparse input, and TF-IDF (the one sparse step) is
    # bounded by max_features. Set only with text, so a model without it keeps its bytes.
    dense = {"sparse_threshold": 0.0} if any(item.kind == "text" for item in cfg.derived) else {}
    return ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=True, **dense)


def derived_name(item: Derived, index: int) -> str:
    """The ``ColumnTransformer`` step of ``features.derived[index]``: ``<kind>_<index>`` (``log_0``)."""
    return f"{item.kind}_{index}"


def _imputer(cfg: FeaturesConfig) -> Any:
    from sklearn.impute import SimpleImputer

    if cfg.numeric_imputation == "zero":
        return SimpleImputer(strategy="constant", fill_value=0.0, keep_empty_features=True)
    return SimpleImputer(strategy=cfg.numeric_imputation, keep_empty_features=True)


def _scaled(cfg: FeaturesConfig) -> list[tuple[str, object]]:
    from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

    scalers = {"standard": StandardScaler, "minmax": MinMaxScaler, "robust": RobustScaler}
    return [] if cfg.scaling == "none" else [("scale", scalers[cfg.scaling]())]


def _numeric_branch(cfg: FeaturesConfig) -> Pipeline:
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline

    imputer = (
        SimpleImputer(strategy="constant", fill_value=0.0)
        if cfg.numeric_imputation == "zero"
        else SimpleImputer(strategy=cfg.numeric_imputation)
    )
    steps: list[tuple[str, object]] = [("impute", imputer), *_scaled(cfg)]
    return Pipeline(steps)


def _derived_branch(item: Derived, cfg: FeaturesConfig, *, seed: int) -> Any:
    """The unfitted transformer of one derived feature: scikit-learn's own where it has one."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.impute import MissingIndicator
    from sklearn.model_selection import KFold
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import KBinsDiscretizer, PowerTransformer, TargetEncoder

    from conveyor.config import Bins, DateParts, Difference, Log, Power, Ratio, TargetEncoding, Text
    from conveyor.model import transformers

    if isinstance(item, DateParts):
        first: object = transformers.DateParts(parts=item.parts, cyclical=item.cyclical)
    elif isinstance(item, Ratio | Difference):
        first = transformers.TwoColumns(operation=item.kind)
    elif isinstance(item, Log):
        first = transformers.SignedLog()
    elif isinstance(item, Power):
        # Standardizes its output itself; NaN passes through to the imputer.
        return Pipeline([("power", PowerTransformer(method="yeo-johnson")), ("impute", _imputer(cfg))])
    elif isinstance(item, Bins):
        bins = KBinsDiscretizer(
            n_bins=item.n_bins,
            encode="onehot-dense",
            strategy=item.strategy,
            quantile_method="averaged_inverted_cdf",
            subsample=200_000,
            random_state=seed,
        )
        return Pipeline([("impute", _imputer(cfg)), ("bins", bins)])
    elif isinstance(item, Text):
        return TfidfVectorizer(max_features=item.max_features, ngram_range=(1, item.ngram_max), dtype=np.float64)
    elif isinstance(item, TargetEncoding):
        # Cross-fitted: fit_transform encodes each fold with the others' means, so training rows
        # never see their own label; transform (serving) uses the means of all of them.
        return TargetEncoder(cv=KFold(n_splits=item.cv, shuffle=True, random_state=seed))
    else:
        return MissingIndicator(features="all")
    return Pipeline([(item.kind, first), ("impute", _imputer(cfg)), *_scaled(cfg)])


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
    object dtype holding strings, missing values as ``MISSING_CATEGORY``; a derived feature's
    text column holds strings (missing: empty), its date column datetimes or the values as given
    (the date step parses them).
    """
    import pandas as pd

    missing = [c for c in spec.columns if c not in df.columns]
    if missing:
        raise DataError(f"the data lacks the model's feature columns {missing}")
    frame: dict[str, pd.Series] = {}
    for name in spec.columns:
        kind = spec.kind_of(name)
        if kind == "number":
            frame[name] = _numbers(df[name], name)
        elif kind == "category":
            column = df[name]
            # Text columns (the str dtype, or objects that are all strings) need no str() per value.
            is_text = (
                isinstance(column.dtype, pd.StringDtype) or pd.api.types.infer_dtype(column, skipna=True) == "string"
            )
            column = column.astype("object").where(column.notna(), MISSING_CATEGORY)
            frame[name] = column if is_text else column.map(str).astype("object")
        elif kind == "text":
            column = df[name].astype("object")
            frame[name] = column.where(column.notna(), "").map(str).astype("object")
        else:
            column = df[name]
            frame[name] = column if pd.api.types.is_datetime64_any_dtype(column) else column.astype("object")
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
    return spec_from_card(
        {name: [cols] if isinstance(cols, str) else list(cols) for name, _, cols in preprocessor.transformers}
    )


def spec_from_card(features: Mapping[str, Sequence[str]]) -> FeatureSpec:
    """The ``FeatureSpec`` of ``model.json``'s ``features``: each ``ColumnTransformer`` step and its columns.

    A derived step is named ``<kind>_<index>`` (:func:`derived_name`); its kind says what its
    columns hold.
    """
    numeric, categorical = tuple(features.get("numeric", ())), tuple(features.get("categorical", ()))
    extra: dict[str, InputKind] = {}
    for name, columns in features.items():
        if name in ("numeric", "categorical"):
            continue
        kind = INPUT_KINDS[name.rpartition("_")[0]]
        for column in columns:
            if column not in numeric and column not in categorical:
                extra.setdefault(column, kind)
    return FeatureSpec(numeric=numeric, categorical=categorical, extra=tuple(extra.items()))


def derived_kinds(spec_features: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    """The kinds of the derived steps among ``model.json``'s ``features`` (their order kept)."""
    return tuple(name.rpartition("_")[0] for name in spec_features if name not in ("numeric", "categorical"))


def target_values(df: pd.DataFrame, target: str, *, task: str) -> np.ndarray:
    """The label column as the estimator sees it: strings (classification) or float64 (regression).

    True/false labels (a ``bool`` target, or labels read as booleans) are ``"false"`` and
    ``"true"``, as JSON spells them, whatever the table's dtype.

    Returns
    -------
    ndarray of shape (n_samples,)
    """
    import pandas as pd

    if task == "classification":
        labels = df[target]
        if is_bool_column(labels):
            return labels.map(lambda v: "true" if v else "false").to_numpy(dtype=object)
        return labels.astype(str).to_numpy(dtype=object)
    return pd.to_numeric(df[target], errors="raise").to_numpy(dtype="float64")


def is_bool_column(column: pd.Series) -> bool:
    """Whether ``column`` holds true/false values only: a bool dtype, or objects that are all booleans."""
    import numpy as np
    import pandas as pd

    if pd.api.types.is_bool_dtype(column):
        return True
    values = column.dropna()
    return column.dtype == object and len(values) > 0 and all(isinstance(v, (bool, np.bool_)) for v in values)


def rows_frame(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    """Validated records (as dicts, ``None`` for null) as a DataFrame with every column, in ``columns`` order.

    Built column by column so a column that is null in every record still exists (as object
    dtype) instead of vanishing or turning into an all-NaN float column of the wrong kind;
    :func:`model_frame` then gives each column its canonical dtype.
    """
    import pandas as pd

    return pd.DataFrame({column: pd.Series([row[column] for row in rows], dtype="object") for column in columns})
