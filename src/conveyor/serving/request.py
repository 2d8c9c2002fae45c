"""The service's request types, generated from the data contract.

One record is a ``TypedDict`` with a key per model input column: its type, range, allowed
categories and nullability come from the contract, so a request the contract would refuse is
refused at the door (a 4xx naming the field) and the OpenAPI page documents every field. A
``TypedDict`` rather than a model class because validation then yields plain dicts keyed by the
contract's column names (spaces, dots, leading digits and all), which the predictors take as
they are: no object per record, no dump back to a dict, no aliases.

Choices, applied the same way to every field:

- Every model input is required; a nullable column accepts an explicit ``null``, not an absent
  key (an absent key is more often a client bug than a deliberate "unknown").
- The contract's other columns (ids, dates, text, columns in ``features.drop``; not the target)
  may be sent too, checked by the same rules, and are ignored by the model: a row of the user's own
  table can be posted as it is, and its ids reach the prediction log.
- Types are strict: ``"39.1"`` is not a number and ``true`` is not a number. An integer column
  accepts ``181`` and ``181.0`` (pandas writes integer columns with gaps as floats) but not ``181.5``.
  A ``bool`` is JSON ``true``/``false``; a ``datetime`` an ISO 8601 string (``"2024-05-01"``,
  ``"2024-05-01T13:45:00Z"``), kept as sent; an ``id`` a string or a whole number.
- Floats must be finite: ``NaN`` and ``Infinity`` are refused (the JSON parser accepts them).
- A category outside the contract's list is refused, not passed to the encoder: the model has
  never seen it, and an explicit error is more useful to a client than a silent guess.
- Unknown fields are refused (``extra="forbid"``), including the target column, and so are
  unknown keys beside ``records`` in the request body.
- A model fed from a feature store (``keys``: its entity keys) takes records with the entity keys,
  each a whole number or text, and the model inputs the store does not hold (request-time
  fields); a stored feature may still be sent, and then wins over the fetched value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, NotRequired

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictStr,
    TypeAdapter,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict

from conveyor.contract import ISO_DATETIME, ColumnSpec, Contract, is_iso_datetime

__all__ = ["body_type", "example_record", "field_type", "record_type", "request_type"]

RECORD_CONFIG = ConfigDict(extra="forbid", strict=True)
# The functional form, typed as Any: the keys and the name are only known at run time.
_typed_dict: Any = TypedDict


def _number_only(value: Any) -> Any:
    # Lax integer parsing would also take "181" and true; only JSON numbers may become integers.
    if isinstance(value, (str, bool)):
        raise ValueError("Input should be a valid integer")
    return value


def _iso_datetime(value: str) -> str:
    if not is_iso_datetime(value):
        raise PydanticCustomError(
            "iso_datetime", "Input should be an ISO 8601 date or date-time, e.g. 2024-05-01 or 2024-05-01T13:45:00Z"
        )
    return value


def _key(value: Any) -> Any:
    # One check rather than a union: a union's errors name each branch (`k.int`, `k.str`) in `loc`.
    if (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, str) and value.strip()):
        return value
    raise PydanticCustomError("key_type", "Input should be a key: a whole number or text that is not blank")


KEY_SCHEMA = {"anyOf": [{"type": "integer"}, {"type": "string", "minLength": 1}]}


def field_type(spec: ColumnSpec) -> Any:
    """The annotated Python type one contract column accepts in a request."""
    description = spec.description
    base: Any
    if spec.type == "float":
        base = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=spec.min, le=spec.max)]
    elif spec.type == "int":
        # The bounds before the validator: after it, pydantic writes them to the JSON schema as
        # `ge`/`le`, which JSON Schema ignores, instead of `minimum`/`maximum`.
        base = Annotated[int, Field(strict=False, ge=spec.min, le=spec.max), BeforeValidator(_number_only)]
    elif spec.type == "bool":
        base = StrictBool
    elif spec.type == "category" and spec.categories:
        base = Literal[tuple(spec.categories)]
    elif spec.type == "datetime":
        # Kept as the text sent: it is logged as JSON, and a feature kind parses it as train did.
        base = Annotated[
            str, Field(strict=True, json_schema_extra={"pattern": ISO_DATETIME.pattern}), AfterValidator(_iso_datetime)
        ]
    elif spec.type == "id":
        base = Annotated[int | str, PlainValidator(_key, json_schema_input_type=int | str), WithJsonSchema(KEY_SCHEMA)]
    else:
        base = StrictStr
    if spec.nullable:
        base = base | None
    return Annotated[base, Field(description=description)]


KeyValue = Annotated[
    int | str,
    PlainValidator(_key, json_schema_input_type=int | str),
    WithJsonSchema(KEY_SCHEMA),
    Field(description="An entity key: the features of this entity are fetched from the feature store"),
]


def record_type(
    contract: Contract,
    columns: Sequence[str],
    *,
    optional: Sequence[str] = (),
    keys: Sequence[str] = (),
    name: str = "Record",
) -> Any:
    """A ``TypedDict`` for one input record: a required key per column in ``columns``, an optional one per ``optional``.

    ``columns`` are the model's input columns (from the packaged model's metadata), ``optional``
    the contract's other columns a record may carry (:attr:`conveyor.bundle.Bundle.other_columns`); each must be in the
    contract. The keys are the contract's column names whatever they contain. ``keys`` are
    required entity keys (a model fed from a feature store), typed by the contract if it has
    them, else as any key.
    """
    unknown = [column for column in (*columns, *optional) if column not in contract.columns]
    if unknown:
        raise ValueError(f"model input columns not in the data contract: {unknown}")
    fields = {key: field_type(contract.columns[key]) if key in contract.columns else KeyValue for key in keys}
    fields |= {column: field_type(contract.columns[column]) for column in columns if column not in fields}
    fields |= {column: NotRequired[field_type(contract.columns[column])] for column in optional if column not in fields}
    record = _typed_dict(name, fields)
    record.__pydantic_config__ = RECORD_CONFIG
    return record


def body_type(record: Any, *, max_records: int, example: Mapping[str, Any] | None = None) -> Any:
    """The request body ``{"records": [record, ...]}``: 1 to ``max_records`` records, no other key."""
    records = Annotated[
        list[record],
        Field(
            min_length=1,
            max_length=max_records,
            description=f"1 to {max_records} records, each with every model input column (and, if wished, "
            "the contract's other columns but the target: ignored by the model, ids logged)",
            examples=[[dict(example)]] if example is not None else None,
        ),
    ]
    body = _typed_dict("PredictRequest", {"records": records})
    body.__pydantic_config__ = RECORD_CONFIG
    return body


def example_record(contract: Contract, columns: Sequence[str]) -> dict[str, Any]:
    """A valid record: the middle of each numeric range, the first category.

    It is the OpenAPI example and the service's warm-up input, so it must pass the record type.
    """
    example: dict[str, Any] = {}
    for column in columns:
        spec = contract.columns[column]
        if spec.is_numeric and spec.type != "bool":
            low = spec.min if spec.min is not None else (spec.max if spec.max is not None else 0.0)
            high = spec.max if spec.max is not None else low
            middle = (low + high) / 2
            example[column] = round(middle) if spec.type == "int" else middle
        elif spec.type == "bool":
            example[column] = False
        elif spec.type == "datetime":
            example[column] = "2024-05-01T12:00:00Z"
        elif spec.type == "id":
            example[column] = "1"
        elif spec.categories:
            example[column] = spec.categories[0]
        else:
            example[column] = ""
    return example


def request_type(
    contract: Contract,
    columns: Sequence[str],
    *,
    max_records: int,
    optional: Sequence[str] = (),
    keys: Sequence[str] = (),
) -> TypeAdapter[dict[str, Any]]:
    """Validation of a whole request body, from JSON bytes to ``{"records": [dict, ...]}``.

    ``columns`` are the required columns (the model's inputs, or those a feature store does not
    provide), ``optional`` the other columns a record may carry
    (:attr:`conveyor.bundle.Bundle.other_columns`), ``keys`` the required entity keys (see
    :func:`record_type`); the body's example (on the OpenAPI page) is :func:`example_record`, with
    ``1`` for each key.
    """
    record = record_type(contract, columns, optional=optional, keys=keys)
    example = dict.fromkeys(keys, 1) | example_record(contract, columns)
    return TypeAdapter(body_type(record, max_records=max_records, example=example))
