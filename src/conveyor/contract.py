"""The data contract: what every row must look like, as a file a person can read and review.

A contract is YAML::

    columns:
      penguin: {type: id}                    # a key: checked, logged by the service, never a feature
      island: {type: category, nullable: false, categories: [Biscoe, Dream, Torgersen]}
      bill_length_mm: {type: float, nullable: true, min: 20.0, max: 80.0}
      flipper_length_mm: {type: int, min: 140, max: 260}
      tagged: {type: bool}                   # true/false (also 1/0)
      seen: {type: datetime}                 # ISO 8601 dates or date-times
      notes: {type: text, nullable: true}    # free text
    unique: [[penguin]]        # column sets that identify a row
    checks: {min_rows: 50, max_missing_fraction: 0.2, max_duplicate_fraction: 0.0}

The types, and what each holds once :func:`conform` has put it in canonical form:

- ``int``, ``float``: numbers (float64); ``min``/``max`` bounds.
- ``bool``: true/false (pandas' nullable ``boolean``); 1/0 are read as true/false. A bool target's
  labels are ``"false"``/``"true"``, the service answers JSON ``false``/``true``.
- ``category``: one of ``categories`` (text).
- ``datetime``: ISO 8601 text (``2024-05-01``, ``2024-05-01T13:45:00+02:00``) or the source's own
  dates and timestamps (Parquet, SQL), as UTC timestamps; a value without an offset is taken as UTC.
- ``text``: free text; ``string``: other text the model does not take (high-cardinality codes).
- ``id``: a key (text or whole numbers, kept as text): checked, written to the prediction log so
  labels can be joined later, never a feature.

Only ``int``, ``float``, ``bool`` and ``category`` columns are model inputs as they are; the other
types flow through validation, the service and the monitor, for feature kinds that turn them into
numbers (date parts, text vectors) to take.

This module turns a contract into a pandera schema (validate stage), infers one from a sample
(``conveyor schema infer``, each column with the reason for its type) and tells which columns are
numeric or categorical (features).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, ValidationError, WrapValidator, model_validator

from conveyor.errors import ContractError, describe_errors

if TYPE_CHECKING:
    import pandas as pd
    import pandera.pandas as pa

__all__ = [
    "ISO_DATETIME",
    "ColumnSpec",
    "Contract",
    "DatasetChecks",
    "Inferred",
    "bool_values",
    "conform",
    "contract_to_dict",
    "datetime_values",
    "infer",
    "infer_contract",
    "is_iso_datetime",
    "key_text",
    "pandera_schema",
    "parse_contract",
]

ColumnType = Literal["int", "float", "bool", "category", "string", "text", "datetime", "id"]
NUMERIC_TYPES: frozenset[str] = frozenset({"int", "float", "bool"})
TEXT_TYPES: frozenset[str] = frozenset({"category", "string", "text"})
# ISO 8601 as the contract takes it: a calendar date, optionally a time, optionally an offset.
ISO_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?$"
)


def _keep_integers(value: Any, handler: Any) -> Any:
    # An integer bound stays one (`max: 74`, not `74.0`, in the file and in messages); others are floats.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return handler(value)


# A number bound: validated as a float, but an integer kept as it was given.
Bound = Annotated[float, WrapValidator(_keep_integers), PlainSerializer(lambda value: value, return_type=Any)]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ColumnSpec(_Strict):
    """One column: its type, whether it may be missing, and its allowed values."""

    type: ColumnType
    nullable: bool = False
    min: Bound | None = None
    max: Bound | None = None
    categories: tuple[str, ...] | None = None
    feature: bool = True
    description: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _ids_are_not_features(cls, data: Any) -> Any:
        # A key is never a feature: `feature: false` is implied, `feature: true` is a contradiction.
        if isinstance(data, dict) and data.get("type") == "id":
            if data.get("feature") is True:
                raise ValueError("type id is a key, never a feature: remove feature: true")
            return {**data, "feature": False}
        return data

    @model_validator(mode="after")
    def _coherent(self) -> ColumnSpec:
        if self.type not in NUMERIC_TYPES and (self.min is not None or self.max is not None):
            raise ValueError(f"min/max apply to numeric columns, not to type {self.type}")
        if self.categories is not None and self.type != "category":
            raise ValueError("categories apply to columns of type category")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        return self

    @property
    def is_numeric(self) -> bool:
        """Int, float and bool columns are modelled as numbers."""
        return self.type in NUMERIC_TYPES


class DatasetChecks(_Strict):
    """Checks on the whole table rather than one column."""

    min_rows: Annotated[int, Field(ge=1)] = 20
    max_missing_fraction: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    max_duplicate_fraction: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0


class Contract(_Strict):
    """A whole data contract."""

    columns: dict[str, ColumnSpec] = Field(min_length=1)
    unique: tuple[tuple[str, ...], ...] = ()
    checks: DatasetChecks = DatasetChecks()

    @model_validator(mode="after")
    def _keys_exist(self) -> Contract:
        for key in self.unique:
            unknown = [name for name in key if name not in self.columns]
            if unknown:
                raise ValueError(f"unique: the key {list(key)} names columns not in the contract: {unknown}")
        return self

    def numeric_columns(self) -> tuple[str, ...]:
        """Feature columns modelled as numbers, in contract order."""
        return tuple(name for name, spec in self.columns.items() if spec.feature and spec.is_numeric)

    def categorical_columns(self) -> tuple[str, ...]:
        """Feature columns modelled as categories, in contract order."""
        return tuple(name for name, spec in self.columns.items() if spec.feature and spec.type == "category")

    def columns_of(self, *types: ColumnType) -> tuple[str, ...]:
        """Columns of the given types (features or not), in contract order."""
        return tuple(name for name, spec in self.columns.items() if spec.type in types)


def parse_contract(raw: object, *, source: str = "contract") -> Contract:
    """Validate a parsed contract mapping; raise :class:`ContractError` naming the column and key."""
    try:
        return Contract.model_validate(raw)
    except ValidationError as exc:
        raise ContractError(describe_errors(exc, source=source, root=Contract)) from None


def contract_to_dict(contract: Contract) -> dict[str, Any]:
    """The contract as plain data, for YAML or JSON, without keys left at their defaults."""
    return contract.model_dump(mode="json", exclude_defaults=True) | {"checks": contract.checks.model_dump(mode="json")}


def pandera_schema(contract: Contract) -> pa.DataFrameSchema:
    """The column-level part of the contract as a pandera schema.

    pandera is imported here, not at the top: only validate needs it, and every stage reads the
    contract (its import costs about half a second per stage process).

    Numeric columns are coerced to float64 so that a non-number (``"abc"`` in a float column) is
    reported as a coercion failure with the offending value rather than as a bare dtype mismatch.
    The other types are checked value by value as they arrive (text in a CSV, JSON values in the
    prediction log, typed values from Parquet or SQL), without coercion.
    """
    import pandera.pandas as pa

    columns: dict[str, pa.Column] = {}
    for name, spec in contract.columns.items():
        checks: list[pa.Check] = []
        if spec.min is not None:
            checks.append(pa.Check.ge(spec.min))
        if spec.max is not None:
            checks.append(pa.Check.le(spec.max))
        if spec.type == "int":
            checks.append(pa.Check(lambda s: s % 1 == 0, element_wise=False, name="is_integer"))
        if spec.type == "bool":
            checks.append(pa.Check.isin([0.0, 1.0]))
        if spec.type == "category" and spec.categories is not None:
            checks.append(pa.Check.isin(list(spec.categories)))
        if spec.type in TEXT_TYPES:
            checks.append(pa.Check(_is_text, name="is_text"))
        if spec.type == "datetime":
            checks.append(pa.Check(_is_datetime_mask, element_wise=False, name="is_datetime"))
        if spec.type == "id":
            checks.append(pa.Check(_is_key_mask, element_wise=False, name="is_key"))
        columns[name] = pa.Column(
            "float64" if spec.is_numeric else None,
            checks=checks,
            nullable=spec.nullable,
            coerce=spec.is_numeric,
            required=True,
        )
    return pa.DataFrameSchema(columns, unique=[list(key) for key in contract.unique] or None, strict=False)


def _is_text(column: pd.Series) -> pd.Series | bool:
    """True where a value is text (missing values are checked apart, by ``nullable``).

    Decided for the whole column when its dtype or a single C-level pass over it says so; only
    a column holding something else is checked value by value, to name the values that are not text.
    """
    import pandas as pd

    if isinstance(column.dtype, pd.StringDtype) or pd.api.types.infer_dtype(column, skipna=True) in {"string", "empty"}:
        return True
    return column.map(lambda value: isinstance(value, str))


def is_iso_datetime(value: object) -> bool:
    """Whether ``value`` is a date or date-time the contract takes: a datetime/date object, or ISO 8601 text.

    Text must be a calendar date (``2024-05-01``), optionally with a time (``T13:45``, seconds,
    fractions) and an offset (``Z``, ``+02:00``), and name a real day and time (no 30 February).
    """
    import datetime as dt

    import pandas as pd

    if isinstance(value, (dt.date, pd.Timestamp)):
        return not pd.isna(value)
    if not isinstance(value, str) or not ISO_DATETIME.match(value):
        return False
    try:
        dt.datetime.fromisoformat(value.replace(",", "."))
    except ValueError:
        return False
    return True


def _is_datetime_mask(series: pd.Series) -> pd.Series:
    """:func:`is_iso_datetime` of each value, vectorised (missing values pass: nullability is checked apart)."""
    import datetime as dt

    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(series):
        return pd.Series(True, index=series.index)
    missing = series.isna()
    if isinstance(series.dtype, pd.StringDtype):
        # Text as pandas reads a CSV: no conversion to objects, no date objects to look for.
        typed, texts = pd.Series(False, index=series.index), series
    else:
        values = series.astype("object")
        typed = values.map(lambda v: isinstance(v, (dt.date, pd.Timestamp)))
        texts = values.where(values.map(lambda v: isinstance(v, str)))
    shaped = texts.str.match(ISO_DATETIME).fillna(False).astype(bool)
    # pandas' ISO 8601 parser agrees with datetime.fromisoformat on these shapes, real days included.
    parsed = pd.to_datetime(
        texts.where(shaped).str.replace(",", ".", regex=False), format="ISO8601", errors="coerce", utc=True
    )
    return missing | typed | (shaped & parsed.notna())


def _is_key(value: object) -> bool:
    # Text that is not blank, or a whole number (a float key is a whole number read with gaps).
    import numpy as np

    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    return isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer()


def _is_key_mask(series: pd.Series) -> pd.Series:
    import pandas as pd

    if pd.api.types.is_integer_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return pd.Series(True, index=series.index)
    return series.map(lambda v: v is None or (isinstance(v, float) and math.isnan(v)) or _is_key(v))


def key_text(value: object) -> str | None:
    """A key as text, the one form ids are compared in: ``17``, ``17.0`` and ``"17"`` are ``"17"``.

    Missing values are ``None``. The service logs ids as clients send them and labels come from
    any table, so the monitor joins on this form.
    """
    import numpy as np
    import pandas as pd

    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):  # type: ignore[call-overload]
        return None
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return str(int(value))
    return str(value)


def bool_values(column: pd.Series) -> pd.Series:
    """A bool column as pandas' nullable ``boolean``: true/false (or 1/0) values, ``<NA>`` for missing."""
    import pandas as pd

    if isinstance(column.dtype, pd.BooleanDtype):
        return column
    numbers = pd.to_numeric(column.astype("object").where(column.notna(), None), errors="raise").astype("float64")
    return pd.Series(pd.array((numbers == 1.0).to_numpy(), dtype="boolean"), index=column.index).mask(numbers.isna())


