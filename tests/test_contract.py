"""The data contract: parsing errors name the column and key; the pandera schema; conform()."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest

from conveyor import cli, io
from conveyor.contract import Contract, conform, infer, infer_contract, key_text, pandera_schema, parse_contract
from conveyor.errors import ContractError
from conveyor.stages.validate import validate
from tests.conftest import ROOT, customers


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
            one_column(type="float", min=5, max=1), "c.yaml: columns.x: min 5 is greater than max 1", id="min>max"
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


def test_conform_keeps_booleans_and_turns_numeric_text_into_numbers() -> None:
    contract = parse_contract({"columns": {"flag": {"type": "bool", "nullable": True}, "n": {"type": "int"}}})
    out = conform(pd.DataFrame({"flag": [True, False, None], "n": ["1", "2", "3"]}), contract)
    assert out["flag"].dtype == "boolean"
    assert out["flag"].tolist()[:2] == [True, False]
    assert pd.isna(out["flag"].iloc[2])
    assert out["n"].tolist() == [1.0, 2.0, 3.0]


def test_conform_turns_numeric_dtypes_into_float64_and_keeps_bools_bool() -> None:
    contract = parse_contract({"columns": {"flag": {"type": "bool"}, "n": {"type": "int"}, "x": {"type": "float"}}})
    frame = pd.DataFrame({"flag": [True, False], "n": np.array([1, 2], dtype="int32"), "x": [0.5, np.nan]})
    out = conform(frame, contract)
    assert out.dtypes.tolist() == [pd.BooleanDtype(), np.float64, np.float64]
    assert out["flag"].tolist() == [True, False]
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


PENGUINS = ROOT / "data" / "penguins.csv"


def houses(rows: int = 300, seed: int = 0) -> pd.DataFrame:
    """A small synthetic regression table: an id, numbers, a category, a flag and a price."""
    rng = np.random.default_rng(seed)
    area = rng.normal(110, 25, rows).round(1)
    df = pd.DataFrame(
        {
            "house_id": np.arange(5000, 5000 + rows),
            "area_m2": area,
            "rooms": rng.integers(1, 8, rows),
            "district": rng.choice(["north", "south", "east", "west"], rows),
            "garden": rng.random(rows) > 0.5,
            "price": area * 3000 + rng.normal(0, 20_000, rows),
        }
    )
    df.loc[df.index[::25], "district"] = None
    return df


def infer_with_cli(data: Path, target: str, out: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``conveyor schema infer`` in process; return what it printed."""
    assert cli.main(["schema", "infer", "--data", str(data), "--target", target, "--out", str(out)]) == 0
    return capsys.readouterr().out


def test_inferred_penguins_contract_accepts_the_penguins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    printed = infer_with_cli(PENGUINS, "species", tmp_path / "contract.yaml", capsys)
    assert "8 columns from 344 rows" in printed
    contract = io.read_contract(tmp_path / "contract.yaml")
    df = io.read_source(str(PENGUINS))
    assert validate(df, contract, target="species", task="classification").findings == []
    assert contract.columns["species"].categories == ("Adelie", "Chinstrap", "Gentoo")
    assert contract.columns["sex"].nullable
    assert not contract.columns["species"].nullable
    assert contract.columns["flipper_length_mm"].type == "int"
    assert contract.columns["bill_length_mm"].type == "float"
    assert contract.unique == ()


def test_inferred_contract_catches_bad_rows(penguins: pd.DataFrame) -> None:
    contract = infer_contract(penguins, target="species")
    penguins.loc[0, "body_mass_g"] = 42_000.0  # grams typed as milligrams / 100
    penguins.loc[1, "island"] = "Atlantis"
    checks = {(f.column, f.check) for f in validate(penguins, contract, target="species", task="classification").errors}
    assert checks == {("body_mass_g", "max"), ("island", "categories")}


