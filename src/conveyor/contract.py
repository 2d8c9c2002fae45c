"""The data contract: what every row must look like, as a file a person can read and review.

A contract is YAML::

    columns:
      island: {type: category, nullable: false, categories: [Biscoe, Dream, Torgersen]}
      bill_length_mm: {type: float, nullable: true, min: 20.0, max: 80.0}
    unique: []                 # column sets that identify a row, e.g. [[penguin_id]]
    checks: {min_rows: 50, max_missing_fraction: 0.2, max_duplicate_fraction: 0.0}

This module turns it into a pandera schema (validate stage), infers one from a sample
(``conveyor schema infer``) and tells which columns are numeric or categorical (features).
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from conveyor.config import describe_errors
from conveyor.errors import ContractError

if TYPE_CHECKING:
    import pandas as pd
    import pandera.pandas as pa

ColumnType = Literal["int", "float", "bool", "category", "string"]
NUMERIC_TYPES: frozenset[str] = frozenset({"int", "float", "bool"})


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ColumnSpec(_Strict):
    """One column: its type, whether it may be missing, and its allowed values."""

    type: ColumnType
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] | None = None
    feature: bool = True
    description: str | None = None

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
        if spec.type in {"category", "string"}:
            checks.append(pa.Check(_is_text, name="is_text"))
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


def conform(df: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """The contract's columns, in contract order, with canonical dtypes.

    Numbers become float64 (booleans 0/1); text columns become object dtype with ``NaN`` for
    missing. Call only on data the contract has accepted.
    """
    import pandas as pd

    out: dict[str, pd.Series] = {}
    for name, spec in contract.columns.items():
        column = df[name]
        if spec.is_numeric and pd.api.types.is_numeric_dtype(column):
            # Already numbers (bool included): a copy as float64, without a detour through objects.
            out[name] = column.astype("float64")
        elif spec.is_numeric:
            out[name] = pd.to_numeric(column.astype("object").where(column.notna(), None), errors="raise").astype(
                "float64"
            )
        else:
            out[name] = column.astype("object").where(column.notna(), float("nan"))
    return pd.DataFrame(out, index=df.index)


def infer_contract(
    df: pd.DataFrame,
    *,
    target: str,
    max_categories: int = 50,
    range_margin: float = 0.5,
) -> Contract:
    """Propose a contract from a sample.

    Text columns with at most ``max_categories`` distinct values become categories; wider ones
    become free text (not features). Numeric bounds are the sample's range widened by
    ``range_margin`` times its width on each side (never crossing zero for non-negative data),
    so ordinary new data passes while unit mistakes do not. Columns whose every value is distinct
    and whose name says id (``id``, ``house_id``, ``houseId``) are recorded as a unique key, with
    no bounds or category list, and excluded from the features.
    Review the result before committing it: it describes the sample, not the world.
    """
    if target not in df.columns:
        raise ContractError(f"--target {target!r} is not a column; columns are {list(df.columns)}")
    columns: dict[str, ColumnSpec] = {}
    unique: list[tuple[str]] = []
    for name in df.columns:
        series = df[name]
        nullable = bool(series.isna().any()) and name != target
        is_key = name != target and bool(series.notna().all()) and series.is_unique and _looks_like_id(str(name))
        if is_key:
            unique.append((str(name),))
        columns[str(name)] = (
            _infer_key(series) if is_key else _infer_column(series, nullable, max_categories, range_margin)
        )
    missing = float(df.isna().mean().max()) if len(df) else 0.0
    checks = DatasetChecks(
        min_rows=max(1, min(len(df) // 2, 1000)),
        max_missing_fraction=min(1.0, round(max(0.2, 2 * missing), 3)),
        max_duplicate_fraction=min(1.0, round(float(df.duplicated().mean()) * 2, 3)),
    )
    return Contract(columns=columns, unique=tuple(unique), checks=checks)


def _looks_like_id(name: str) -> bool:
    # "id", "penguin_id", "penguinId", "PenguinID"; not "valid" or "squid".
    return bool(re.search(r"(^|[^A-Za-z])[iI][dD]$|[a-z](Id|ID)$", name))


def _infer_key(series: pd.Series) -> ColumnSpec:
    import pandas as pd

    # Identifiers are not features and have no range or category list: new rows bring new ids.
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return ColumnSpec(type="int" if bool((series % 1 == 0).all()) else "float", feature=False)
    return ColumnSpec(type="string", feature=False)


def _infer_column(series: pd.Series, nullable: bool, max_categories: int, range_margin: float) -> ColumnSpec:
    import pandas as pd

    values = series.dropna()
    # A boolean column with gaps is read as objects (True, False, NaN), not as a bool dtype.
    if pd.api.types.is_bool_dtype(series) or (len(values) and all(isinstance(v, bool) for v in values)):
        return ColumnSpec(type="bool", nullable=nullable)
    if pd.api.types.is_numeric_dtype(series):
        is_int = bool((values % 1 == 0).all())
        low, high = (float(values.min()), float(values.max())) if len(values) else (0.0, 0.0)
        margin = (high - low) * range_margin
        lower = low - margin
        if low >= 0 and lower < 0:
            lower = 0.0
        upper = high + margin
        if is_int:
            lower, upper = math.floor(lower), math.ceil(upper)
        return ColumnSpec(
            type="int" if is_int else "float",
            nullable=nullable,
            min=_round(lower, up=False),
            max=_round(upper, up=True),
        )
    distinct = sorted({str(v) for v in values})
    if len(distinct) <= max_categories:
        return ColumnSpec(type="category", nullable=nullable, categories=tuple(distinct))
    return ColumnSpec(type="string", nullable=nullable, feature=False)


def _round(value: float, *, up: bool) -> float:
    # Six significant digits keep the file readable; rounding outwards keeps the sample inside.
    if value == 0 or not math.isfinite(value):
        return value
    step = 10.0 ** (math.floor(math.log10(abs(value))) - 5)
    return float(f"{(math.ceil if up else math.floor)(value / step) * step:.6g}")