def datetime_values(column: pd.Series) -> pd.Series:
    """A datetime column as UTC timestamps: ISO 8601 text parsed, naive values taken as UTC, ``NaT`` for missing."""
    import pandas as pd

    parsed: pd.Series
    if pd.api.types.is_datetime64_any_dtype(column):
        parsed = column.dt.tz_localize("UTC") if column.dt.tz is None else column.dt.tz_convert("UTC")
        return parsed
    values = column.astype("object").where(column.notna(), None)
    parsed = pd.to_datetime(values, format="ISO8601", utc=True)
    return parsed


def conform(df: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """The contract's columns, in contract order, with canonical dtypes.

    Numbers become float64; bools pandas' nullable ``boolean``; datetimes UTC timestamps; ids text
    (:func:`key_text`); other text columns object dtype with ``NaN`` for missing. Call only on
    data the contract has accepted.
    """
    import pandas as pd

    out: dict[str, pd.Series] = {}
    for name, spec in contract.columns.items():
        column = df[name]
        if spec.type == "bool":
            out[name] = bool_values(column)
        elif spec.is_numeric and pd.api.types.is_numeric_dtype(column):
            # Already numbers: a copy as float64, without a detour through objects.
            out[name] = column.astype("float64")
        elif spec.is_numeric:
            out[name] = pd.to_numeric(column.astype("object").where(column.notna(), None), errors="raise").astype(
                "float64"
            )
        elif spec.type == "datetime":
            out[name] = datetime_values(column)
        elif spec.type == "id":
            out[name] = column.astype("object").map(key_text).astype("object")
        else:
            out[name] = column.astype("object").where(column.notna(), float("nan"))
    return pd.DataFrame(out, index=df.index)


# Inference: a column whose values are near-unique (this share distinct, at least this many) is a
# key; whole numbers only when they also lie within a span of this many times their count (codes and
# row numbers do; measurements such as prices or incomes spread far wider).
KEY_SHARE = 0.95
MIN_KEY_VALUES = 20
KEY_SPAN = 10
# Text is free text (not a key, not a code) when this share of its values has a space in it.
WORDY_SHARE = 0.5
NOT_AN_INPUT = "not a model input as it is (a feature kind can turn it into numbers)"


@dataclass(frozen=True)
class Inferred:
    """A proposed contract and, for each column, why it got its type (what ``conveyor init`` prints)."""

    contract: Contract
    reasons: dict[str, str]

    def lines(self) -> list[str]:
        """One line per column: its name, what it became and why."""
        lines = []
        keys = {name for key in self.contract.unique for name in key}
        for name, spec in self.contract.columns.items():
            became: str = spec.type
            if spec.min is not None or spec.max is not None:
                became += f" [{_number(spec.min)}, {_number(spec.max)}]"
            if spec.categories is not None:
                became += f" of {len(spec.categories)}"
            if spec.nullable:
                became += ", nullable"
            if name in keys:
                became += ", unique"
            if not spec.feature and spec.type != "id":
                became += ", feature: false"
            lines.append(f"{name} -> {became}: {self.reasons[name]}")
        return lines


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def infer_contract(
    df: pd.DataFrame,
    *,
    target: str,
    max_categories: int = 50,
    range_margin: float = 0.5,
) -> Contract:
    """Propose a contract from a sample (see :func:`infer`, which also says why each column got its type)."""
    return infer(df, target=target, max_categories=max_categories, range_margin=range_margin).contract


def infer(
    df: pd.DataFrame,
    *,
    target: str,
    max_categories: int = 50,
    range_margin: float = 0.5,
) -> Inferred:
    """Propose a contract from a sample, with the reason for each column's type.

    In this order: true/false values are ``bool``; the source's dates and timestamps, or text
    whose every value is an ISO 8601 date or date-time, are ``datetime`` (never a category of date
    strings). A near-unique column (at least :data:`KEY_SHARE` of its values distinct, at least
    :data:`MIN_KEY_VALUES` of them) is an ``id`` whatever its name: text without spaces, or whole
    numbers within :data:`KEY_SPAN` times their count of each other (codes, row numbers); so is a
    column of distinct values named like an id (``id``, ``house_id``, ``houseId``). Text with at
    most ``max_categories`` distinct values is a ``category``; wider text is ``text`` when most
    values have spaces in them (free text), else ``string`` (codes; not a feature). Numbers are
    ``int`` or ``float`` with bounds: the sample's range widened by ``range_margin`` times its width
    on each side (never crossing zero for non-negative data), rounded outwards to two significant
    digits of that margin, whole numbers for ``int``. A key whose every value is distinct is also
    recorded under ``unique``. The target is never a key, a date or free text.
    Review the result before committing it: it describes the sample, not the world.
    """
    if target not in df.columns:
        raise ContractError(f"--target {target!r} is not a column; columns are {list(df.columns)}")
    columns: dict[str, ColumnSpec] = {}
    reasons: dict[str, str] = {}
    unique: list[tuple[str]] = []
    for name in df.columns:
        series = df[name]
        is_target = name == target
        nullable = bool(series.isna().any()) and not is_target
        spec, reason = _infer_column(
            series,
            name=str(name),
            nullable=nullable,
            is_target=is_target,
            max_categories=max_categories,
            range_margin=range_margin,
        )
        if spec.type == "id" and bool(series.notna().all()) and series.is_unique:
            unique.append((str(name),))
        columns[str(name)] = spec
        reasons[str(name)] = f"{reason} (the target)" if is_target else reason
    missing = float(df.isna().mean().max()) if len(df) else 0.0
    checks = DatasetChecks(
        min_rows=max(1, min(len(df) // 2, 1000)),
        max_missing_fraction=min(1.0, round(max(0.2, 2 * missing), 3)),
        max_duplicate_fraction=min(1.0, round(float(df.duplicated().mean()) * 2, 3)),
    )
    return Inferred(Contract(columns=columns, unique=tuple(unique), checks=checks), reasons)


def _looks_like_id(name: str) -> bool:
    # "id", "penguin_id", "penguinId", "PenguinID"; not "valid" or "squid".
    return bool(re.search(r"(^|[^A-Za-z])[iI][dD]$|[a-z](Id|ID)$", name))


def _infer_column(
    series: pd.Series, *, name: str, nullable: bool, is_target: bool, max_categories: int, range_margin: float
) -> tuple[ColumnSpec, str]:
    import datetime as dt

    import numpy as np
    import pandas as pd

    values = series.dropna()
    if len(values) == 0:
        return ColumnSpec(type="string", nullable=nullable, feature=False), "every value is missing: not a feature"
    # A boolean column with gaps is read as objects (True, False, NaN), not as a bool dtype.
    if pd.api.types.is_bool_dtype(series) or all(isinstance(v, (bool, np.bool_)) for v in values):
        return ColumnSpec(type="bool", nullable=nullable), "true/false values"
    if not is_target and (
        pd.api.types.is_datetime64_any_dtype(series) or all(isinstance(v, (dt.date, pd.Timestamp)) for v in values)
    ):
        return ColumnSpec(type="datetime", nullable=nullable), f"the source's dates or timestamps; {NOT_AN_INPUT}"
    count, distinct = len(values), int(values.nunique())
    key = _Key(
        named=not is_target and count == len(series) and distinct == count and _looks_like_id(name),
        near_unique=not is_target and distinct >= MIN_KEY_VALUES and distinct >= KEY_SHARE * count,
        count=count,
        distinct=distinct,
    )
    if pd.api.types.is_numeric_dtype(series):
        return _infer_numbers(values, key, nullable=nullable, range_margin=range_margin)
    return _infer_texts(values, key, nullable=nullable, is_target=is_target, max_categories=max_categories)


@dataclass(frozen=True)
class _Key:
    """What makes a column look like a key: distinct values named like an id, or near-unique values."""

    named: bool
    near_unique: bool
    count: int
    distinct: int


def _infer_numbers(values: pd.Series, key: _Key, *, nullable: bool, range_margin: float) -> tuple[ColumnSpec, str]:
    whole = bool((values % 1 == 0).all())
    low, high = float(values.min()), float(values.max())
    if whole and key.named:
        return ColumnSpec(type="id", nullable=nullable), "distinct whole numbers, named like an id: a key"
    span = high - low + 1
    if whole and key.near_unique and span <= KEY_SPAN * key.count:
        return ColumnSpec(type="id", nullable=nullable), (
            f"{key.distinct} distinct whole numbers in {key.count} rows, within a span of {span:.0f}"
            " (a code or a row number, not a measurement): a key"
        )
    lower, upper = _bounds(low, high, range_margin, whole=whole)
    return ColumnSpec(type="int" if whole else "float", nullable=nullable, min=lower, max=upper), (
        f"{'whole numbers' if whole else 'numbers'} from {_number_text(low)} to {_number_text(high)}"
        f"; bounds: that range widened by {range_margin:.0%} on each side"
    )


def _infer_texts(
    values: pd.Series, key: _Key, *, nullable: bool, is_target: bool, max_categories: int
) -> tuple[ColumnSpec, str]:
    texts = values.astype(str)
    # The first values first: a column of names or codes is told apart without parsing all of it.
    if not is_target and all(is_iso_datetime(v) for v in values[:20]) and bool(_is_datetime_mask(values).all()):
        return ColumnSpec(type="datetime", nullable=nullable), (
            f"every value is an ISO 8601 date or date-time; {NOT_AN_INPUT}"
        )
    wordy = float(texts.str.contains(r"\s", regex=True).mean()) >= WORDY_SHARE
    if key.named or (key.near_unique and not wordy):
        reason = "named like an id" if key.named else "without spaces"
        return ColumnSpec(
            type="id", nullable=nullable
        ), f"{key.distinct} distinct values in {key.count} rows, {reason}: a key"
    if key.near_unique and wordy:
        # Every value seen about once: no category to learn, and sentences are not keys.
        return ColumnSpec(type="text", nullable=nullable), (
            f"{key.distinct} distinct values in {key.count} rows, most with spaces: free text; {NOT_AN_INPUT}"
        )
    if key.distinct <= max_categories:
        return ColumnSpec(type="category", nullable=nullable, categories=tuple(sorted(set(texts)))), (
            f"{key.distinct} distinct values (at most --max-categories {max_categories})"
        )
    if wordy and not is_target:
        return ColumnSpec(type="text", nullable=nullable), (
            f"{key.distinct} distinct values, most with spaces: free text; {NOT_AN_INPUT}"
        )
    return ColumnSpec(type="string", nullable=nullable, feature=False), (
        f"{key.distinct} distinct values, over --max-categories {max_categories} and not free text: not a feature"
    )


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


def _bounds(low: float, high: float, range_margin: float, *, whole: bool) -> tuple[float, float]:
    """The sample's range widened by ``range_margin`` of its width, rounded outwards (see :func:`infer`)."""
    margin = (high - low) * range_margin
    lower, upper = low - margin, high + margin
    if low >= 0 and lower < 0:
        lower = 0.0
    bounds = []
    for value, up in ((lower, False), (upper, True)):
        if margin > 0:
            # Two significant digits of the margin: the digits beyond it are noise in a bound.
            step = 10.0 ** (math.floor(math.log10(margin)) - 1)
        elif value != 0 and math.isfinite(value):
            # No range to widen (a constant column): six significant digits of the value itself.
            step = 10.0 ** (math.floor(math.log10(abs(value))) - 5)
        else:
            step = 1.0
        if whole:
            step = max(step, 1.0)
        bounds.append(_outwards(value, step, up=up))
    if whole:
        return int(bounds[0]), int(bounds[1])
    return bounds[0], bounds[1]


def _outwards(value: float, step: float, *, up: bool) -> float:
    if not math.isfinite(value):
        return value
    # The quotient is rounded first: -20.2 / 0.1 is -202.00000000000003, which floor() would take to -203.
    quotient = round(value / step, 6)
    multiple = math.ceil(quotient) if up else math.floor(quotient)
    return round(multiple * step, max(0, -math.floor(math.log10(step))))
