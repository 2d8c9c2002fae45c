"""The Dask engine trains the pandas engine's kind of Pipeline and scores it as the pandas engine does."""

from __future__ import annotations

from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from distributed import Client
from sklearn.pipeline import Pipeline

from conveyor import io
from conveyor.config import Config
from conveyor.contract import Contract, conform
from conveyor.engine import evaluate as dask_evaluate
from conveyor.engine import train as dask_train
from conveyor.errors import ConfigError
from conveyor.model.estimators import XGBClassifier
from conveyor.model.features import build_preprocessor, model_frame, resolve_features
from conveyor.model.metrics import score
from conveyor.stages import evaluate, train
from conveyor.stages.split import split
from tests.conftest import configured, labelled, regression

# The y_prob warning: xgboost's float32 probabilities, summed in float64, miss 1 by ~1e-8 (both engines).
pytestmark = pytest.mark.filterwarnings("ignore:The y_prob values do not sum to one:UserWarning")
# Probabilities of models trained on 3 partitions against one frame: the medians are Dask's
# approximate quantiles and xgboost sketches each partition's histogram, so trees may split elsewhere.
PROBA_TOLERANCE = 0.1
# Metrics of one model scored by both engines: the same sums, in another order.
METRIC_TOLERANCE = 1e-6


@pytest.fixture
def xgboost_params(params: Config) -> Config:
    return configured(
        params, engine="dask", model={"estimator": "xgboost", "params": {"n_estimators": 30, "max_depth": 3}}
    )


def splits(penguins: pd.DataFrame, contract: Contract, cfg: Config) -> tuple[pd.DataFrame, pd.DataFrame]:
    return split(conform(penguins, contract), cfg.split, target=cfg.data.target, stratify=cfg.task == "classification")


@pytest.mark.parametrize("partitions", [1, 3])
def test_the_engines_train_models_that_predict_alike(
    dask_client: Client, penguins: pd.DataFrame, contract: Contract, xgboost_params: Config, partitions: int
) -> None:
    train_rows, test_rows = splits(penguins, contract, xgboost_params)
    on_dask = dask_train.train(
        dask_client, dd.from_pandas(train_rows, npartitions=partitions), xgboost_params, contract
    )
    on_pandas = train.train(train_rows, xgboost_params, contract)
    assert isinstance(on_dask, Pipeline)
    assert isinstance(on_dask.named_steps["estimator"], XGBClassifier)
    assert list(on_dask.classes_) == list(on_pandas.classes_)
    difference = np.abs(on_dask.predict_proba(test_rows) - on_pandas.predict_proba(test_rows)).max()
    if partitions == 1:
        assert difference == 0.0
    assert difference < PROBA_TOLERANCE
    assert (on_dask.predict(test_rows) == on_pandas.predict(test_rows)).all()


def test_a_dask_model_saves_and_loads_as_the_pandas_one(
    dask_client: Client, penguins: pd.DataFrame, contract: Contract, xgboost_params: Config, tmp_path: Path
) -> None:
    train_rows, test_rows = splits(penguins, contract, xgboost_params)
    model = dask_train.train(dask_client, dd.from_pandas(train_rows, npartitions=2), xgboost_params, contract)
    path = tmp_path / "model.skops"
    io.save_model(model, path)
    np.testing.assert_array_equal(io.load_model(path).predict_proba(test_rows), model.predict_proba(test_rows))


def test_regression_trains_on_dask(
    dask_client: Client, penguins: pd.DataFrame, contract: Contract, params: Config
) -> None:
    cfg = configured(regression(params, "xgboost", n_estimators=20), engine="dask")
    train_rows, test_rows = splits(labelled(penguins, cfg), contract, cfg)
    on_dask = dask_train.train(dask_client, dd.from_pandas(train_rows, npartitions=1), cfg, contract)
    on_pandas = train.train(train_rows, cfg, contract)
    np.testing.assert_allclose(on_dask.predict(test_rows), on_pandas.predict(test_rows), rtol=1e-6)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_both_engines_score_a_model_alike(
    dask_client: Client,
    penguins: pd.DataFrame,
    contract: Contract,
    params: Config,
    task: str,
) -> None:
    cfg = params if task == "classification" else regression(params)
    rows = penguins if task == "classification" else labelled(penguins, cfg)
    train_rows, test_rows = splits(rows, contract, cfg)
    model = train.train(train_rows, cfg, contract)
    expected = evaluate.evaluate(model, test_rows, cfg)
    got = dask_evaluate.evaluate_partitioned(dask_client, model, dd.from_pandas(test_rows, npartitions=3), cfg)
    assert list(got.metrics) == list(expected.metrics)
    for name, value in expected.metrics.items():
        assert got.metrics[name] == pytest.approx(value, abs=METRIC_TOLERANCE), name
    assert [(s["column"], s["value"], s["rows"]) for s in got.slices] == [
        (s["column"], s["value"], s["rows"]) for s in expected.slices
    ]
    for ours, theirs in zip(got.slices, expected.slices, strict=True):
        measured = {k: v for k, v in theirs.items() if k not in {"column", "value", "rows"}}
        assert {k: ours[k] for k in measured} == pytest.approx(measured, abs=METRIC_TOLERANCE)
    assert got.importance == expected.importance
    assert got.importance_sample == expected.importance_sample


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_the_champion_is_scored_on_dask_as_the_pandas_gate_scores_it(
    dask_client: Client, penguins: pd.DataFrame, contract: Contract, params: Config, task: str
) -> None:
    cfg = params if task == "classification" else regression(params)
    rows = penguins if task == "classification" else labelled(penguins, cfg)
    train_rows, test_rows = splits(rows, contract, cfg)
    model = train.train(train_rows, cfg, contract)
    expected = score(model, test_rows, target=cfg.data.target, task=cfg.task)
    got = dask_evaluate.metrics_partitioned(dask_client, model, dd.from_pandas(test_rows, npartitions=3), cfg)
    assert list(got) == list(expected)
    assert got == pytest.approx(expected, abs=METRIC_TOLERANCE)


