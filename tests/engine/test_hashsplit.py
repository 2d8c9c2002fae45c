"""The hash split both engines share: the same rows whatever the partitioning, class quotas kept."""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from distributed import Client

from conveyor.config import Config, SplitConfig
from conveyor.contract import Contract, conform
from conveyor.engine import hashsplit
from conveyor.engine.split import held_out
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
