"""The online features client's reading of Feast's answer, without a server."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.online_features import FeatureServerError, MissingEntityError, OnlineFeatures, _records


def answer(values: dict[str, list[Any]], statuses: dict[str, list[str]]) -> dict[str, Any]:
    """A ``/get-online-features`` answer with ``full_feature_names``: one result per name."""
    return {
        "metadata": {"feature_names": list(values)},
        "results": [{"values": values[n], "statuses": statuses[n]} for n in values],
    }


ENTITIES = {"penguin_id": [1, 2]}
VALUES: dict[str, list[Any]] = {
    "penguin_id": [1, 2],
    "penguin_measurements__body_mass_g": [3750.0, None],
    "penguin_profiles__island": ["Torgersen", "Biscoe"],
}


def test_columns_become_one_record_per_entity_without_view_prefixes() -> None:
    statuses = {name: ["PRESENT", "PRESENT"] for name in VALUES}
    records = _records(answer(VALUES, statuses), ENTITIES, feature_service="penguin_species")
    assert records == [{"body_mass_g": 3750.0, "island": "Torgersen"}, {"body_mass_g": None, "island": "Biscoe"}]


def test_an_entity_the_store_has_not_seen_names_the_key_and_the_view() -> None:
    statuses = {name: ["PRESENT", "PRESENT"] for name in VALUES} | {
        "penguin_measurements__body_mass_g": ["PRESENT", "NOT_FOUND"]
    }
    with pytest.raises(
        MissingEntityError, match=r"^entity penguin_id=2: not in the online store of feature view penguin_measurements"
    ):
        _records(answer(VALUES, statuses), ENTITIES, feature_service="penguin_species")


@pytest.mark.parametrize("url", ["127.0.0.1:6566", "ftp://host", "http://"])
def test_a_url_that_is_not_http_is_refused(url: str) -> None:
    with pytest.raises(FeatureServerError, match="expected http"):
        OnlineFeatures(url, feature_service="penguin_species")


def test_an_unreachable_server_says_so() -> None:
    from helpers_process import free_port

    client = OnlineFeatures(f"http://127.0.0.1:{free_port()}", feature_service="penguin_species", timeout=2)
    with pytest.raises(FeatureServerError, match=r"/get-online-features failed"):
        client.get_one(penguin_id=1)
