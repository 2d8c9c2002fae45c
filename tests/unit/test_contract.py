"""The data contract: parsing errors name the column and key; the pandera schema; conform()."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest

from conveyor import io
from conveyor.contract import Contract, conform, pandera_schema, parse_contract
from conveyor.errors import ContractError
from conveyor.stages.validate import validate


def one_column(**spec: Any) -> dict[str, Any]:
    """A contract mapping with one column ``x`` described by ``spec``."""
    return {"columns": {"x": spec}}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(one_column(type="decimal"), "c.yaml: columns.x.type: expected 'int', 'float'", id="bad-type"),
        pytest.param(
            one_column(type="float", nulable=True),
            "c.yaml: columns.x.nulable: unknown key; expected one of ['categories', 'description'",
            id="unknown-column-key",
        ),
        pytest.param(
            one_column(type="category", min=1), "c.yaml: columns.x: min/max apply to numeric columns", id="min-on-text"
        ),
        pytest.param(
            one_column(type="float", min=5, max=1), "c.yaml: columns.x: min 5.0 is greater than max 1.0", id="min>max"
        ),
        pytest.param(
            one_column(type="int", categories=["a"]),
            "c.yaml: columns.x: categories apply to columns of type category",
            id="categories-on-int",
        ),
        pytest.param(
            one_column(type="float", min="low"), "c.yaml: columns.x.min: expected a valid number", id="min-not-a-number"
        ),
        pytest.param(
            {**one_column(type="float"), "unique": [["y"]]},
            "c.yaml: unique: the key ['y'] names columns not in the contract: ['y']",
            id="unique-key-unknown-column",
        ),
        pytest.param(
            {**one_column(type="float"), "checks": {"max_missing_fraction": 1.5}},
            "c.yaml: checks.max_missing_fraction: expected less than or equal to 1, got 1.5",
            id="fraction-above-1",
        ),
        pytest.param(
            {**one_column(type="float"), "checks": {"min_row": 3}},
            "c.yaml: checks.min_row: unknown key; expected one of ['max_duplicate_fraction', 'max_missing_fraction', 'min_rows']",
            id="unknown-check",
        ),
        pytest.param({"columns": {}}, "c.yaml: columns: ", id="no-columns"),
        pytest.param(None, "c.yaml: (top level): expected a mapping of keys, got None", id="empty-file"),
    ],
)
def test_contract_errors_name_the_column_and_key(raw: object, expected: str) -> None:
    with pytest.raises(ContractError) as caught:
        parse_contract(raw, source="c.yaml")
    assert str(caught.value).startswith(expected)


def test_invalid_yaml_contract_is_a_contract_error(tmp_path: Path) -> None:
    path = tmp_path / "contract.yaml"
    path.write_text("columns:\n  x: {type: float\n", encoding="utf-8")
    with pytest.raises(ContractError, match=f"^{path}: not valid YAML at line 3"):
        io.read_contract(path)


def test_contract_round_trips_through_yaml(tmp_path: Path, contract: Contract) -> None:
    io.write_contract(contract, tmp_path / "contract.yaml")
    assert io.read_contract(tmp_path / "contract.yaml") == contract


def test_schema_has_one_column_per_contract_column(contract: Contract) -> None:
    schema = pandera_schema(contract)
    assert list(schema.columns) == list(contract.columns)
    numeric = {name for name, column in schema.columns.items() if column.coerce}
    assert numeric == set(contract.numeric_columns()) | {"year"}
    assert schema.columns["sex"].nullable
    assert not schema.columns["island"].nullable


def test_schema_accepts_the_default_data(penguins: pd.DataFrame, contract: Contract) -> None:
    pandera_schema(contract).validate(penguins)


@pytest.mark.parametrize(
    ("column", "value", "check"),
    [
        ("bill_depth_mm", 31.0, "less_than_or_equal_to(30.0)"),
        ("bill_depth_mm", 7.9, "greater_than_or_equal_to(8.0)"),
        ("flipper_length_mm", 200.5, "is_integer"),
        ("island", "Biscoe ", "isin(['Biscoe', 'Dream', 'Torgersen'])"),
        ("island", None, "not_nullable"),
    ],
)
def test_schema_rejects(penguins: pd.DataFrame, contract: Contract, column: str, value: Any, check: str) -> None:
    penguins[column] = penguins[column].astype(object)
    penguins.loc[7, column] = value
    with pytest.raises(pa.errors.SchemaErrors) as caught:
        pandera_schema(contract).validate(penguins, lazy=True)
    failures = caught.value.failure_cases
    assert set(failures["check"].astype(str)) == {check}
    assert set(failures["column"]) == {column}


def test_bool_columns_accept_true_false_and_reject_other_numbers() -> None:
    contract = parse_contract({"columns": {"flag": {"type": "bool", "nullable": True}}})
    pandera_schema(contract).validate(pd.DataFrame({"flag": [True, False, None]}))
    with pytest.raises(pa.errors.SchemaError):
        pandera_schema(contract).validate(pd.DataFrame({"flag": [1, 2]}))


def test_unique_keys_are_checked_by_validate() -> None:
    contract = parse_contract(
        {
            "columns": {
                "id": {"type": "int", "feature": False},
                "x": {"type": "float"},
                "y": {"type": "category", "categories": ["a", "b"]},
            },
            "unique": [["id"]],
            "checks": {"min_rows": 1},
        }
    )
    df = pd.DataFrame({"id": [1, 2, 2, 3], "x": [0.1, 0.2, 0.3, 0.4], "y": ["a", "b", "a", "b"]})
    result = validate(df, contract, target="y", task="classification")
    assert [(f.column, f.check, f.examples) for f in result.errors] == [("id", "unique", [2])]


def test_text_columns_refuse_numbers(contract: Contract, penguins: pd.DataFrame) -> None:
    penguins["sex"] = penguins["sex"].astype(object)
    penguins.loc[0, "sex"] = 1
    result = validate(penguins, contract, target="species", task="classification")
    assert ("sex", "type") in {(f.column, f.check) for f in result.errors}


def test_a_value_that_is_not_text_is_named(contract: Contract, penguins: pd.DataFrame) -> None:
    penguins["island"] = penguins["island"].astype(object)
    penguins.loc[3, "island"] = 7.5
    result = validate(penguins, contract, target="species", task="classification")
    assert [f.examples for f in result.errors if (f.column, f.check) == ("island", "type")] == [[7.5]]


@pytest.mark.parametrize("dtype", ["str", "object", "category"])
def test_text_columns_pass_in_any_text_dtype(contract: Contract, penguins: pd.DataFrame, dtype: Any) -> None:
    penguins["sex"] = penguins["sex"].astype(dtype)
    assert validate(penguins, contract, target="species", task="classification").errors == []


def test_conform_orders_columns_and_fixes_dtypes(penguins: pd.DataFrame, contract: Contract) -> None:
    shuffled = penguins[list(reversed(penguins.columns))].assign(extra=1)
    shuffled.index = shuffled.index + 100
    out = conform(shuffled, contract)
    assert list(out.columns) == list(contract.columns)
    assert out.index.equals(shuffled.index)
    for name, spec in contract.columns.items():
        assert out[name].dtype == (np.float64 if spec.is_numeric else object), name
    assert pd.isna(out["sex"].iloc[list(out.index).index(103)])
    assert out["year"].tolist() == penguins["year"].astype(float).tolist()


def test_conform_turns_booleans_and_numeric_text_into_numbers() -> None:
    contract = parse_contract({"columns": {"flag": {"type": "bool", "nullable": True}, "n": {"type": "int"}}})
    out = conform(pd.DataFrame({"flag": [True, False, None], "n": ["1", "2", "3"]}), contract)
    assert out["flag"].tolist()[:2] == [1.0, 0.0]
    assert np.isnan(out["flag"].iloc[2])
    assert out["n"].tolist() == [1.0, 2.0, 3.0]


def test_conform_turns_numeric_dtypes_into_float64() -> None:
    contract = parse_contract({"columns": {"flag": {"type": "bool"}, "n": {"type": "int"}, "x": {"type": "float"}}})
    frame = pd.DataFrame({"flag": [True, False], "n": np.array([1, 2], dtype="int32"), "x": [0.5, np.nan]})
    out = conform(frame, contract)
    assert out.dtypes.tolist() == [np.float64] * 3
    assert out["flag"].tolist() == [1.0, 0.0]
    assert out["n"].tolist() == [1.0, 2.0]
    assert out["x"].iloc[0] == 0.5
    assert np.isnan(out["x"].iloc[1])


def test_numeric_and_categorical_columns_follow_the_contract(contract: Contract) -> None:
    assert contract.numeric_columns() == (
        "bill_length_mm",
        "bill_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
        "year",
    )
    assert contract.categorical_columns() == ("species", "island", "sex")


@pytest.mark.parametrize(
    ("codes", "leaks"),
    [
        pytest.param({"a": 1.0, "b": 2.0, "c": 3.0}, True, id="one-to-one"),
        pytest.param({"a": 1.0, "b": 1.0, "c": 3.0}, False, id="two-labels-share-a-value"),
    ],
)
def test_a_numeric_relabelling_of_the_target_is_leakage(codes: dict[str, float], leaks: bool) -> None:
    contract = parse_contract(
        {"columns": {"y": {"type": "category", "categories": ["a", "b", "c"]}, "x": {"type": "float"}}}
    )
    y = ["a", "b", "c"] * 40
    frame = pd.DataFrame({"y": y, "x": [codes[label] for label in y]})
    result = validate(frame, contract, target="y", task="classification")
    assert (("x", "label_leakage") in {(f.column, f.check) for f in result.errors}) is leaks
