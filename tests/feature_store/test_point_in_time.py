"""The training table takes each feature's value valid at the row's timestamp: never a later one, never past its TTL.

One Feast process (the session's ``timeline`` fixture) joins the example's definitions onto
sources written here, where one penguin's measurements and island change over time.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from helpers_feast import copy_definitions, feast_python

from conveyor import feature_store
from conveyor.artifacts import FeatureStoreJoin
from conveyor.config import FeatureStoreConfig
from conveyor.errors import DataError

pytestmark = pytest.mark.slow

T0 = pd.Timestamp("2020-01-01", tz="UTC")
DAY = pd.Timedelta(days=1)
TTL = 365 * DAY  # penguin_measurements' TTL in feature_repo/penguins.py

# penguin 1 is weighed three times and moves island once; penguin 2 is weighed once.
MEASURED = [(1, T0, 3000.0), (1, T0 + 100 * DAY, 3500.0), (1, T0 + 200 * DAY, 4000.0), (2, T0, 5000.0)]
PROFILED = [(1, T0 - 10 * DAY, "Biscoe"), (1, T0 + 150 * DAY, "Dream"), (2, T0 - 10 * DAY, "Torgersen")]
# (case, penguin, timestamp, expected body mass, expected island); None: the row is dropped.
ROWS: list[tuple[str, int, pd.Timestamp, float | None, str | None]] = [
    ("between the first two", 1, T0 + 50 * DAY, 3000.0, "Biscoe"),
    ("a second before the second", 1, T0 + 100 * DAY - pd.Timedelta(seconds=1), 3000.0, "Biscoe"),
    ("exactly at the second", 1, T0 + 100 * DAY, 3500.0, "Biscoe"),
    ("after the move", 1, T0 + 160 * DAY, 3500.0, "Dream"),
    ("within the TTL of the last", 1, T0 + 200 * DAY + TTL - DAY, 4000.0, "Dream"),
    ("past the TTL of the last", 1, T0 + 200 * DAY + TTL + DAY, None, None),
    ("before any measurement", 1, T0 - 5 * DAY, None, None),
    ("another penguin", 2, T0 + 10 * DAY, 5000.0, "Torgersen"),
]


def write_sources(data: Path) -> Path:
    """The example's three source files with the timelines above; returns the entity table."""
    measures = pd.DataFrame(MEASURED, columns=["penguin_id", "event_timestamp", "body_mass_g"])
    for column in ("bill_length_mm", "bill_depth_mm", "flipper_length_mm"):
        measures[column] = 1.0
    profiles = pd.DataFrame(PROFILED, columns=["penguin_id", "event_timestamp", "island"]).assign(sex="female")
    rows = pd.DataFrame(
        [(case, penguin, ts) for case, penguin, ts, *_ in ROWS], columns=["case", "penguin_id", "event_timestamp"]
    )
    for table, name in ((measures, "penguin_measurements"), (profiles, "penguin_profiles")):
        table.assign(created=table["event_timestamp"]).to_parquet(data / f"{name}.parquet", index=False)
    rows.to_parquet(data / "labels.parquet", index=False)
    return data / "labels.parquet"


@pytest.fixture(scope="module")
def timeline(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, FeatureStoreJoin]:
    """The training table and join summary built from the timelines (one Feast process)."""
    repo = copy_definitions(tmp_path_factory.mktemp("feast-pit") / "repo", with_sources=False)
    cfg = FeatureStoreConfig(
        enabled=True, repo=str(repo), entity_rows=str(write_sources(repo / "data")), python=str(feast_python())
    )
    return feature_store.build_training_set(cfg)


@pytest.mark.parametrize(("case", "mass", "island"), [(c, m, i) for c, _, _, m, i in ROWS if m is not None])
def test_a_row_takes_the_values_valid_at_its_timestamp(
    timeline: tuple[pd.DataFrame, FeatureStoreJoin], case: str, mass: float, island: str
) -> None:
    table, _ = timeline
    row = table[table["case"] == case]
    assert len(row) == 1, f"{case}: the row is missing from the training table"
    assert row["body_mass_g"].item() == mass
    assert row["island"].item() == island


def test_a_value_past_its_ttl_is_missing_not_carried_forward(timeline: tuple[pd.DataFrame, FeatureStoreJoin]) -> None:
    table, join = timeline
    dropped = {c for c, _, _, m, _ in ROWS if m is None}
    assert not set(table["case"]) & dropped, "a row without a value within the TTL got one anyway"
    assert (join.entity_rows, join.rows, join.dropped) == (len(ROWS), len(ROWS) - len(dropped), len(dropped))
    assert join.dropped_by_view == {"penguin_measurements": 2, "penguin_profiles": 0}
    assert [row.entity for row in join.dropped_examples] == [{"penguin_id": 1}, {"penguin_id": 1}]


def test_the_table_keeps_the_entity_table_order_without_keys_or_timestamps(
    timeline: tuple[pd.DataFrame, FeatureStoreJoin],
) -> None:
    table, _ = timeline
    assert list(table["case"]) == [c for c, _, _, m, _ in ROWS if m is not None]
    assert "penguin_id" not in table.columns
    assert "event_timestamp" not in table.columns


def test_the_drops_stop_the_line_above_the_threshold(timeline: tuple[pd.DataFrame, FeatureStoreJoin]) -> None:
    _, join = timeline
    feature_store.check_dropped(join, max_share=0.25)
    with pytest.raises(DataError, match=r"dropped 2 of 8 entity rows \(25\.0%\).*penguin_measurements \(2\)") as info:
        feature_store.check_dropped(join, max_share=0.2)
    assert "entity penguin_id=1 at 2021-07-20T00:00:00+00:00 has no row in feature view penguin_measurements" in str(
        info.value
    )
