"""Online features from a running ``feast serve``: what it answers equals the offline store's newest values."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from helpers_feast import newest_values, served_example

from conveyor import io
from conveyor.errors import DataError
from conveyor.online_features import FeatureServerError, MissingEntityError, OnlineFeatures, with_online_features
from conveyor.predict import predict_proba

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

PENGUINS = [1, 4, 150, 344]  # 1 measured twice (2007, 2009); 4 has no measurements (nulls)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    with served_example(tmp_path_factory.mktemp("feast-online")) as served:
        yield served


@pytest.fixture(scope="module")
def client(server: tuple[str, Path]) -> Iterator[OnlineFeatures]:
    client = OnlineFeatures(server[0], feature_service="penguin_species")
    yield client
    client.close()


def test_the_online_features_equal_the_offline_values(server: tuple[str, Path], client: OnlineFeatures) -> None:
    values = offline(server[1])
    records = client.get({"penguin_id": PENGUINS})
    for penguin, record in zip(PENGUINS, records, strict=True):
        expected = values.loc[penguin, list(record)]
        assert record == {k: (None if pd.isna(v) else v) for k, v in expected.items()}, f"penguin_id={penguin}"
    assert records[0]["body_mass_g"] == 4000.0  # the 2009 measurement, the newest


def offline(repo: Path) -> pd.DataFrame:
    """Each penguin's newest offline values, both views, indexed by ``penguin_id``."""
    return newest_values(repo / "data" / "penguin_measurements.parquet").join(
        newest_values(repo / "data" / "penguin_profiles.parquet")[["island", "sex"]]
    )


def test_records_with_entity_keys_alone_predict_as_the_features_passed_directly(
    server: tuple[str, Path], client: OnlineFeatures
) -> None:
    model = io.load_model(ROOT / "models" / "model.skops")
    records = with_online_features([{"penguin_id": p} for p in PENGUINS], client, keys=["penguin_id"])
    direct = offline(server[1]).loc[PENGUINS].reset_index(drop=True)
    assert (predict_proba(model, pd.DataFrame(records)) == predict_proba(model, direct)).all()


def test_a_request_time_field_wins_and_a_missing_key_is_named(client: OnlineFeatures) -> None:
    (record,) = with_online_features([{"penguin_id": 1, "body_mass_g": 3000.0}], client, keys=["penguin_id"])
    assert record["body_mass_g"] == 3000.0
    assert "penguin_id" not in record
    with pytest.raises(DataError, match=r"^record 1: no entity key 'penguin_id'"):
        with_online_features([{"penguin_id": 1}, {"island": "Dream"}], client, keys=["penguin_id"])


def test_a_missing_entity_names_the_key(client: OnlineFeatures) -> None:
    with pytest.raises(MissingEntityError, match=r"^entity penguin_id=9999: not in the online store of feature view"):
        client.get({"penguin_id": [1, 9999]})


def test_an_unknown_feature_service_is_the_servers_error(server: tuple[str, Path]) -> None:
    client = OnlineFeatures(server[0], feature_service="nope")
    try:
        with pytest.raises(FeatureServerError, match="answered 404: Feature service nope does not exist"):
            client.get_one(penguin_id=1)
    finally:
        client.close()
