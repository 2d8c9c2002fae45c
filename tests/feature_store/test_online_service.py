"""The BentoML service of a model trained from the feature store, fed by a real ``feast serve``.

``bentoml serve`` takes records giving ``penguin_id`` alone, fetches their features from the
feature server (``CONVEYOR_FEAST_URL``: the bundle's own address is a dead one here) and predicts
what the same model predicts from those features passed directly.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.bundle import Bundle
from conveyor.serving.online_features import FEAST_URL_VARIABLE, OnlineFeatures
from tests.conftest import free_port
from tests.feature_store.conftest import FEATURES, online_model, served_example
from tests.serving.conftest import Served, Serving, serving
from tests.serving.test_service import sync_client

pytestmark = pytest.mark.slow

PENGUINS = [1, 4, 150, 344]  # 1 measured twice (its 2009 values are served); 4 has no measurements (nulls)


@pytest.fixture(scope="module")
def feature_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with served_example(tmp_path_factory.mktemp("feast-service")) as (url, _):
        yield url


@pytest.fixture(scope="module")
def service(bundle: Bundle, feature_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serving]:
    tag = online_model(bundle, f"http://127.0.0.1:{free_port()}")  # nothing listens there: the variable wins
    extra: dict[str, str] = {FEAST_URL_VARIABLE: feature_server}
    with serving(tag, tmp_path_factory.mktemp("online-service"), open_files=None, **extra) as served:
        yield served


def post(url: str, body: Any) -> tuple[int, Any]:
    """POST ``body`` as JSON: the status and the decoded answer."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_entity_keys_alone_predict_as_the_same_features_passed_directly(
    bundle: Bundle, feature_server: str, service: Serving
) -> None:
    client = OnlineFeatures(feature_server, feature_service="penguin_species")
    try:
        features = client.get({"penguin_id": PENGUINS})
    finally:
        client.close()
    assert features[0]["body_mass_g"] == 4000.0  # penguin 1's newest (2009) mass
    direct = Served(bundle)
    for path in ("/predict", "/predict_proba"):
        status, fed = post(service.url + path, {"records": [{"penguin_id": p} for p in PENGUINS]})
        assert status == 200, fed
        expected = direct.post(path, {"records": features})
        assert expected.status_code == 200, expected.text
        assert fed == expected.json(), path
    # BentoML's own client finds the API and its types, and is fed the same way.
    with sync_client(service.url) as bento:
        assert (
            bento.predict(records=[{"penguin_id": 150}]) == direct.post("/predict", {"records": features[2:3]}).json()
        )


def test_an_entity_the_store_lacks_is_a_404_naming_the_key_and_the_value(service: Serving) -> None:
    status, answer = post(service.url + "/predict", {"records": [{"penguin_id": 1}, {"penguin_id": 9999}]})
    assert status == 404, answer
    assert answer["detail"][0]["loc"] == ["records", 1, "penguin_id"]
    assert answer["detail"][0]["msg"].startswith("entity penguin_id=9999: not in the online store of feature view")


def test_the_metadata_says_what_is_fetched(service: Serving) -> None:
    with urllib.request.urlopen(service.url + "/metadata", timeout=30) as response:
        metadata = json.loads(response.read())
    assert metadata["online_features"] == {
        "feature_service": "penguin_species",
        "entity_keys": ["penguin_id"],
        "features": FEATURES,
    }


def test_a_stopped_feature_server_is_a_503_in_one_line(bundle: Bundle, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with serving(online_model(bundle, url), tmp_path) as served:
        status, answer = post(served.url + "/predict", {"records": [{"penguin_id": 1}]})
        assert status == 503, answer
        assert answer["error"].startswith(f"feature server {url}: /get-online-features failed: ")
        assert "Traceback" not in served.output()


def test_a_feature_server_address_that_is_no_url_stops_the_server_in_one_line(bundle: Bundle, tmp_path: Path) -> None:
    tag = online_model(bundle, "http://127.0.0.1:6566")
    extra: dict[str, str] = {FEAST_URL_VARIABLE: "feast:6566"}
    with pytest.raises(RuntimeError) as info, serving(tag, tmp_path, open_files=None, **extra):
        pass
    assert f"conveyor: cannot serve {tag}: feature server URL 'feast:6566': expected http(s)://host:port" in str(
        info.value
    )
    assert "Traceback" not in str(info.value)
