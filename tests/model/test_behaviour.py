"""Behavioural tests of trained models (Made-With-ML style): invariance, minimum functionality,
direction, and single serving-style records. They hold for every estimator family, so a model
that breaks them is broken.

Serving: a JSON record has ``null`` for a missing value, and a client may leave a key out. Built
into a one-row frame, a missing number is NaN (or ``None`` in an object column) and a missing
category is ``None`` or NaN of any dtype: ``features.model_frame`` must turn all of these into the
same input, so one record alone gets exactly the answer it gets inside a batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from conveyor.config import Config
from conveyor.contract import Contract
from conveyor.io import read_source
from conveyor.model.features import spec_of
from conveyor.model.predict import predict, predict_proba
from conveyor.stages.split import split
from conveyor.stages.train import train
from tests.conftest import configured, labelled, regression

PENGUINS = Path(__file__).resolve().parents[2] / "data" / "penguins.csv"

# The default model plus the tree families, each small enough to train in well under a second.
ESTIMATORS = {
    "logistic_regression": {"C": 1.0, "max_iter": 1000},
    "random_forest": {"n_estimators": 50, "random_state": 0},
    "hist_gradient_boosting": {"max_iter": 50, "random_state": 0},
    "lightgbm": {"n_estimators": 50, "random_state": 0, "verbose": -1},
    "xgboost": {"n_estimators": 50, "random_state": 0},
}


@pytest.fixture(scope="module")
def penguin_split(params: Config) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The default data's train and test frames, as the split stage makes them."""
    df = read_source(str(PENGUINS))
    return split(df, params.split, target="species", stratify=True)


@pytest.fixture(scope="module", params=sorted(ESTIMATORS))
def classifier(
    request: pytest.FixtureRequest, params: Config, contract: Contract, penguin_split: tuple[pd.DataFrame, pd.DataFrame]
) -> Pipeline:
    """A species classifier of each estimator family, trained on the train split."""
    name = str(request.param)
    cfg = configured(params, model={"estimator": name, "params": ESTIMATORS[name]})
    return train(penguin_split[0], cfg, contract)


# Textbook penguins (the species' typical measurements in the Palmer data).
TYPICAL = [
    ("Gentoo", {"island": "Biscoe", "bill_length_mm": 47.5, "bill_depth_mm": 15.0, "flipper_length_mm": 217.0, "body_mass_g": 5076.0, "sex": "male"}),
    ("Adelie", {"island": "Torgersen", "bill_length_mm": 38.8, "bill_depth_mm": 18.3, "flipper_length_mm": 190.0, "body_mass_g": 3700.0, "sex": "female"}),
    ("Adelie", {"island": "Dream", "bill_length_mm": 38.5, "bill_depth_mm": 18.2, "flipper_length_mm": 189.0, "body_mass_g": 3690.0, "sex": "male"}),
    ("Chinstrap", {"island": "Dream", "bill_length_mm": 49.5, "bill_depth_mm": 18.4, "flipper_length_mm": 196.0, "body_mass_g": 3733.0, "sex": "male"}),
]  # fmt: skip


def test_invariant_to_a_dropped_column(classifier: Pipeline, penguin_split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    test = penguin_split[1]
    other_years = test.assign(year=2031)  # params.yaml drops year: the model must not see it
    np.testing.assert_array_equal(predict_proba(classifier, other_years), predict_proba(classifier, test))


def test_invariant_to_extra_columns(classifier: Pipeline, penguin_split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    test = penguin_split[1]
    noisy = test.assign(observer="someone", tag_number=np.arange(len(test)))
    np.testing.assert_array_equal(predict_proba(classifier, noisy), predict_proba(classifier, test))


def test_invariant_to_row_and_column_order(
    classifier: Pipeline, penguin_split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    test = penguin_split[1]
    order = np.random.default_rng(0).permutation(len(test))
    shuffled = test.iloc[order][list(reversed(test.columns))]
    np.testing.assert_allclose(
        predict_proba(classifier, shuffled), predict_proba(classifier, test)[order], rtol=0, atol=1e-12
    )


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
    p_chinstrap = predict_proba(classifier, bills)[:, chinstrap]
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


# --- single records, as a service receives them ----------------------------------------------

ROWS = 24


def _records(test: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    """Test rows as JSON-like dicts with gaps: some values null, some keys left out."""
    rng = np.random.default_rng(1)
    records = []
    for row in test[columns].head(ROWS).to_dict(orient="records"):
        record: dict[str, Any] = {str(k): (None if pd.isna(v) else v) for k, v in row.items()}
        for column in rng.choice(columns, size=2, replace=False):
            if rng.random() < 0.5:
                record[str(column)] = None
            else:
                del record[str(column)]
        records.append(record)
    return records


def test_single_records_match_the_batch(classifier: Pipeline, penguin_split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    columns = list(spec_of(classifier).columns)
    records = _records(penguin_split[1], columns)
    batch = pd.DataFrame(records, columns=columns)
    batch_labels, batch_proba = predict(classifier, batch), predict_proba(classifier, batch)
    for index, record in enumerate(records):
        one = pd.DataFrame([record], columns=columns)  # a key left out becomes NaN
        assert predict(classifier, one)[0] == batch_labels[index], record
        np.testing.assert_allclose(predict_proba(classifier, one)[0], batch_proba[index], rtol=0, atol=1e-9)


def test_object_columns_with_none_match_numeric_columns_with_nan(
    classifier: Pipeline, penguin_split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    columns = list(spec_of(classifier).columns)
    records = _records(penguin_split[1], columns)
    typed = pd.DataFrame(records, columns=columns)
    # What a service builds from validated records: every column object dtype, None for null.
    untyped = pd.DataFrame({c: pd.Series([r.get(c) for r in records], dtype="object") for c in columns})
    np.testing.assert_allclose(predict_proba(classifier, untyped), predict_proba(classifier, typed), rtol=0, atol=1e-12)


def test_a_record_with_every_value_missing_still_gets_an_answer(classifier: Pipeline) -> None:
    columns = list(spec_of(classifier).columns)
    empty = pd.DataFrame([dict.fromkeys(columns)], columns=columns)
    proba = predict_proba(classifier, empty)
    assert proba.shape == (1, len(classifier.classes_))
    assert np.isclose(proba.sum(), 1.0)
    assert predict(classifier, empty)[0] in set(classifier.classes_)
