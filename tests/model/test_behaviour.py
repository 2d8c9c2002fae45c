"""Behavioural tests of trained models (Made-With-ML style): invariance, minimum functionality,
direction. They hold for every estimator family, so a model that breaks them is broken."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers_model import labelled, regression
from numpy.typing import NDArray
from sklearn.pipeline import Pipeline

from conveyor.config import Config
from conveyor.contract import Contract
from conveyor.predict import predict, predict_proba
from conveyor.stages.train import train

# Textbook penguins (the species' typical measurements in the Palmer data).
TYPICAL = [
    ("Gentoo", {"island": "Biscoe", "bill_length_mm": 47.5, "bill_depth_mm": 15.0, "flipper_length_mm": 217.0, "body_mass_g": 5076.0, "sex": "male"}),
    ("Adelie", {"island": "Torgersen", "bill_length_mm": 38.8, "bill_depth_mm": 18.3, "flipper_length_mm": 190.0, "body_mass_g": 3700.0, "sex": "female"}),
    ("Adelie", {"island": "Dream", "bill_length_mm": 38.5, "bill_depth_mm": 18.2, "flipper_length_mm": 189.0, "body_mass_g": 3690.0, "sex": "male"}),
    ("Chinstrap", {"island": "Dream", "bill_length_mm": 49.5, "bill_depth_mm": 18.4, "flipper_length_mm": 196.0, "body_mass_g": 3733.0, "sex": "male"}),
]  # fmt: skip


def _proba(model: Pipeline, df: pd.DataFrame) -> NDArray[np.float64]:
    return predict_proba(model, df)


def test_invariant_to_a_dropped_column(classifier: Pipeline, penguin_split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    test = penguin_split[1]
    other_years = test.assign(year=2031)  # params.yaml drops year: the model must not see it
    np.testing.assert_array_equal(_proba(classifier, other_years), _proba(classifier, test))


def test_invariant_to_extra_columns(classifier: Pipeline, penguin_split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    test = penguin_split[1]
    noisy = test.assign(observer="someone", tag_number=np.arange(len(test)))
    np.testing.assert_array_equal(_proba(classifier, noisy), _proba(classifier, test))


def test_invariant_to_row_and_column_order(
    classifier: Pipeline, penguin_split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    test = penguin_split[1]
    order = np.random.default_rng(0).permutation(len(test))
    shuffled = test.iloc[order][list(reversed(test.columns))]
    np.testing.assert_allclose(_proba(classifier, shuffled), _proba(classifier, test)[order], rtol=0, atol=1e-12)


@pytest.mark.parametrize(("species", "record"), TYPICAL, ids=[f"{s}-{r['island']}" for s, r in TYPICAL])
def test_typical_penguins_are_recognised(classifier: Pipeline, species: str, record: dict[str, object]) -> None:
    assert predict(classifier, pd.DataFrame([record]))[0] == species


def test_most_of_the_test_split_is_right(
    classifier: Pipeline, penguin_split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    test = penguin_split[1]
    assert float(np.mean(predict(classifier, test) == test["species"].to_numpy())) >= 0.95


def test_a_longer_bill_points_from_adelie_to_chinstrap(classifier: Pipeline) -> None:
    # On Dream both live; with Adelie-sized bodies, bill length is what tells them apart.
    base = dict(TYPICAL[2][1])
    bills = pd.DataFrame([base | {"bill_length_mm": length} for length in (36.0, 42.0, 48.0, 54.0)])
    chinstrap = list(classifier.classes_).index("Chinstrap")
    p_chinstrap = _proba(classifier, bills)[:, chinstrap]
    assert p_chinstrap[-1] > 0.5 > p_chinstrap[0]
    assert predict(classifier, bills.iloc[[0]])[0] == "Adelie"


def test_longer_flippers_mean_a_heavier_penguin(params: Config, contract: Contract, penguins: pd.DataFrame) -> None:
    cfg = regression(params, "ridge", alpha=1.0)
    model = train(labelled(penguins, cfg), cfg, contract)
    gentoo = {"species": "Gentoo", "island": "Biscoe", "bill_length_mm": 47.5, "bill_depth_mm": 15.0, "sex": "male"}
    flippers = pd.DataFrame([gentoo | {"flipper_length_mm": f} for f in (205.0, 215.0, 225.0)])
    masses = predict(model, flippers).astype(np.float64)
    assert np.all(np.diff(masses) > 0)
    assert 4000 < masses[1] < 6500
