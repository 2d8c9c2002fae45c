"""validate's leak and ID detection: what reproduces the target stops the line, naming the columns;
a strong but honest feature does not; near-unique codes are flagged as IDs."""

from __future__ import annotations

import ast
import re
import time

import numpy as np
import pandas as pd
import pytest

from conveyor.contract import ColumnSpec, Contract, infer_contract
from conveyor.stages.validate import LEAK_SAMPLE_ROWS, validate


def table(rows: int = 1000, *, seed: int = 0) -> pd.DataFrame:
    """Three honest numbers and a category; ``y`` (regression) and ``label`` (classification) depend on them noisily."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3))
    frame = pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2], "colour": rng.choice(["red", "blue"], rows)})
    frame["y"] = x[:, 0] + 0.5 * x[:, 1] + rng.normal(0, 0.5, rows)
    frame["label"] = np.where(frame["y"] + rng.normal(0, 0.5, rows) > 0, "yes", "no")
    return frame


def contract_of(df: pd.DataFrame, target: str, **overrides: ColumnSpec) -> Contract:
    inferred = infer_contract(df, target=target)
    return Contract(columns=inferred.columns | overrides, unique=inferred.unique, checks=inferred.checks)


def leaks(df: pd.DataFrame, target: str, task: str, contract: Contract | None = None) -> list[str | list[str]]:
    """Each leak found: its column, or the columns a set's message names."""
    result = validate(df, contract or contract_of(df, target), target=target, task=task)
    found: list[str | list[str]] = []
    for finding in result.errors:
        if finding.check == "label_leakage":
            named = re.match(r"columns (\[.*?\]) reproduce", finding.message)
            found.append(finding.column or (ast.literal_eval(named.group(1)) if named else "?"))
    return found


def other_target(task: str) -> str:
    return "label" if task == "regression" else "y"


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_honest_features_pass_however_strong(task: str) -> None:
    df = table()
    target = "y" if task == "regression" else "label"
    strong = df.drop(columns=other_target(task))
    # x1 explains most of y (r2 ≈ 0.7) and nearly decides the label: strong, not a leak.
    assert leaks(strong, target, task) == []


def test_a_copy_of_the_target_is_a_leak() -> None:
    df = table().drop(columns="label").assign(copy=lambda d: d["y"] * 2.54 + 1)
    assert leaks(df, "y", "regression") == ["copy"]


def test_a_one_to_one_relabelling_is_a_leak() -> None:
    df = table().drop(columns="y")
    df["code"] = df["label"].map({"yes": "Y1", "no": "N0"})
    assert leaks(df, "label", "classification") == ["code"]


def test_the_mean_of_two_columns_is_a_leak_naming_both_and_only_them() -> None:
    df = table().drop(columns="label")
    df["y"] = (df["x1"] + df["x3"]) / 2  # the table: r2 1.0000, accepted
    assert leaks(df, "y", "regression") == [["x1", "x3"]]
    message = str(validate(df, contract_of(df, "y"), target="y", task="regression").errors[0])
    assert "columns ['x1', 'x3'] reproduce the target 'y'" in message
    assert "mark them feature: false in the data contract" in message


def test_a_linear_combination_of_three_with_noise_below_the_bar_is_a_leak() -> None:
    df = table().drop(columns="label")
    rng = np.random.default_rng(1)
    df["y"] = 3 * df["x1"] - 2 * df["x2"] + 0.5 * df["x3"] + rng.normal(0, 1e-3, len(df))
    assert leaks(df, "y", "regression") == [["x1", "x2", "x3"]]


def test_a_label_that_thresholds_a_sum_of_two_columns_is_a_leak() -> None:
    df = table().drop(columns="y")
    df["label"] = np.where(df["x2"] - df["x3"] > 0.3, "yes", "no")
    assert leaks(df, "label", "classification") == [["x2", "x3"]]


def test_a_label_made_of_two_categories_is_a_leak() -> None:
    df = table().drop(columns=["y", "label"])
    rng = np.random.default_rng(2)
    df["size"] = rng.choice(["S", "M", "L"], len(df))
    df["label"] = df["colour"] + "-" + df["size"]
    found = leaks(df, "label", "classification")
    assert found == [["colour", "size"]]


def test_columns_marked_feature_false_are_never_flagged() -> None:
    df = table().drop(columns="label")
    df["y"] = (df["x1"] + df["x3"]) / 2
    contract = contract_of(df, "y", x3=ColumnSpec(type="float", feature=False))
    assert leaks(df, "y", "regression", contract) == []


def test_a_unique_code_not_named_like_an_id_is_warned_about() -> None:
    df = table().drop(columns="label")
    df["district"] = np.random.default_rng(3).permutation(len(df)) + 1000
    df["district_name"] = "d" + df["district"].astype(str)
    # Inferred, these would be an id and free text (not features); declared as a user may, they are features.
    inferred = contract_of(df, "y", district=ColumnSpec(type="int"), district_name=ColumnSpec(type="category"))
    # Nor does the contract declare them unique keys, as an inferred one would.
    contract = Contract(columns=inferred.columns, checks=inferred.checks)
    result = validate(df, contract, target="y", task="regression")
    warned = {f.column: f.message for f in result.warnings if f.check == "id_like"}
    assert set(warned) == {"district", "district_name"}
    assert warned["district"].startswith("100.0% of its 1000 values are distinct: it looks like an ID")
    assert result.passed, "an ID is a warning: it may be a quantity"


def test_the_default_data_has_no_leak_and_no_id(penguins: pd.DataFrame, contract: Contract) -> None:
    # Bill and flipper measurements nearly decide the species: strong, honest features.
    result = validate(penguins, contract, target="species", task="classification")
    assert [f for f in result.findings if f.check in {"label_leakage", "id_like"}] == []


def test_measurements_with_many_values_are_not_ids() -> None:
    df = table().drop(columns="label")
    result = validate(df, contract_of(df, "y"), target="y", task="regression")
    assert [f for f in result.warnings if f.check == "id_like"] == []


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_the_search_is_bounded_and_cheap_on_a_wide_table(task: str) -> None:
    rng = np.random.default_rng(4)
    rows = 50_000
    df = pd.DataFrame(rng.normal(size=(rows, 20)), columns=[f"x{i}" for i in range(20)])
    df["y"] = df.sum(axis=1) + rng.normal(size=rows)
    target = "y"
    if task == "classification":
        df["label"] = np.where(df.pop("y") > 0, "a", "b")
        target = "label"
    contract = contract_of(df, target)
    start = time.perf_counter()
    assert leaks(df, target, task, contract) == []
    # 20 columns, LEAK_SAMPLE_ROWS of 50,000 rows: about 2 s here, bounded well under what a repro's validate may take.
    assert time.perf_counter() - start < 10
    assert rows > LEAK_SAMPLE_ROWS


def test_a_single_class_is_named_as_such_not_as_a_leak() -> None:
    df = table().assign(label="only")
    assert leaks(df, "label", "classification") == [], "any column 'reproduces' a constant label"