def test_infer_on_another_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample = houses()
    sample.to_parquet(tmp_path / "houses.parquet", index=False)
    infer_with_cli(tmp_path / "houses.parquet", "price", tmp_path / "contract.yaml", capsys)
    contract = io.read_contract(tmp_path / "contract.yaml")

    assert contract.unique == (("house_id",),)
    key = contract.columns["house_id"]
    assert (key.type, key.feature, key.min, key.max) == ("id", False, None, None)
    assert contract.columns["district"].categories == ("east", "north", "south", "west")
    assert contract.columns["district"].nullable
    assert contract.columns["garden"].type == "bool"
    assert contract.numeric_columns() == ("area_m2", "rooms", "garden", "price")
    assert contract.categorical_columns() == ("district",)
    assert validate(sample, contract, target="price", task="regression").findings == []

    # A new batch (new ids, same distribution) passes; a repeated id does not.
    fresh = houses(seed=1).assign(house_id=lambda d: d["house_id"] + 10_000)
    assert validate(fresh, contract, target="price", task="regression").passed
    fresh.loc[1, "house_id"] = int(fresh["house_id"].iloc[0])
    errors = validate(fresh, contract, target="price", task="regression").errors
    assert [(f.column, f.check) for f in errors] == [("house_id", "unique")]


def test_a_long_text_column_is_free_text_not_a_model_input() -> None:
    df = houses().assign(note=lambda d: [f"note {i}" for i in range(len(d))])
    contract = infer_contract(df, target="price", max_categories=50)
    assert contract.columns["note"].type == "text"
    assert "note" not in (*contract.numeric_columns(), *contract.categorical_columns())


@pytest.mark.parametrize(
    ("name", "rows", "is_key"),
    [
        ("id", 10, True),
        ("penguinId", 10, True),
        ("row_ID", 10, True),
        # Ten distinct numbers are too few to call a key unless the name says so; thirty are not.
        ("valid", 10, False),
        ("valid", 30, True),
    ],
)
def test_unique_columns_become_keys_by_name_or_by_count(name: str, rows: int, is_key: bool) -> None:
    df = pd.DataFrame({name: np.arange(rows), "y": ["a", "b"] * (rows // 2)})
    contract = infer_contract(df, target="y")
    assert (contract.unique == ((name,),)) is is_key
    assert (contract.columns[name].type == "id") is is_key
    assert contract.columns[name].feature is not is_key


def test_a_constant_column_with_many_duplicates_is_accepted() -> None:
    # Rounding the bounds to six digits must not cut off the sample's own value (1234564 -> 1234560).
    df = pd.DataFrame({"x": [1234564.0] * 10, "y": ["a", "b"] * 5})
    contract = infer_contract(df, target="y")
    spec = contract.columns["x"]
    assert (spec.min, spec.max) == (1234560.0, 1234570.0)
    assert contract.checks.max_duplicate_fraction == 1.0
    assert validate(df, contract, target="y", task="classification").passed


def test_unknown_target_is_refused(penguins: pd.DataFrame) -> None:
    with pytest.raises(ContractError, match="--target 'label' is not a column"):
        infer_contract(penguins, target="label")


def test_cli_reports_an_unknown_target_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["schema", "infer", "--data", str(PENGUINS), "--target", "label", "--out", str(tmp_path / "c.yaml")]
    assert cli.main(argv) == 1
    assert capsys.readouterr().err.startswith("conveyor schema: error: --target 'label' is not a column")
    assert not (tmp_path / "c.yaml").exists()


# --- the types of real tables: datetime, bool, text, id -----------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(
            {"type": "id", "feature": True}, "c.yaml: columns.x: type id is a key, never a feature", id="id-feature"
        ),
        pytest.param(
            {"type": "datetime", "min": 0}, "c.yaml: columns.x: min/max apply to numeric columns", id="datetime-min"
        ),
        pytest.param(
            {"type": "text", "categories": ["a"]},
            "c.yaml: columns.x: categories apply to columns of type category",
            id="text-categories",
        ),
    ],
)
def test_new_types_refuse_keys_that_do_not_apply_naming_the_column(spec: dict[str, Any], expected: str) -> None:
    with pytest.raises(ContractError) as caught:
        parse_contract(one_column(**spec), source="c.yaml")
    assert str(caught.value).startswith(expected)


