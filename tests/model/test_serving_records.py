"""Single records as a service receives them go through the one prediction path unharmed.

A JSON record has ``null`` for a missing value, and a client may leave a key out. Built into a
one-row frame, a missing number is NaN (or ``None`` in an object column) and a missing category
is ``None`` or NaN of any dtype: ``features.model_frame`` must turn all of these into the same
input, so one record alone gets exactly the answer it gets inside a batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from conveyor.features import spec_of
from conveyor.predict import predict, predict_proba

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
