"""``conveyor schema infer``: a contract from a sample that accepts that sample and catches bad rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conveyor import cli, io
from conveyor.contract import infer_contract
from conveyor.errors import ContractError
from conveyor.stages.validate import validate

ROOT = Path(__file__).resolve().parents[2]
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
    assert (key.type, key.feature, key.min, key.max) == ("int", False, None, None)
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


def test_a_long_text_column_is_free_text_not_a_feature() -> None:
    df = houses().assign(note=lambda d: [f"note {i}" for i in range(len(d))])
    contract = infer_contract(df, target="price", max_categories=50)
    assert (contract.columns["note"].type, contract.columns["note"].feature) == ("string", False)


@pytest.mark.parametrize(("name", "is_key"), [("id", True), ("penguinId", True), ("row_ID", True), ("valid", False)])
def test_only_id_named_unique_columns_become_keys(name: str, is_key: bool) -> None:
    df = pd.DataFrame({name: np.arange(30), "y": ["a", "b"] * 15})
    contract = infer_contract(df, target="y")
    assert (contract.unique == ((name,),)) is is_key
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
