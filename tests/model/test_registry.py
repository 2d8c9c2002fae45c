"""The estimator registry: every estimator builds, fits on penguins and survives a save and load."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline

from conveyor import io
from conveyor.config import Config
from conveyor.contract import Contract
from conveyor.errors import ConfigError, DataError
from conveyor.model.pipeline import build_estimator
from conveyor.model.predict import predict
from conveyor.model.registry import ESTIMATORS, Task, check_estimator
from conveyor.stages.train import train
from tests.conftest import ROOT, configured, labelled, regression

CASES = [(task, name) for task, registry in ESTIMATORS.items() for name in registry]


def test_the_registry_covers_the_five_families_for_both_tasks() -> None:
    boosting = {"hist_gradient_boosting", "lightgbm", "xgboost"}
    assert set(ESTIMATORS["classification"]) == {"logistic_regression", "random_forest", *boosting}
    assert set(ESTIMATORS["regression"]) == {"ridge", "random_forest", *boosting}


def _config(params: Config, task: Task, name: str) -> Config:
    # Small forests and few boosting rounds: the test is about the plumbing, not the score.
    small = {
        "random_forest": {"n_estimators": 20, "random_state": 0},
        "hist_gradient_boosting": {"max_iter": 20},
        "lightgbm": {"n_estimators": 20, "verbose": -1},
        "xgboost": {"n_estimators": 20},
    }
    model_params = small.get(name, {})
    if task == "regression":
        return regression(params, name, **model_params)
    return configured(params, model={"estimator": name, "params": model_params})


@pytest.mark.parametrize("case", CASES, ids=["-".join(case) for case in CASES])
def test_every_estimator_fits_and_round_trips(
    params: Config, contract: Contract, penguins: pd.DataFrame, tmp_path: Path, case: tuple[Task, str]
) -> None:
    task, name = case
    cfg = _config(params, task, name)
    df = labelled(penguins, cfg)
    model = train(df, cfg, contract)
    path = tmp_path / "model.skops"
    io.save_model(model, path)
    loaded = io.load_model(path)
    expected = predict(model, df)
    assert len(expected) == len(df)
    np.testing.assert_array_equal(predict(loaded, df), expected)
    if task == "classification":
        assert set(expected) <= {"Adelie", "Chinstrap", "Gentoo"}
    else:
        assert np.issubdtype(expected.dtype, np.floating)  # xgboost predicts float32
        # Body mass is 2.7-6.3 kg: a fitted regressor stays in that world.
        assert 2000 < float(np.median(expected.astype(np.float64))) < 7000


class Payload(BaseEstimator, TransformerMixin):  # type: ignore[misc]
    """A step no Conveyor pipeline contains: stands in for code smuggled into a model file."""

    def transform(self, x: pd.DataFrame) -> pd.DataFrame:
        """Nothing; loading it is the risk, not running it."""
        return x


def test_a_file_with_an_untrusted_type_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tampered.skops"
    sio.dump(Pipeline([("payload", Payload())]), path)
    with pytest.raises(DataError, match=r"refusing to load types that are not trusted: \[.*Payload'\]"):
        io.load_model(path)


def test_a_file_that_is_not_a_pipeline_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dict.skops"
    sio.dump({"not": "a model"}, path)
    with pytest.raises(DataError, match="expected a scikit-learn Pipeline, found dict"):
        io.load_model(path)


def test_check_estimator_names_the_key() -> None:
    with pytest.raises(ValueError, match=r"model.estimator: 'ridge' is not a classification estimator"):
        check_estimator("classification", "ridge", {})
    with pytest.raises(ValueError, match=r"model.params.n_trees: not a parameter of RandomForestRegressor"):
        check_estimator("regression", "random_forest", {"n_trees": 10})


def test_params_reach_the_estimator(params: Config) -> None:
    cfg = configured(params, model={"estimator": "logistic_regression", "params": {"C": 0.25, "max_iter": 50}})
    estimator = build_estimator("classification", cfg.model, seed=0)
    assert estimator.get_params()["C"] == 0.25
    assert estimator.get_params()["max_iter"] == 50


def test_an_unknown_estimator_in_params_is_a_config_error(params: Config) -> None:
    with pytest.raises(ConfigError, match=r"model.estimator: 'catboost' is not a classification estimator"):
        configured(params, model={"estimator": "catboost", "params": {}})


TABLED = [(task, name) for task, name in CASES if ESTIMATORS[task][name].parameters is not None]


@pytest.mark.parametrize("case", TABLED, ids=["-".join(case) for case in TABLED])
def test_the_parameter_table_matches_the_installed_estimator(case: tuple[Task, str]) -> None:
    entry = ESTIMATORS[case[0]][case[1]]
    module, _, attribute = entry.path.partition(":")
    cls = getattr(importlib.import_module(module), attribute)
    assert entry.parameters == frozenset(inspect.signature(cls.__init__).parameters) - {"self"}


@pytest.mark.parametrize("case", CASES, ids=["-".join(case) for case in CASES])
def test_an_entry_trusts_the_class_it_names_first(case: tuple[Task, str]) -> None:
    entry = ESTIMATORS[case[0]][case[1]]
    cls = entry.cls()
    assert entry.trusted[0] == f"{cls.__module__}.{cls.__qualname__}"


def test_loading_the_config_imports_no_estimator_library() -> None:
    probe = "import sys; from conveyor.config import load_config; load_config('params.yaml'); print('sklearn' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_xgboost_classifies_with_the_data_labels(params: Config, contract: Contract, penguins: pd.DataFrame) -> None:
    cfg = configured(params, model={"estimator": "xgboost", "params": {"n_estimators": 10}})
    model = train(penguins, cfg, contract)
    assert list(model.classes_) == ["Adelie", "Chinstrap", "Gentoo"]
    assert set(predict(model, penguins)) <= set(model.classes_)
    # Refitting on other labels replaces the classes rather than checking against the old ones.
    two = penguins[penguins["species"] != "Gentoo"]
    assert list(train(two, cfg, contract).classes_) == ["Adelie", "Chinstrap"]
