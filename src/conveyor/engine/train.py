"""train with ``engine: dask``: feature statistics by aggregation, the estimator by ``xgboost.dask``.

The saved model is the pandas engine's kind of ``Pipeline``, so evaluate, the gate, packaging,
ONNX and serving take it unchanged: the ``ColumnTransformer`` is scikit-learn's own, built by
fitting it on a small frame holding every category, then given the statistics Dask computed
over the whole split (imputation values, scaler moments or quantiles); the estimator is the
registry's xgboost class holding the booster ``xgboost.dask`` trained across the workers.

Medians and the robust scaler's quartiles are Dask's approximate quantiles (exact on a single
partition); means, variances, minima, maxima, modes and categories are exact.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
from distributed import Client
from numpy.typing import NDArray
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from xgboost import dask as xgboost_dask

from conveyor import io
from conveyor.artifacts import TunedParams
from conveyor.config import Config, FeaturesConfig
from conveyor.contract import Contract
from conveyor.engine import cluster, ingest, tables
from conveyor.model.estimators import XGBClassifier
from conveyor.model.features import (
    MISSING_CATEGORY,
    FeatureSpec,
    build_preprocessor,
    model_frame,
    resolve_features,
    target_values,
)
from conveyor.model.pipeline import build_estimator
from conveyor.stages.train import model_card, with_tuned_params

__all__ = ["Statistics", "fit_features", "run", "statistics", "train"]

Floats = NDArray[np.float64]


@dataclass
class Statistics:
    """What the fitted feature steps hold, over the whole train split: per numeric column (in
    ``FeatureSpec.numeric`` order) the imputation value and the imputed column's moments,
    quartiles (robust scaling only); per categorical column its sorted categories and its mode
    (``most_frequent`` imputation only)."""

    rows: int = 0
    fill: Floats = field(default_factory=lambda: np.zeros(0))
    mean: Floats = field(default_factory=lambda: np.zeros(0))
    var: Floats = field(default_factory=lambda: np.zeros(0))
    low: Floats = field(default_factory=lambda: np.zeros(0))
    high: Floats = field(default_factory=lambda: np.zeros(0))
    quartiles: Floats | None = None
    categories: dict[str, list[str]] = field(default_factory=dict)
    modes: dict[str, str] = field(default_factory=dict)


def _frame(part: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    return model_frame(part, spec)


def statistics(client: Client, frame: dd.DataFrame, spec: FeatureSpec, cfg: FeaturesConfig) -> Statistics:
    """What the fitted feature steps hold, computed over the partitions of ``frame`` (a :func:`model_frame`)."""
    stats = Statistics()
    if spec.numeric:
        numeric = frame[list(spec.numeric)]
        stats.fill = _fill(client, numeric, cfg)
        filled = numeric.fillna(dict(zip(spec.numeric, stats.fill, strict=True)))
        moments = [filled.shape[0], filled.mean(), filled.var(ddof=0), filled.min(), filled.max()]
        if cfg.scaling == "robust":
            moments.append(filled.quantile([0.25, 0.5, 0.75]))
        computed = cluster.compute(client, *moments)
        stats.rows = int(computed[0])
        stats.mean, stats.var, stats.low, stats.high = (np.asarray(c, dtype="float64") for c in computed[1:5])
        if cfg.scaling == "robust":
            stats.quartiles = np.asarray(computed[5], dtype="float64")
    if spec.categorical:
        counts = _value_counts(client, frame, spec.categorical)
        for name, count in zip(spec.categorical, counts, strict=True):
            present = count
            if cfg.categorical_imputation == "most_frequent":
                # Imputed before encoding: the encoder never sees the missing category.
                present = count.drop(MISSING_CATEGORY, errors="ignore")
                # scikit-learn's most_frequent takes the smallest of tied values.
                stats.modes[name] = str(sorted(present[present == present.max()].index)[0])
            stats.categories[name] = sorted(str(v) for v in present.index)
    return stats


def _counts(part: pd.DataFrame, columns: tuple[str, ...]) -> list[pd.Series]:
    return [part[name].value_counts() for name in columns]


def _value_counts(client: Client, frame: dd.DataFrame, columns: tuple[str, ...]) -> list[pd.Series]:
    # Per partition, summed here: a few values per column, no shuffle between the workers.
    (parts,) = cluster.compute(client, [dask.delayed(_counts)(part, columns) for part in frame.to_delayed()])
    return [pd.concat([counts[i] for counts in parts]).groupby(level=0).sum() for i in range(len(columns))]


def _fill(client: Client, numeric: dd.DataFrame, cfg: FeaturesConfig) -> NDArray[np.float64]:
    if cfg.numeric_imputation == "zero":
        return np.zeros(len(numeric.columns))
    if cfg.numeric_imputation == "mean":
        (means,) = cluster.compute(client, numeric.mean())
        return np.asarray(means, dtype="float64")
    if cfg.numeric_imputation == "median":
        (medians,) = cluster.compute(client, numeric.quantile(0.5))
        return np.asarray(medians, dtype="float64")
    counts = _value_counts(client, numeric, tuple(numeric.columns))
    return np.asarray([sorted(c[c == c.max()].index)[0] for c in counts], dtype="float64")


def _scale(values: NDArray[np.float64]) -> NDArray[np.float64]:
    # scikit-learn's _handle_zeros_in_scale: a constant feature is left unscaled.
    return np.where(values < 10 * np.finfo(np.float64).eps, 1.0, values)


def fit_features(spec: FeatureSpec, cfg: FeaturesConfig, stats: Statistics) -> ColumnTransformer:
    """scikit-learn's fitted ``ColumnTransformer`` for ``spec``, holding ``stats`` (from :func:`statistics`)."""
    width = max([2, *(len(c) for c in stats.categories.values())])
    seed_frame = pd.DataFrame(
        {name: np.arange(width, dtype="float64") for name in spec.numeric}
        | {
            name: pd.Series([values[i % len(values)] for i in range(width)], dtype=object)
            for name, values in stats.categories.items()
        }
    )
    preprocessor = build_preprocessor(spec, cfg).fit(seed_frame[list(spec.columns)])
    if spec.numeric:
        branch = preprocessor.named_transformers_["numeric"]
        branch.named_steps["impute"].statistics_ = stats.fill
        _set_scaler(branch.named_steps.get("scale"), cfg, stats)
    if spec.categorical and cfg.categorical_imputation == "most_frequent":
        imputer = preprocessor.named_transformers_["categorical"].named_steps["impute"]
        imputer.statistics_ = np.asarray([stats.modes[name] for name in spec.categorical], dtype=object)
    return preprocessor