def test_an_id_is_never_a_feature() -> None:
    contract = parse_contract({"columns": {"x": {"type": "id"}, "y": {"type": "float"}}})
    assert contract.columns["x"].feature is False
    assert contract.numeric_columns() == ("y",)
    assert contract.columns_of("id") == ("x",)


def test_integer_bounds_stay_integers_in_the_file(tmp_path: Path) -> None:
    contract = parse_contract(
        {"columns": {"n": {"type": "int", "min": 140, "max": 260}, "x": {"type": "float", "max": 8.0}}}
    )
    io.write_contract(contract, tmp_path / "c.yaml")
    text = (tmp_path / "c.yaml").read_text(encoding="utf-8")
    assert "min: 140\n" in text
    assert "max: 260\n" in text
    assert "max: 8.0\n" in text
    assert io.read_contract(tmp_path / "c.yaml") == contract


def failing(contract: Contract, df: pd.DataFrame) -> list[tuple[str, str, Any]]:
    """(column, check, value) of each value the contract's schema refuses in ``df``."""
    try:
        pandera_schema(contract).validate(df, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        return [(str(c), str(k), v) for c, k, v in cases[["column", "check", "failure_case"]].itertuples(index=False)]
    return []


@pytest.mark.parametrize(
    ("values", "refused"),
    [
        pytest.param(["2024-05-01", "2024-05-01T13:45", "2024-05-01 13:45:07.123", None], [], id="dates-and-times"),
        pytest.param(
            ["2024-05-01T13:45:00Z", "2024-05-01T13:45:00+02:00", "2024-05-01T13:45:00-0330"], [], id="offsets"
        ),
        pytest.param(
            ["2024-02-30", "1982", "01/05/2024", "soon"], ["2024-02-30", "1982", "01/05/2024", "soon"], id="not-iso"
        ),
        pytest.param([20240501, "2024-05-01"], [20240501], id="a-number"),
    ],
)
def test_datetime_columns_take_iso_8601_text(values: list[Any], refused: list[Any]) -> None:
    contract = parse_contract({"columns": {"when": {"type": "datetime", "nullable": True}}})
    found = failing(contract, pd.DataFrame({"when": pd.Series(values, dtype=object)}))
    assert [(column, check) for column, check, _ in found] == [("when", "is_datetime")] * len(refused)
    assert [value for *_, value in found] == refused


def test_datetime_columns_take_the_sources_own_timestamps() -> None:
    import datetime as dt

    contract = parse_contract({"columns": {"when": {"type": "datetime"}}})
    assert failing(contract, pd.DataFrame({"when": pd.to_datetime(["2024-05-01", "2024-06-01"])})) == []
    assert failing(contract, pd.DataFrame({"when": [dt.date(2024, 5, 1), dt.datetime(2024, 5, 1, 9)]})) == []


def test_datetimes_conform_to_utc_timestamps() -> None:
    import datetime as dt

    contract = parse_contract({"columns": {"when": {"type": "datetime", "nullable": True}}})
    text = pd.DataFrame({"when": ["2024-05-01", "2024-05-01T12:00:00+02:00", "2024-05-01T23:30:00Z", None]})
    out = conform(text, contract)["when"]
    assert str(out.dt.tz) == "UTC"
    assert out.tolist()[:3] == [
        pd.Timestamp("2024-05-01 00:00", tz="UTC"),
        pd.Timestamp("2024-05-01 10:00", tz="UTC"),  # the offset applied
        pd.Timestamp("2024-05-01 23:30", tz="UTC"),
    ]
    assert pd.isna(out.iloc[3])
    dates = conform(pd.DataFrame({"when": [dt.date(2024, 5, 1), None, None, None]}), contract)["when"]
    assert dates.iloc[0] == pd.Timestamp("2024-05-01", tz="UTC")
    naive = conform(pd.DataFrame({"when": pd.to_datetime(["2024-05-01 08:00"] * 4)}), contract)["when"]
    assert naive.iloc[0] == pd.Timestamp("2024-05-01 08:00", tz="UTC")


@pytest.mark.parametrize(
    ("values", "refused"),
    [
        pytest.param([17, 18, 19], [], id="integers"),
        pytest.param([17.0, None, 19.0], [], id="whole-floats-with-gaps"),
        pytest.param(["A-17", "b 18", "0019"], [], id="text"),
        pytest.param(["", "  ", "ok"], ["", "  "], id="blank"),
        pytest.param([1.5, 2.0, True], [1.5, True], id="fractions-and-bools"),
    ],
)
def test_id_columns_take_whole_numbers_and_non_blank_text(values: list[Any], refused: list[Any]) -> None:
    contract = parse_contract({"columns": {"key": {"type": "id", "nullable": True}}})
    found = failing(contract, pd.DataFrame({"key": pd.Series(values, dtype=object)}))
    assert [(column, check) for column, check, _ in found] == [("key", "is_key")] * len(refused)
    assert [value for *_, value in found] == refused


@pytest.mark.parametrize(
    ("value", "text"),
    [(17, "17"), (np.int64(17), "17"), (17.0, "17"), ("17", "17"), ("0017", "0017"), ("A-1", "A-1"), (None, None)],
)
def test_keys_have_one_text_form(value: Any, text: str | None) -> None:
    assert key_text(value) == text
    assert key_text(float("nan")) is None


def test_ids_conform_to_text_and_text_stays_text() -> None:
    contract = parse_contract({"columns": {"key": {"type": "id"}, "note": {"type": "text", "nullable": True}}})
    out = conform(pd.DataFrame({"key": [17, 18], "note": ["so slow", None]}), contract)
    assert out["key"].tolist() == ["17", "18"]
    assert out["note"].dtype == object
    assert out["note"].iloc[0] == "so slow"
    assert pd.isna(out["note"].iloc[1])
    assert failing(contract, pd.DataFrame({"key": [1, 2], "note": ["fine", 3]})) == [("note", "is_text", 3)]


@pytest.mark.parametrize(
    "values",
    [
        pytest.param([True, False, None], id="bools"),
        pytest.param([1, 0, None], id="ones-and-zeros"),
        pytest.param(pd.array([True, False, None], dtype="boolean"), id="nullable-boolean"),
    ],
)
def test_bools_conform_to_nullable_booleans(values: Any) -> None:
    contract = parse_contract({"columns": {"flag": {"type": "bool", "nullable": True}}})
    out = conform(pd.DataFrame({"flag": values}), contract)["flag"]
    assert out.dtype == "boolean"
    assert out.tolist()[:2] == [True, False]
    assert pd.isna(out.iloc[2])


# --- inference of the types ---------------------------------------------------------------------


def test_a_real_looking_table_gets_each_type_and_a_reason_per_column(tmp_path: Path) -> None:
    df = customers()
    df.to_csv(tmp_path / "customers.csv", index=False)
    inferred = infer(io.read_source(str(tmp_path / "customers.csv")), target="churned")
    types = {name: spec.type for name, spec in inferred.contract.columns.items()}
    assert types == {
        "customer": "id",  # unique codes, not named like an id
        "signup": "datetime",
        "last_seen": "datetime",
        "plan": "category",
        "monthly_fee": "float",
        "tenure_months": "int",
        "autopay": "bool",
        "newsletter": "bool",
        "feedback": "text",
        "churned": "bool",
    }
    assert inferred.contract.unique == (("customer",),)
    assert inferred.contract.columns["autopay"].nullable
    lines = inferred.lines()
    assert [line.split(" -> ")[0] for line in lines] == list(df.columns)
    assert lines[0].startswith("customer -> id, unique: 600 distinct whole numbers in 600 rows")
    assert lines[1].startswith("signup -> datetime: every value is an ISO 8601 date")
    assert lines[-1] == "churned -> bool: true/false values (the target)"
    # The contract it wrote accepts the table it came from.
    assert validate(
        io.read_source(str(tmp_path / "customers.csv")), inferred.contract, target="churned", task="classification"
    ).passed


def test_a_handful_of_iso_dates_is_a_datetime_never_a_category() -> None:
    df = pd.DataFrame({"year": [f"{1970 + i % 12}-01-01" for i in range(60)], "y": ["a", "b"] * 30})
    assert infer_contract(df, target="y").columns["year"].type == "datetime"


def test_timestamps_from_parquet_or_sql_are_datetimes(tmp_path: Path) -> None:
    import datetime as dt

    df = pd.DataFrame(
        {
            "stamp": pd.date_range("2024-01-01", periods=30, freq="h", tz="Europe/Paris"),
            "day": [dt.date(2024, 1, 1 + i) for i in range(30)],
            "y": ["a", "b"] * 15,
        }
    )
    df.to_parquet(tmp_path / "t.parquet")
    contract = infer_contract(io.read_source(str(tmp_path / "t.parquet")), target="y")
    assert (contract.columns["stamp"].type, contract.columns["day"].type) == ("datetime", "datetime")
    assert validate(io.read_source(str(tmp_path / "t.parquet")), contract, target="y", task="classification").passed


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        pytest.param(list(range(1001, 1041)), "id", id="a-dense-unique-code"),
        pytest.param([1001 + 3 * i for i in range(38)] + [1001, 1004], "id", id="near-unique"),
        pytest.param([20_000 + 1_733 * i for i in range(40)], "int", id="spread-out-measurements"),
        pytest.param([f"K{i:05d}" for i in range(40)], "id", id="unique-codes"),
        pytest.param([f"{i} Elm Street" for i in range(40)], "text", id="unique-sentences"),
        pytest.param([f"C{i % 30:03d}" for i in range(40)], "category", id="few-codes"),
    ],
)
def test_near_unique_columns_are_keys_whatever_their_name(values: list[Any], kind: str) -> None:
    df = pd.DataFrame({"district": values, "y": ["a", "b"] * 20})
    assert infer_contract(df, target="y").columns["district"].type == kind


