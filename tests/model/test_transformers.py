"""Conveyor's own transformers (``conveyor.model.transformers``): what each computes, on every input form."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conveyor.model.transformers import DateParts, SignedLog, TwoColumns, as_datetimes

ALL_PARTS = ("year", "month", "day", "dayofweek", "dayofyear", "hour")


def test_date_parts_of_a_known_date() -> None:
    # 2024-03-15 was a Friday (day of week 4, Monday 0), the 75th day of a leap year.
    out = DateParts(parts=ALL_PARTS, cyclical=False).fit_transform(pd.DataFrame({"d": ["2024-03-15T14:30:00"]}))
    assert out.tolist() == [[2024.0, 3.0, 15.0, 4.0, 75.0, 14.0]]


@pytest.mark.parametrize(
    "values",
    [
        pd.Series(["2023-12-31T23:00:00", "2024-01-01", None]),
        pd.Series(pd.to_datetime(pd.Series(["2023-12-31 23:00", "2024-01-01 00:00", None]))),
        pd.Series([pd.Timestamp("2023-12-31 23:00"), pd.Timestamp("2024-01-01").date(), None], dtype=object),
        pd.Series(["2024-01-01T00:00:00+01:00", "2024-01-01T00:00:00Z", None]),
    ],
    ids=["iso-strings", "datetime64", "python-objects", "with-zones"],
)
def test_iso_strings_datetimes_and_dates_give_the_same_parts(values: pd.Series) -> None:
    out = DateParts(parts=("year", "month", "hour")).fit_transform(values.to_frame("d"))
    assert out.shape == (3, 1 + 3 + 3)  # year; month, sin, cos; hour, sin, cos
    assert out[0, [0, 1, 4]].tolist() == [2023.0, 12.0, 23.0]  # +01:00 midnight is 23:00 UTC
    assert out[1, [0, 1, 4]].tolist() == [2024.0, 1.0, 0.0]
    assert np.isnan(out[2]).all(), "a missing date is NaN in every part, imputed downstream"


def test_unparsable_dates_are_missing_not_an_error() -> None:
    assert as_datetimes(pd.Series(["not a date", "2024-02-30"])).isna().all()


def test_cyclical_parts_put_december_next_to_january() -> None:
    transformer = DateParts(parts=("month",), cyclical=True).fit(None)
    out = transformer.transform(pd.DataFrame({"d": ["2024-01-15", "2024-12-15", "2024-07-15"]}))
    january, december, july = out[:, 1:]
    assert np.linalg.norm(january - december) < np.linalg.norm(january - july) / 3
    assert transformer.get_feature_names_out().tolist() == ["month", "month_sin", "month_cos"]
    assert np.allclose((out[:, 1:] ** 2).sum(axis=1), 1.0)


def test_unknown_date_parts_are_refused_naming_them() -> None:
    with pytest.raises(ValueError, match=r"parts: unknown date parts \['week'\]"):
        DateParts(parts=("year", "week")).fit(None)


def test_ratio_is_missing_where_the_divisor_is_zero_and_difference_subtracts() -> None:
    x = np.array([[6.0, 3.0], [1.0, 0.0], [np.nan, 2.0]])
    ratio = TwoColumns(operation="ratio").fit(x).transform(x).ravel()
    assert ratio[0] == 2.0
    assert np.isnan(ratio[1:]).all()
    assert TwoColumns(operation="difference").fit(x).transform(x).ravel()[:2].tolist() == [3.0, 1.0]


@pytest.mark.parametrize(
    ("operation", "x", "message"), [("product", np.ones((2, 2)), "operation"), ("ratio", np.ones((2, 3)), "2 columns")]
)
def test_two_columns_refuses_what_it_cannot_compute(operation: str, x: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TwoColumns(operation=operation).fit(x)


def test_signed_log_is_monotonic_through_zero() -> None:
    x = np.array([[-100.0], [-1.0], [0.0], [1.0], [100.0], [1e9]])
    out = SignedLog().fit(x).transform(x).ravel()
    assert np.all(np.diff(out) > 0)
    assert out[2] == 0.0
    assert out[0] == -out[4]
    assert out[-1] == pytest.approx(np.log1p(1e9))
