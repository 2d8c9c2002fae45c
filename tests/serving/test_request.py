"""The request types generated from the data contract: every refusal names the field."""

from __future__ import annotations

import json
import re
from typing import Any

import pandas as pd
import pytest
from pydantic import TypeAdapter, ValidationError

from conveyor.contract import Contract, infer_contract, parse_contract
from conveyor.model.features import FeatureSpec, model_frame, rows_frame
from conveyor.serving.request import body_type, example_record, record_type

COLUMNS = ("bill_length_mm", "flipper_length_mm", "island", "sex")
GOOD: dict[str, Any] = {"bill_length_mm": 39.1, "flipper_length_mm": 181, "island": "Torgersen", "sex": "male"}


def record_adapter(contract: Contract, columns: tuple[str, ...]) -> TypeAdapter[dict[str, Any]]:
    """Validation of one record, as the service's request type validates each."""
    return TypeAdapter(record_type(contract, columns))


def errors(contract: Contract, record: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """(location, error type) for each problem pydantic finds in ``record`` sent as JSON."""
    with pytest.raises(ValidationError) as caught:
        record_adapter(contract, COLUMNS).validate_json(json.dumps(record))
    return [(tuple(e["loc"]), e["type"]) for e in caught.value.errors()]


def test_a_valid_record_passes_with_explicit_nulls(contract: Contract) -> None:
    record = record_adapter(contract, COLUMNS).validate_json(json.dumps(GOOD | {"sex": None, "bill_length_mm": None}))
    assert record == GOOD | {"sex": None, "bill_length_mm": None}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"bill_length_mm": "39.1"}, (("bill_length_mm",), "float_type")),
        ({"bill_length_mm": True}, (("bill_length_mm",), "float_type")),
        ({"flipper_length_mm": 181.5}, (("flipper_length_mm",), "int_from_float")),
        ({"flipper_length_mm": "181"}, (("flipper_length_mm",), "value_error")),
        ({"flipper_length_mm": True}, (("flipper_length_mm",), "value_error")),
        ({"bill_length_mm": 19.9}, (("bill_length_mm",), "greater_than_equal")),
        ({"flipper_length_mm": 261}, (("flipper_length_mm",), "less_than_equal")),
        ({"island": "Atlantis"}, (("island",), "literal_error")),
        ({"island": None}, (("island",), "literal_error")),
        ({"species": "Adelie"}, (("species",), "extra_forbidden")),
    ],
)
def test_each_bad_value_is_refused_by_name(contract: Contract, change: dict[str, Any], expected: Any) -> None:
    assert errors(contract, GOOD | change) == [expected]


def test_an_integral_float_is_an_integer(contract: Contract) -> None:
    record = record_adapter(contract, COLUMNS).validate_json(json.dumps(GOOD | {"flipper_length_mm": 181.0}))
    assert record["flipper_length_mm"] == 181
    assert type(record["flipper_length_mm"]) is int


def test_a_missing_key_is_refused_even_for_a_nullable_column(contract: Contract) -> None:
    record = {k: v for k, v in GOOD.items() if k != "sex"}
    assert errors(contract, record) == [(("sex",), "missing")]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_floats_are_refused(contract: Contract, literal: str) -> None:
    body = json.dumps(GOOD).replace("39.1", literal)
    with pytest.raises(ValidationError) as caught:
        record_adapter(contract, COLUMNS).validate_json(body)
    assert [(e["loc"], e["type"]) for e in caught.value.errors()] == [(("bill_length_mm",), "finite_number")]


def test_the_schema_documents_every_field(contract: Contract) -> None:
    schema = record_adapter(contract, COLUMNS).json_schema()
    assert schema["required"] == list(COLUMNS)
    assert schema["additionalProperties"] is False
    assert schema["properties"]["island"]["enum"] == ["Biscoe", "Dream", "Torgersen"]
    assert {"minimum": 20.0, "maximum": 80.0, "type": "number"} in schema["properties"]["bill_length_mm"]["anyOf"]
    # JSON Schema keywords, not pydantic's: `ge`/`le` would leave integers unbounded to a client.
    assert {"minimum": 140, "maximum": 260, "type": "integer"} in schema["properties"]["flipper_length_mm"]["anyOf"]


def test_the_body_is_required_records_only(contract: Contract) -> None:
    body = TypeAdapter(body_type(record_type(contract, COLUMNS), max_records=3))
    schema = body.json_schema()
    assert (schema["required"], schema["additionalProperties"]) == (["records"], False)
    assert (schema["properties"]["records"]["minItems"], schema["properties"]["records"]["maxItems"]) == (1, 3)
    assert body.validate_json(json.dumps({"records": [GOOD]})) == {"records": [GOOD]}
    for bad, kind in (({"records": [GOOD], "explain": True}, "extra_forbidden"), ({"records": [GOOD] * 4}, "too_long")):
        with pytest.raises(ValidationError) as caught:
            body.validate_json(json.dumps(bad))
        assert [e["type"] for e in caught.value.errors()] == [kind]


def test_column_names_that_are_not_identifiers_stay_json_keys() -> None:
    names = ("bill length", "_id", "a.b", "x-y", "2nd", "größe", "class")
    types = ("float", "bool", "float", "float", "float", "float", "float")
    contract = parse_contract({"columns": {n: {"type": t} for n, t in zip(names, types, strict=True)}})
    model = record_adapter(contract, names)
    sent = {"bill length": 1.5, "_id": True, "a.b": 1.0, "x-y": 2.0, "2nd": 3.0, "größe": 4.0, "class": 5.0}
    assert model.validate_json(json.dumps(sent)) == sent
    assert sorted(model.json_schema()["properties"]) == sorted(names)


