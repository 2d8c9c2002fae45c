"""The hash split both engines share: the same rows whatever the partitioning, class quotas kept."""

from __future__ import annotations

from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from distributed import Client

from conveyor import io
from conveyor.config import Config, SplitConfig
from conveyor.contract import Contract, conform
from conveyor.engine import hashsplit
from conveyor.engine.split import held_out
from conveyor.stages import split as stages_split
from conveyor.stages.split import split
from tests.conftest import configured


def test_a_rows_side_does_not_depend_on_its_position(penguins: pd.DataFrame) -> None:
    cfg = SplitConfig(test_size=0.25, seed=11)
    _, test = split(penguins, cfg, target="species", stratify=True)
    shuffled = penguins.sample(frac=1.0, random_state=0).reset_index(drop=True)
    _, shuffled_test = split(shuffled, cfg, target="species", stratify=True)
    key = list(penguins.columns)
    pd.testing.assert_frame_equal(
        test.sort_values(key, ignore_index=True), shuffled_test.sort_values(key, ignore_index=True)
    )


def test_quotas_add_up_to_the_test_size_by_largest_remainder() -> None:
    quotas = hashsplit.quotas({"a": 10, "b": 7, "c": 3}, 0.25, target="y", stratified=True)
    # ceil(0.25 * 20) = 5 rows; exact shares 2.5, 1.75, 0.75 floor to 2, 1, 0; the two left go to b and c (.75 each).
    assert quotas == {"a": 2, "b": 2, "c": 1}
    assert hashsplit.quotas({"a": 20}, 0.25, target="y", stratified=False) == {hashsplit.ONE_GROUP: 5}


def test_identical_rows_go_to_the_same_side(penguins: pd.DataFrame) -> None:
    doubled = pd.concat([penguins, penguins], ignore_index=True)
    train, test = split(doubled, SplitConfig(test_size=0.3, seed=2), target="species", stratify=True)
    key = list(penguins.columns)
    assert train.merge(test, on=key, how="inner").empty


@pytest.mark.parametrize("case", [(1, True), (4, True), (3, False)], ids=["1-stratified", "4-stratified", "3-plain"])
def test_both_engines_put_the_same_rows_on_each_side(
    dask_client: Client, penguins: pd.DataFrame, contract: Contract, params: Config, case: tuple[int, bool]
) -> None:
    partitions, stratify = case
    validated = conform(penguins, contract)
    cfg = configured(params, split={"test_size": 0.3, "seed": 5})
    _, expected = split(validated, cfg.split, target="species", stratify=stratify)
    table = dd.from_pandas(validated, npartitions=partitions)
    mask = held_out(dask_client, table, cfg, stratify=stratify)
    got = table[mask].compute().reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected)
    assert len(got) == int(np.ceil(0.3 * len(validated)))


def lonely_in_test(penguins: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The penguins with one Emperor, and a seed whose unstratified split puts it in the test split."""
    lonely = pd.concat([penguins, penguins.iloc[[0]].assign(species="Emperor")], ignore_index=True)
    for seed in range(100):
        _, test = split(lonely, SplitConfig(seed=seed), target="species", stratify=False)
        if "Emperor" in set(test["species"]):
            return lonely, seed
    raise AssertionError("no seed puts the Emperor in the test split")


@pytest.mark.usefixtures("on_test_client")
@pytest.mark.parametrize("engine", ["pandas", "dask"])
def test_a_class_only_in_the_test_split_stops_the_split_stage(
    engine: str, penguins: pd.DataFrame, params: Config, tmp_path: Path
) -> None:
    lonely, seed = lonely_in_test(penguins)
    data = tmp_path / "validated.parquet"
    io.write_table(lonely, data)
    dask = {"model": {"estimator": "xgboost", "params": {}}, "tune": {"enabled": False}} if engine == "dask" else {}
    outs = {"train_out": tmp_path / "train.parquet", "test_out": tmp_path / "test.parquet"}
    cfg = configured(params, engine=engine, split={"seed": seed, "stratify": False}, **dask)
    with pytest.raises(hashsplit.SplitError, match=r"class\(es\) 'Emperor' of 'species' fell only in the test split"):
        stages_split.run(cfg, data=data, **outs)
    assert not outs["train_out"].exists(), "nothing written"
    # Stratified, the one Emperor cannot be on both sides either: the split says so before cutting.
    cfg = configured(params, engine=engine, split={"seed": seed, "stratify": True}, **dask)
    with pytest.raises(hashsplit.SplitError, match=r"fewer than 2 rows"):
        stages_split.run(cfg, data=data, **outs)
    # Another class with a second row, unstratified: both sides hold every class, and the split is written.
    cfg = configured(params, engine=engine, split={"seed": seed, "stratify": False}, **dask)
    stages_split.run(cfg, data=_with_second_emperor(lonely, data, seed=seed), **outs)
    assert "Emperor" in set(io.read_table(outs["train_out"])["species"])


def _with_second_emperor(lonely: pd.DataFrame, data: Path, *, seed: int) -> Path:
    emperors = lonely[lonely["species"] == "Emperor"]
    for mass in range(1, 50):  # a second, different Emperor row that hashes into the train split
        table = pd.concat([lonely, emperors.assign(body_mass_g=float(mass))], ignore_index=True)
        train, _ = split(table, SplitConfig(seed=seed), target="species", stratify=False)
        if "Emperor" in set(train["species"]):
            io.write_table(table, data)
            return data
    raise AssertionError("no second Emperor lands in the train split")
