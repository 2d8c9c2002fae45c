"""Behavioural tests (Made-With-ML style) of models with derived features: invariance and direction.

The generated table (:func:`tests.conftest.mixed_table`) has a price that is higher in winter
(month), rises with ``b`` and with the number in ``code``; the tests ask a trained model whether
it learnt that through its date, log, bins and target-encoding features, and whether what must
not matter (the form a date is written in, words it never saw) does not.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from conveyor.config import Config
from conveyor.model.predict import predict, predict_proba
from conveyor.stages.train import train
from tests.conftest import configured, mixed_contract, mixed_table

PRICE: dict[str, Any] = {
    "task": "regression",
    "data": {"target": "price"},
    "model": {"estimator": "ridge", "params": {"alpha": 1.0}, "target_transform": "log"},
    "gate": {"thresholds": {"r2": {"min": 0.5}}, "compare": ["rmse"]},
}


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return mixed_table(2000, seed=1)


@pytest.fixture(scope="module")
def price_model(params: Config, table: pd.DataFrame) -> Pipeline:
    derived = [
        {"kind": "date_parts", "column": "when", "parts": ["month", "dayofweek"]},
        {"kind": "log", "column": "b"},
        {"kind": "bins", "column": "b", "n_bins": 5},
        {"kind": "target_encoding", "column": "code"},
        {"kind": "missing_indicator", "column": "a"},
    ]
    cfg = configured(params, **PRICE, features={"drop": [], "derived": derived})
    return train(table, cfg, mixed_contract(target="price"))


def one_row(table: pd.DataFrame, **values: Any) -> pd.DataFrame:
    return table.head(1).assign(**values).reset_index(drop=True)


def test_direction_winter_dates_are_dearer_than_summer_ones(price_model: Pipeline, table: pd.DataFrame) -> None:
    winter = predict(price_model, one_row(table, when="2022-01-12T10:00:00"))
    summer = predict(price_model, one_row(table, when="2022-07-12T10:00:00"))
    assert winter[0] > summer[0] * 1.2  # the table's season effect is exp(0.8) ≈ 2.2 between them


def test_direction_a_larger_b_raises_the_price_through_log_and_bins(price_model: Pipeline, table: pd.DataFrame) -> None:
    prices = [predict(price_model, one_row(table, b=b))[0] for b in (1.2, 2.5, 3.8, 4.9)]
    assert np.all(np.diff(prices) > 0), prices


def test_direction_the_target_encoding_ranks_codes_by_their_effect(price_model: Pipeline, table: pd.DataFrame) -> None:
    low = predict(price_model, one_row(table, code="c02"))[0]
    high = predict(price_model, one_row(table, code="c77"))[0]
    assert high > low * 1.5  # the table's code effect is exp(0.94) ≈ 2.6 between them


def test_invariance_a_code_never_seen_gets_the_overall_mean_not_an_error(
    price_model: Pipeline, table: pd.DataFrame
) -> None:
    seen = predict(price_model, one_row(table, code="c40"))[0]
    unseen = predict(price_model, one_row(table, code="zz-new"))[0]
    assert np.isfinite(unseen)
    assert unseen > 0
    assert abs(np.log(unseen) - np.log(seen)) < 0.5  # c40 is mid-range: near the mean


@pytest.mark.parametrize(
    "when",
    [
        "2022-03-04T05:00:00",
        "2022-03-04 05:00:00",
        "2022-03-04T05:00:00Z",
        "2022-03-04T06:00:00+01:00",
        pd.Timestamp("2022-03-04 05:00"),
    ],
)
def test_invariance_the_form_a_date_is_written_in_does_not_matter(
    price_model: Pipeline, table: pd.DataFrame, when: object
) -> None:
    reference = predict(price_model, one_row(table, when="2022-03-04T05:00:00"))
    assert predict(price_model, one_row(table, when=when)) == pytest.approx(reference, rel=1e-12)


def test_invariance_a_row_alone_gets_the_answer_it_gets_in_a_batch(price_model: Pipeline, table: pd.DataFrame) -> None:
    batch = predict(price_model, table.head(50))
    alone = [predict(price_model, table.iloc[[i]].reset_index(drop=True))[0] for i in (0, 7, 33)]
    assert alone == pytest.approx(batch[[0, 7, 33]], rel=1e-12)


@pytest.fixture(scope="module")
def review_model(params: Config) -> Pipeline:
    rng = np.random.default_rng(2)
    good, bad = ["great", "good", "lovely"], ["awful", "bad", "broken"]
    filler = ["the", "room", "was", "and", "staff", "food"]
    rows = []
    for _ in range(400):
        positive = bool(rng.random() < 0.5)
        words = [*rng.choice(filler, 4), str(rng.choice(good if positive else bad))]
        rows.append({"a": rng.normal(), "b": rng.uniform(1, 5), "note": " ".join(rng.permutation(words)),
                     "label": "high" if positive else "low"})  # fmt: skip
    df = pd.DataFrame(rows).assign(when="2022-01-01", code="c00", price=1.0)
    cfg = configured(
        params,
        data={"target": "label"},
        features={"drop": [], "derived": [{"kind": "text", "column": "note", "max_features": 20}]},
    )
    return train(df, cfg, mixed_contract())


def review(note: str) -> pd.DataFrame:
    return pd.DataFrame({"a": [0.0], "b": [3.0], "note": [note], "when": ["2022-01-01"], "code": ["c00"]})


def test_minimum_functionality_and_direction_of_the_text_feature(review_model: Pipeline) -> None:
    classes = list(review_model.classes_)
    assert predict(review_model, review("the food was great"))[0] == "high"
    assert predict(review_model, review("the food was awful"))[0] == "low"
    neutral = predict_proba(review_model, review("the food was"))[0, classes.index("high")]
    praised = predict_proba(review_model, review("the food was lovely"))[0, classes.index("high")]
    assert praised > neutral


def test_invariance_words_outside_the_vocabulary_change_nothing(review_model: Pipeline) -> None:
    base = predict_proba(review_model, review("the staff was good"))
    unknown = predict_proba(review_model, review("the staff was good zebra quantum"))
    np.testing.assert_allclose(unknown, base, rtol=1e-12)
    empty = predict_proba(review_model, review(""))
    missing = predict_proba(review_model, review("").assign(note=pd.Series([None], dtype=object)))
    np.testing.assert_allclose(missing, empty, rtol=1e-12)