def test_columns_outside_the_contract_are_an_error(contract: Contract) -> None:
    with pytest.raises(ValueError, match=r"not in the data contract: \['wingspan'\]"):
        record_adapter(contract, ("island", "wingspan"))


def test_rows_frame_keeps_all_null_columns_and_model_frame_types_them(contract: Contract) -> None:
    record = record_adapter(contract, COLUMNS).validate_python(GOOD | {"bill_length_mm": None, "sex": None})
    frame = rows_frame([record] * 2, COLUMNS)
    assert list(frame.columns) == list(COLUMNS)
    canonical = model_frame(frame, FeatureSpec(numeric=COLUMNS[:2], categorical=COLUMNS[2:]))
    assert canonical["bill_length_mm"].isna().all()
    assert str(canonical["bill_length_mm"].dtype) == "float64"
    assert canonical["sex"].tolist() == ["__missing__", "__missing__"]


def test_the_example_record_is_valid_for_every_contract_column(contract: Contract) -> None:
    columns = tuple(name for name, spec in contract.columns.items() if spec.feature)
    example = example_record(contract, columns)
    assert record_adapter(contract, columns).validate_python(example) == example


NAMES = ["mean radius", "size m²", "2nd.rooms-count", "class", "_private", "model_config", "schema", "copy", "label"]


@pytest.mark.parametrize("name", NAMES)
def test_a_record_takes_and_gives_back_the_column_name_as_its_key(name: str) -> None:
    contract = infer_contract(pd.DataFrame({name: [1.5, 2.0, 3.25], "y": ["a", "b", "a"]}), target="y")
    assert TypeAdapter(record_type(contract, [name])).validate_python({name: 2.5}) == {name: 2.5}


# --- the types of real tables, and the columns the model does not take ---------------------------

TYPED = parse_contract(
    {
        "columns": {
            "customer": {"type": "id"},
            "signup": {"type": "datetime", "nullable": True},
            "autopay": {"type": "bool", "nullable": True},
            "tenure": {"type": "int", "min": 0, "max": 100},
            "feedback": {"type": "text", "nullable": True},
            "churned": {"type": "bool"},
        }
    }
)
INPUTS = ("tenure", "autopay")
OTHERS = ("customer", "signup", "feedback")


def typed_errors(record: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """(location, error type) for each problem in ``record`` against the typed contract."""
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(record_type(TYPED, INPUTS, optional=OTHERS)).validate_json(json.dumps(record))
    return [(tuple(e["loc"]), e["type"]) for e in caught.value.errors()]


@pytest.mark.parametrize(
    "record",
    [
        pytest.param({"tenure": 3, "autopay": True}, id="model-inputs-only"),
        pytest.param({"tenure": 3, "autopay": None, "customer": 10001}, id="an-integer-id"),
        pytest.param({"tenure": 3, "autopay": False, "customer": "C-17", "signup": "2024-05-01"}, id="a-date"),
        pytest.param({"tenure": 3, "autopay": True, "signup": "2024-05-01T13:45:00+02:00"}, id="a-date-time"),
        pytest.param({"tenure": 3, "autopay": True, "signup": "2024-05-01 13:45:07.5Z", "feedback": None}, id="nulls"),
    ],
)
def test_a_full_row_of_the_table_is_accepted_as_sent(record: dict[str, Any]) -> None:
    validated = TypeAdapter(record_type(TYPED, INPUTS, optional=OTHERS)).validate_json(json.dumps(record))
    assert validated == record


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"autopay": 1}, (("autopay",), "bool_type")),
        ({"autopay": "true"}, (("autopay",), "bool_type")),
        ({"signup": "2024-02-30"}, (("signup",), "iso_datetime")),
        ({"signup": "1982"}, (("signup",), "iso_datetime")),
        ({"signup": "01/05/2024"}, (("signup",), "iso_datetime")),
        ({"signup": 20240501}, (("signup",), "string_type")),
        ({"customer": ""}, (("customer",), "key_type")),
        ({"customer": 17.5}, (("customer",), "key_type")),
        ({"customer": True}, (("customer",), "key_type")),
        ({"feedback": 3}, (("feedback",), "string_type")),
        ({"churned": True}, (("churned",), "extra_forbidden")),  # the target is the answer, not an input
        ({"colour": "red"}, (("colour",), "extra_forbidden")),
    ],
)
def test_each_type_refuses_by_name(change: dict[str, Any], expected: Any) -> None:
    assert typed_errors({"tenure": 3, "autopay": True} | change) == [expected]


def test_the_columns_the_model_does_not_take_are_documented_not_required() -> None:
    schema = TypeAdapter(record_type(TYPED, INPUTS, optional=OTHERS)).json_schema()
    assert schema["required"] == list(INPUTS)
    assert set(schema["properties"]) == {*INPUTS, *OTHERS}
    assert schema["properties"]["customer"]["anyOf"] == [{"type": "integer"}, {"type": "string", "minLength": 1}]
    signup = schema["properties"]["signup"]["anyOf"][0]
    assert signup["type"] == "string"
    assert re.match(signup["pattern"], "2024-05-01T13:45:00Z")
    assert not re.match(signup["pattern"], "05/01/2024")


def test_the_example_record_is_valid_for_every_type() -> None:
    columns = tuple(name for name in TYPED.columns if name != "churned")
    record = example_record(TYPED, columns)
    assert TypeAdapter(record_type(TYPED, columns)).validate_python(record) == record
