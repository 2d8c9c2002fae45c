"""The Dask engine's validation finds what the pandas engine finds, in its words, across partitions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from distributed import Client

from conveyor import io
from conveyor.contract import ColumnSpec, Contract, contract_to_dict, parse_contract
from conveyor.engine import tables
from conveyor.engine import validate as dask_validate
from conveyor.stages import validate
from tests.stages import test_leakage as leakage
from tests.stages.conftest import CORRUPTIONS, PENGUINS, Corruption

VALIDATE_STOPS = [c for c in CORRUPTIONS if c.stage == "validate"]


def findings(result: validate.ValidationResult) -> list[dict[str, Any]]:
    """Every finding as a dict, in a fixed order (the engines may list contract checks in another)."""
    return sorted((f.model_dump(mode="json") for f in result.findings), key=repr)


def both(
    client: Client,
    df: pd.DataFrame,
    contract: Contract,
    tmp_path: Path,
    *,
    target: str = "species",
    task: str = "classification",
) -> tuple[validate.ValidationResult, validate.ValidationResult]:
    """The pandas engine's result on ``df``, and the Dask engine's on it written as ingest writes it, in 3 partitions."""
    io.write_table(df, tmp_path / "raw.parquet")
    table = tables.read_table(tmp_path / "raw.parquet").repartition(npartitions=3)
    expected = validate.validate(io.read_table(tmp_path / "raw.parquet"), contract, target=target, task=task)
    return expected, dask_validate.validate(client, table, contract, target=target, task=task)


@pytest.mark.parametrize("corruption", VALIDATE_STOPS, ids=lambda c: c.name)
def test_both_engines_report_the_same_findings(
    dask_client: Client, contract: Contract, tmp_path: Path, corruption: Corruption
) -> None:
    df = io.read_source(str(corruption.write(tmp_path / "source.csv")))
    expected, got = both(dask_client, df, contract, tmp_path)
    assert not expected.passed
    assert findings(got) == findings(expected)
    assert (got.rows, got.columns) == (expected.rows, expected.columns)


def test_clean_data_passes_both(dask_client: Client, contract: Contract, tmp_path: Path) -> None:
    expected, got = both(dask_client, io.read_source(str(PENGUINS)), contract, tmp_path)
    assert got.passed
    assert expected.passed
    assert findings(got) == findings(expected)


def test_duplicates_across_partitions_and_a_unique_key(dask_client: Client, contract: Contract, tmp_path: Path) -> None:
    df = io.read_source(str(PENGUINS))
    df.insert(0, "tag", [f"P{i:04d}" for i in range(len(df))])
    # The last rows repeat the first ones: each duplicate sits in another partition than its original.
    df = pd.concat([df, df.iloc[:4]], ignore_index=True)
    raw = contract_to_dict(contract)
    raw["columns"] = {"tag": {"type": "id"}} | raw["columns"]
    raw["unique"] = [["tag"]]
    keyed = parse_contract(raw)
    expected, got = both(dask_client, df, keyed, tmp_path)
    checks = {f.check for f in expected.findings}
    assert {"unique", "duplicate_rows"} <= checks
    assert findings(got) == findings(expected)


def leak_table(kind: str, rows: int = 1000) -> tuple[pd.DataFrame, str, str]:
    """A table whose target a set of columns reproduces (test_leakage's tables), its target and task."""
    df = leakage.table(rows)
    if kind == "mean_of_two":
        df = df.drop(columns="label")
        df["y"] = (df["x1"] + df["x3"]) / 2
        return df, "y", "regression"
    df = df.drop(columns="y")
    if kind == "threshold_of_two":
        df["label"] = np.where(df["x2"] - df["x3"] > 0.3, "yes", "no")
    else:
        df["size"] = np.random.default_rng(2).choice(["S", "M", "L"], len(df))
        df["label"] = df["colour"] + "-" + df["size"]
    return df, "label", "classification"


def set_leaks(result: validate.ValidationResult) -> list[str]:
    return [f.message for f in result.findings if f.check == "label_leakage" and f.column is None]


@pytest.mark.parametrize("kind", ["mean_of_two", "threshold_of_two", "two_categories"])
def test_both_engines_find_the_same_sets_of_columns(dask_client: Client, tmp_path: Path, kind: str) -> None:
    df, target, task = leak_table(kind)
    contract = leakage.contract_of(df, target)
    expected, got = both(dask_client, df, contract, tmp_path, target=target, task=task)
    assert len(set_leaks(expected)) == 1
    assert findings(got) == findings(expected)


def test_the_sets_are_searched_on_the_pandas_engines_seeded_sample(dask_client: Client, tmp_path: Path) -> None:
    # More labelled rows than the sample holds, some rows unlabelled: the sample is drawn, by place among the labelled.
    df, target, task = leak_table("threshold_of_two", rows=12_000)
    df.loc[df.index % 997 == 5, target] = None
    contract = leakage.contract_of(df, target)
    expected, got = both(dask_client, df, contract, tmp_path, target=target, task=task)
    assert f"cross-validated on {validate.LEAK_SAMPLE_ROWS} rows" in set_leaks(expected)[0]
    assert findings(got) == findings(expected)

    table = tables.read_table(tmp_path / "raw.parquet").repartition(npartitions=4)
    parts = [part.compute() for part in table.to_delayed()]
    summaries = [dask_validate.summarize(part, contract, target=target, task=task) for part in parts]
    sample = dask_validate.leak_sample(dask_client, table, summaries, contract, target=target)
    raw = io.read_table(tmp_path / "raw.parquet")
    columns = [*dask_validate.leak_features(contract, list(raw.columns), target), target]
    pandas_sample = raw.loc[raw[target].notna(), columns].sample(
        n=validate.LEAK_SAMPLE_ROWS, random_state=validate.LEAK_SEED
    )
    pd.testing.assert_frame_equal(sample, pandas_sample.reset_index(drop=True))
    again = dask_validate.leak_sample(dask_client, table, summaries, contract, target=target)
    pd.testing.assert_frame_equal(again, sample)


@pytest.mark.parametrize("labels", ["varied", "constant"])
def test_both_engines_warn_about_the_same_id_like_columns(dask_client: Client, tmp_path: Path, labels: str) -> None:
    df = leakage.table(1000).drop(columns="label")
    rng = np.random.default_rng(5)
    df["district"] = rng.permutation(len(df)) + 1000  # all distinct: an ID
    # 96% distinct, the repeated codes spread over all three partitions: still an ID, counted across them.
    codes = rng.permutation(len(df))
    codes[rng.choice(len(df), 40, replace=False)] = codes[:40]
    df["code"] = "c" + pd.Series(codes).astype(str)
    df["code"] = df["code"].mask(df.index % 97 == 0)  # missing values do not count
    df["batch"] = rng.integers(0, 900, len(df))  # about 60% distinct: not an ID
    if labels == "constant":
        df["y"] = 1.0
    contract = leakage.contract_of(
        df,
        "y",
        district=ColumnSpec(type="int"),
        code=ColumnSpec(type="category", nullable=True),
        batch=ColumnSpec(type="int"),
    )
    contract = Contract(columns=contract.columns, checks=contract.checks)  # no unique keys: they would not be checked
    expected, got = both(dask_client, df, contract, tmp_path, target="y", task="regression")
    assert {f.column for f in expected.warnings if f.check == "id_like"} == {"district", "code"}
    assert findings(got) == findings(expected)