def _set_scaler(scaler: Any, cfg: FeaturesConfig, stats: Statistics) -> None:
    if cfg.scaling == "standard":
        scaler.mean_, scaler.var_ = stats.mean, stats.var
        scaler.scale_ = _scale(np.sqrt(stats.var))
        scaler.n_samples_seen_ = stats.rows
    elif cfg.scaling == "minmax":
        low, high = scaler.feature_range
        scaler.data_min_, scaler.data_max_ = stats.low, stats.high
        scaler.data_range_ = stats.high - stats.low
        scaler.scale_ = (high - low) / _scale(scaler.data_range_)
        scaler.min_ = low - stats.low * scaler.scale_
        scaler.n_samples_seen_ = stats.rows
    elif cfg.scaling == "robust" and stats.quartiles is not None:
        q25, median, q75 = stats.quartiles
        scaler.center_, scaler.scale_ = median, _scale(q75 - q25)


def _xy(
    part: pd.DataFrame, spec: FeatureSpec, preprocessor: ColumnTransformer, cfg: Config, labels: list[str]
) -> pd.DataFrame:
    # X and y of one partition from one task, so their rows cannot come apart.
    features = preprocessor.transform(model_frame(part, spec))
    xy = pd.DataFrame(np.asarray(features, dtype="float64"), index=part.index)
    y = target_values(part, cfg.data.target, task=cfg.task)
    codes = pd.Series(y).map({label: i for i, label in enumerate(labels)}) if labels else pd.Series(y)
    xy["__y__"] = codes.to_numpy(dtype="float64")
    return xy


def _labels(part: pd.DataFrame, cfg: Config) -> set[str]:
    return set(pd.unique(target_values(part, cfg.data.target, task=cfg.task)))


def train(client: Client, df: dd.DataFrame, cfg: Config, contract: Contract) -> Pipeline:
    """Fit the pandas engine's ``Pipeline`` on the partitions of ``df`` (target included)."""
    spec = resolve_features(cfg.features, contract, target=cfg.data.target)
    frame = df.map_partitions(_frame, spec, meta=model_frame(df._meta, spec))
    preprocessor = fit_features(spec, cfg.features, statistics(client, frame, spec, cfg.features))
    labels: list[str] = []
    if cfg.task == "classification":
        (labels_per_part,) = cluster.compute(client, [dask.delayed(_labels)(part, cfg) for part in df.to_delayed()])
        labels = sorted(set().union(*labels_per_part))
    width = len(preprocessor.get_feature_names_out())
    meta = pd.DataFrame({i: pd.Series(dtype="float64") for i in range(width)} | {"__y__": pd.Series(dtype="float64")})
    # One array, so X and y come from the same task per partition; unnamed columns as the
    # pandas engine's (scikit-learn hands the estimator a plain array).
    xy = df.map_partitions(_xy, spec, preprocessor, cfg, labels, meta=meta).to_dask_array(lengths=True)
    x, y = xy[:, :width], xy[:, width]
    local = build_estimator(cfg.task, cfg.model, seed=cfg.split.seed)
    params = local.get_params()
    distributed_model: Any = (
        xgboost_dask.DaskXGBClassifier(**params)
        if cfg.task == "classification"
        else xgboost_dask.DaskXGBRegressor(**params)
    )
    distributed_model.client = client
    distributed_model.fit(x, y)
    with tempfile.TemporaryDirectory() as folder:
        saved = Path(folder) / "booster.json"
        distributed_model.save_model(saved)
        local.load_model(saved)
    if isinstance(local, XGBClassifier):
        local.labels_ = np.asarray(labels, dtype=object)
    return Pipeline([("features", preprocessor), ("estimator", local)])


def run(
    cfg: Config,
    contract: Contract,
    *,
    data: Path,
    model_out: Path,
    metadata_out: Path,
    tuned_params: Path | None = None,
) -> Pipeline:
    """Train on the ``data`` folder across the cluster; write the model (skops) and its card, as the pandas engine does."""
    tuned = None if tuned_params is None else io.read_artifact(tuned_params, TunedParams)
    cfg = with_tuned_params(cfg, tuned)
    with cluster.connect(cfg.dask, stage="train") as client:
        df = tables.read_table(data)
        model = train(client, df, cfg, contract)
        data_hash, rows = ingest.table_hash(client, df)
    card = model_card(model, df._meta, cfg, tuned=tuned)
    provenance = card.provenance.model_copy(update={"data_hash": data_hash})
    io.save_model(model, model_out)
    io.write_artifact(card.model_copy(update={"provenance": provenance, "train_rows": rows}), metadata_out)
    return model