def test_the_dask_engine_names_the_estimator_it_cannot_train(params: Config) -> None:
    with pytest.raises(ConfigError, match=r"model.estimator: 'logistic_regression' does not train with engine: dask"):
        configured(params, engine="dask")


def test_the_dask_engine_refuses_what_it_does_not_fit(params: Config) -> None:
    xgboost = {"estimator": "xgboost", "params": {}}
    with pytest.raises(ConfigError, match=r"features.derived: not fitted by engine: dask"):
        configured(
            params, engine="dask", model=xgboost, features={"derived": [{"kind": "log", "column": "body_mass_g"}]}
        )
    regression = {"estimator": "xgboost", "params": {}, "target_transform": "log"}
    with pytest.raises(ConfigError, match=r"model.target_transform: not fitted by engine: dask"):
        configured(
            params,
            engine="dask",
            task="regression",
            data={"target": "body_mass_g"},
            model=regression,
            gate={"thresholds": {"r2": {"min": 0.5}}, "compare": ["rmse"]},
        )


def test_dask_settings_are_checked_on_load(params: Config) -> None:
    with pytest.raises(ConfigError, match=r"dask.memory_limit: expected a size such as 2.5GiB"):
        configured(params, dask={"memory_limit": "lots"})
    with pytest.raises(ConfigError, match=r"engine: expected 'pandas' or 'dask', got 'spark'"):
        configured(params, engine="spark")


@pytest.mark.parametrize(
    "features",
    [
        {"numeric_imputation": "mean", "scaling": "minmax", "encoding": "ordinal"},
        {"numeric_imputation": "median", "scaling": "robust", "categorical_imputation": "most_frequent"},
        {"numeric_imputation": "most_frequent", "scaling": "none"},
        {"numeric_imputation": "zero", "scaling": "standard", "categorical_imputation": "most_frequent"},
    ],
    ids=["mean-minmax-ordinal", "median-robust-mode", "mode-none", "zero-standard-mode"],
)
def test_the_feature_statistics_are_scikit_learns(
    dask_client: Client, penguins: pd.DataFrame, contract: Contract, params: Config, features: dict[str, str]
) -> None:
    cfg = configured(params, features=features)
    spec = resolve_features(cfg.features, contract, target=cfg.data.target)
    frame = model_frame(conform(penguins, contract), spec)
    stats = dask_train.statistics(dask_client, dd.from_pandas(frame, npartitions=1), spec, cfg.features)
    ours = dask_train.fit_features(spec, cfg.features, stats)
    theirs = build_preprocessor(spec, cfg.features).fit(frame)
    np.testing.assert_allclose(ours.transform(frame), theirs.transform(frame), rtol=1e-12, atol=1e-12)


def test_the_gate_scores_a_champion_on_the_cluster_params_name(
    dask_client: Client, penguins: pd.DataFrame, contract: Contract, xgboost_params: Config, tmp_path: Path
) -> None:
    from conveyor.engine import tables
    from conveyor.stages.gate import champion_scorer

    train_rows, test_rows = splits(penguins, contract, xgboost_params)
    model = train.train(train_rows, xgboost_params, contract)
    folder = tmp_path / "test.parquet"
    tables.write_table(dask_client, dd.from_pandas(test_rows, npartitions=3), folder)
    cfg = configured(xgboost_params, dask={"address": dask_client.scheduler.address})
    got = champion_scorer(cfg, folder)(model)
    assert got == pytest.approx(score(model, test_rows, target="species", task="classification"), abs=METRIC_TOLERANCE)
