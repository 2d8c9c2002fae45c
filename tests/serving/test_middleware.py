"""The request limits and the bearer token, in process: what is refused, with which status, and what stays open."""

from __future__ import annotations

import pytest

from conveyor.bundle import Bundle
from conveyor.errors import ConfigError
from conveyor.serving.middleware import TOKEN_VARIABLE, api_tokens
from tests.serving.conftest import GOOD, JSON, Served, packaged_with

TOKEN = "a" * 16 + "-token"
OTHER = "b" * 32


@pytest.fixture
def guarded(bundle: Bundle) -> Served:
    """The default bundle with ``serve.auth: bearer`` and two tokens (one being rotated out)."""
    return Served(
        packaged_with(bundle, "serve", auth="bearer"), tokens=api_tokens({TOKEN_VARIABLE: f"{TOKEN}, {OTHER}"})
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "CONVEYOR_API_TOKEN: not set, and serve.auth is bearer"),
        (" , ", "CONVEYOR_API_TOKEN: not set, and serve.auth is bearer"),
        ("short", "CONVEYOR_API_TOKEN: token 1 is not 16 or more printable ASCII"),
        (f"{TOKEN},with space in it 0123", "CONVEYOR_API_TOKEN: token 2 is not 16"),
    ],
)
def test_api_tokens_refuse_a_missing_or_weak_token_naming_the_variable(value: str | None, message: str) -> None:
    environ = {} if value is None else {TOKEN_VARIABLE: value}
    with pytest.raises(ConfigError, match=message) as raised:
        api_tokens(environ)
    assert "\n" not in str(raised.value)
    assert "short" not in str(raised.value), "the error never shows a token"


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", f"Basic {TOKEN}", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer  "]
)
def test_a_request_without_a_valid_token_gets_401_on_every_guarded_route(
    guarded: Served, authorization: str | None
) -> None:
    headers = JSON | ({} if authorization is None else {"authorization": authorization})
    for method, path in (("POST", "/predict"), ("POST", "/predict_proba"), ("GET", "/metadata"), ("GET", "/docs.json")):
        response = guarded.request(method, path, b'{"records": []}', headers)
        assert response.status_code == 401, (path, response.text)
        assert response.headers["www-authenticate"] == 'Bearer realm="conveyor"'
        assert response.json()["detail"][0]["type"] == "unauthorized"
        assert TOKEN not in response.text


@pytest.mark.parametrize("token", [TOKEN, OTHER])
def test_either_token_is_accepted_and_the_probes_and_metrics_need_none(guarded: Served, token: str) -> None:
    response = guarded.post("/predict", {"records": [GOOD]}, headers=JSON | {"authorization": f"bearer {token}"})
    assert response.status_code == 200
    assert response.json() == ["Adelie"]
    assert guarded.request("GET", "/livez").status_code == 200
    assert guarded.request("GET", "/metrics").status_code == 200


def test_without_auth_nothing_asks_for_a_token(served: Served) -> None:
    assert served.post("/predict", {"records": [GOOD]}).status_code == 200


def test_metadata_minimal_hides_the_contract_revision_and_versions(bundle: Bundle) -> None:
    full = Served(bundle).request("GET", "/metadata").json()
    minimal = Served(packaged_with(bundle, "serve", metadata="minimal")).request("GET", "/metadata").json()
    assert {"contract", "git_revision", "libraries", "metrics"} <= set(full)
    assert set(minimal) == {"model_tag", "task", "classes", "limits"}
    assert minimal["model_tag"] == full["model_tag"]


@pytest.mark.parametrize(
    ("headers", "kind"),
    [({f"x-h{n}": "1" for n in range(101)}, "too_many"), ({"x-big": "a" * 16_400}, "too_large")],
)
def test_a_head_over_the_limits_gets_431_and_the_connection_closed(
    served: Served, headers: dict[str, str], kind: str
) -> None:
    response = served.request("GET", "/metadata", headers=headers)
    assert response.status_code == 431
    assert response.json()["detail"][0]["type"] == kind
    assert response.headers["connection"] == "close"


def test_a_head_within_the_limits_passes(served: Served) -> None:
    headers = {f"x-h{n}": "1" for n in range(90)} | {"x-big": "a" * 8_000}
    assert served.request("GET", "/metadata", headers=headers).status_code == 200
