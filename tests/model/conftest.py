"""Models trained once per session on the default data's train split, one per estimator family."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from helpers_model import configured
from sklearn.pipeline import Pipeline

from conveyor.config import Config
from conveyor.contract import Contract
from conveyor.io import read_source
from conveyor.stages.split import split
from conveyor.stages.train import train

PENGUINS = Path(__file__).resolve().parents[2] / "data" / "penguins.csv"

# The default model plus the two tree families, each small enough to train in well under a second.
ESTIMATORS = {
    "logistic_regression": {"C": 1.0, "max_iter": 1000},
    "random_forest": {"n_estimators": 50, "random_state": 0},
    "hist_gradient_boosting": {"max_iter": 50, "random_state": 0},
}


@pytest.fixture(scope="session")
def penguin_split(params: Config) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The default data's train and test frames, as the split stage makes them."""
    df = read_source(str(PENGUINS))
    return split(df, params.split, target="species", stratify=True)


@pytest.fixture(scope="session", params=sorted(ESTIMATORS))
def classifier(
    request: pytest.FixtureRequest, params: Config, contract: Contract, penguin_split: tuple[pd.DataFrame, pd.DataFrame]
) -> Pipeline:
    """A species classifier of each estimator family, trained on the train split."""
    name = str(request.param)
    cfg = configured(params, model={"estimator": name, "params": ESTIMATORS[name]})
    return train(penguin_split[0], cfg, contract)