def test_wide_codes_that_are_neither_keys_nor_text_stay_strings() -> None:
    df = pd.DataFrame({"ticket": [f"T{i % 60:03d}" for i in range(120)], "y": ["a", "b"] * 60})
    spec = infer_contract(df, target="y").columns["ticket"]
    assert (spec.type, spec.feature) == ("string", False)


def test_the_target_is_never_a_key_or_a_date() -> None:
    df = pd.DataFrame({"x": np.arange(40) % 7, "code": [f"K{i:03d}" for i in range(40)]})
    assert infer_contract(df, target="code").columns["code"].type == "category"
    df = pd.DataFrame({"x": np.arange(40) % 7, "when": [f"2024-01-{1 + i % 2:02d}" for i in range(40)]})
    assert infer_contract(df, target="when").columns["when"].type == "category"


@pytest.mark.parametrize(
    ("values", "bounds"),
    [
        # Two significant digits of the margin (half the range): -20.1, not -20.2001.
        pytest.param([-13.4, -5.0, 0.0], (-20.1, 6.7), id="negative"),
        pytest.param([2.0, 5.5, 9.0], (0.0, 12.5), id="never-below-zero"),
        pytest.param([32.1, 45.0, 59.6], (18.0, 74.0), id="penguin-bills"),
        pytest.param([172, 200, 231], (142, 261), id="integers"),
        pytest.param([2700, 4000, 6300], (900, 8100), id="wide-integers"),
    ],
)
def test_bounds_are_rounded_outwards_to_clean_numbers(values: list[float], bounds: tuple[float, float]) -> None:
    spec = infer_contract(pd.DataFrame({"x": values, "y": ["a", "b", "a"]}), target="y").columns["x"]
    assert (spec.min, spec.max) == bounds
    assert all(isinstance(bound, int) for bound in bounds) is (spec.type == "int")
    assert all(type(bound) is type(given) for bound, given in zip((spec.min, spec.max), bounds, strict=True))


def test_schema_infer_prints_a_line_per_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    customers().to_csv(tmp_path / "customers.csv", index=False)
    printed = infer_with_cli(tmp_path / "customers.csv", "churned", tmp_path / "contract.yaml", capsys).splitlines()
    assert len(printed) == 11
    assert printed[0].startswith("  customer -> id, unique: ")
    assert printed[-1].startswith("schema infer: 10 columns from 600 rows")
