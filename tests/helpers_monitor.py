"""A fitted penguins model, its reference sample, and windows drawn from one known distribution.

The distribution is the penguins table smoothed: rows resampled with replacement, each measurement
moved by Gaussian noise of a fifth of its standard deviation (integer columns rounded back). The
reference and every window are fresh draws from it, so "no drift" is true by construction.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from conveyor.config import Config
from conveyor.contract import Contract, conform
from conveyor.features import FeatureSpec, resolve_features
from conveyor.model import build_pipeline
from conveyor.stages.split import split

JITTER = 0.2
# Categories moved in a mix change: this many percentage points of all records.
MIX_POINTS = 0.30


class Population:
    """Draws of the smoothed penguins distribution, and shifted versions of it."""

    def __init__(self, penguins: pd.DataFrame, contract: Contract) -> None:
        self.rows = conform(penguins, contract)
        self.numeric = [name for name in self.rows.columns if contract.columns[name].is_numeric]
        self.integers = [name for name in self.numeric if contract.columns[name].type == "int"]
        self.sd = self.rows[self.numeric].std()

    def draw(self, n: int, rng: np.random.Generator) -> pd.DataFrame:
        """``n`` records of the population (with the label column)."""
        sample = self.rows.iloc[rng.integers(0, len(self.rows), n)].reset_index(drop=True)
        noise = rng.normal(0.0, JITTER, size=(n, len(self.numeric))) * self.sd.to_numpy()
        sample[self.numeric] = sample[self.numeric] + noise
        sample[self.integers] = sample[self.integers].round()
        return sample

    def shifted(self, n: int, rng: np.random.Generator, column: str) -> pd.DataFrame:
        """A draw with ``column`` moved up by one standard deviation of the population."""
        sample = self.draw(n, rng)
        sample[column] = sample[column] + self.sd[column]
        if column in self.integers:
            sample[column] = sample[column].round()
        return sample

    def remixed(self, n: int, rng: np.random.Generator, column: str, source: str, destination: str) -> pd.DataFrame:
        """A draw where ``MIX_POINTS`` of all records move from category ``source`` to ``destination``."""
        sample = self.draw(n, rng)
        candidates = np.flatnonzero((sample[column] == source).to_numpy())
        moved = rng.choice(candidates, size=round(MIX_POINTS * n), replace=False)
        sample.loc[moved, column] = destination
        return sample


def fitted_model(
    params: Config, contract: Contract, penguins: pd.DataFrame
) -> tuple[Pipeline, FeatureSpec, pd.DataFrame]:
    """The default pipeline fitted on the real training split; returns the model, its spec and the split."""
    spec = resolve_features(params.features, contract, target=params.data.target)
    train, _ = split(conform(penguins, contract), params.split, target=params.data.target, stratify=True)
    model = build_pipeline(spec, params.features, params.model, task=params.task)
    model.fit(train[list(spec.columns)], train[params.data.target].astype(str))
    return model, spec, train
