"""The feature store option's main-environment side: config, the dropped-rows check, the report (no Feast)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from conveyor import feature_store, io
from conveyor.artifacts import DroppedRow, FeatureStoreJoin, IngestReport
from conveyor.config import Config, FeatureStoreConfig
from conveyor.errors import ConfigError, DataError
from conveyor.stages import ingest
from tests.conftest import ROOT


def join(*, dropped: int, entity_rows: int = 100) -> FeatureStoreJoin:
    """A join summary with ``dropped`` rows lost to ``penguin_measurements``."""
    examples = [
        DroppedRow(
            entity={"penguin_id": 7},
            event_timestamp="2012-11-06T04:00:00+00:00",
            feature_views=["penguin_measurements"],
            ttl_days={"penguin_measurements": 365.0},
        )
    ]
    return FeatureStoreJoin(
        feature_service="penguin_species",
        feature_views=["penguin_measurements", "penguin_profiles"],
        entity_keys=["penguin_id"],
        features=["bill_length_mm", "island"],
        entity_rows=entity_rows,
        rows=entity_rows - dropped,
        dropped=dropped,
        dropped_by_view={"penguin_measurements": dropped} if dropped else {},
        dropped_examples=examples[:dropped],
    )


def test_the_option_is_off_by_default(params: Config) -> None:
    assert params.feature_store == FeatureStoreConfig()
    assert not params.feature_store.enabled


def test_the_main_environment_has_no_feast() -> None:
    # Feast needs pandas<3: it lives in feature_repo/.venv and is only ever run as a process.
    assert importlib.util.find_spec("feast") is None


@pytest.mark.parametrize(("dropped", "max_share"), [(0, 0.0), (1, 0.01), (5, 0.05)])
def test_drops_within_the_threshold_pass(dropped: int, max_share: float) -> None:
    feature_store.check_dropped(join(dropped=dropped), max_share=max_share)


def test_a_drop_above_the_threshold_names_the_entity_and_the_view() -> None:
    with pytest.raises(DataError) as info:
        feature_store.check_dropped(join(dropped=2), max_share=0.01)
    message = str(info.value)
    assert "dropped 2 of 100 entity rows (2.0%), above feature_store.max_dropped_share 0.01" in message
    assert "penguin_measurements (2)" in message
    assert "entity penguin_id=7 at 2012-11-06T04:00:00+00:00 has no row in feature view penguin_measurements" in message
    assert "TTL 365 days" in message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("repo", "no/such/repo"),
        ("entity_rows", "no/such/rows.parquet"),
        ("python", "no/such/python"),
    ],
)
def test_a_missing_input_names_its_key(key: str, value: str) -> None:
    cfg = FeatureStoreConfig(enabled=True).model_copy(update={key: value})
    with pytest.raises(ConfigError, match=rf"^feature_store\.{key}: {value} is not there"):
        feature_store.build_training_set(cfg)


def test_a_report_without_a_feature_store_is_unchanged(tmp_path: Path) -> None:
    # With the option off ingest.json keeps its keys, so its bytes (and dvc.lock) stay the same.
    report = IngestReport(source="data/penguins.csv", rows=1, columns={}, hash="h")
    io.write_artifact(report, tmp_path / "ingest.json")
    assert set(json.loads((tmp_path / "ingest.json").read_text(encoding="utf-8"))) == {
        "source",
        "rows",
        "columns",
        "hash",
    }


def test_a_report_with_a_feature_store_counts_the_drops(tmp_path: Path) -> None:
    report = ingest.summarize(
        io.read_source(str(ROOT / "data" / "penguins.csv")), source="feast:x", join=join(dropped=1)
    )
    io.write_artifact(report, tmp_path / "ingest.json")
    assert io.read_artifact(tmp_path / "ingest.json", IngestReport).feature_store == join(dropped=1)
