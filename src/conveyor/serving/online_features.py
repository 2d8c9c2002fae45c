"""Online features from Feast's feature server (``feast serve``), for records that carry entity keys only.

The feature server runs apart from the model service, as it does in production: it is Feast's
own process, in Feast's own environment (Feast needs pandas<3), answering
``POST /get-online-features``. This client needs nothing but the standard library, keeps one
connection per thread, and turns Feast's column-wise answer into one record per entity: feature
name to value, the names the model was trained on (without the feature view prefix).

An entity the online store has never seen (Feast's status ``NOT_FOUND``) is an error naming the
key and the feature views that lack it; a value that is present but null stays ``None``, as a
missing value in the training table would.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from conveyor.errors import ConveyorError, DataError

__all__ = [
    "FEAST_URL_VARIABLE",
    "FeatureServerError",
    "MissingEntityError",
    "OnlineFeatures",
    "parse_entity",
    "server_url",
    "with_online_features",
]

# Where a served model's feature server is, when not where the bundle says (``feature_store.server_url``).
FEAST_URL_VARIABLE = "CONVEYOR_FEAST_URL"

FeatureValue = str | int | float | bool | None
EntityKey = str | int


class FeatureServerError(ConveyorError):
    """The feature server cannot be reached, or refused the request; the message says which and why."""


class MissingEntityError(DataError):
    """An entity key the online store has no features for; the message names the key and the views.

    ``row`` is the entity's position in the request, ``entity`` its key names and values.
    """

    def __init__(self, message: str, *, row: int, entity: Mapping[str, EntityKey]) -> None:
        super().__init__(message)
        self.row = row
        self.entity = dict(entity)


def server_url(configured: str) -> str:
    """The feature server to read: ``CONVEYOR_FEAST_URL`` when set, else ``configured`` (the bundle's)."""
    return os.environ.get(FEAST_URL_VARIABLE) or configured


class OnlineFeatures:
    """A client of one feature service on one Feast feature server.

    Parameters
    ----------
    url : str
        The feature server, e.g. ``http://127.0.0.1:6566`` (``feast serve``).
    feature_service : str
        The Feast feature service whose features the model reads.
    timeout : float, keyword-only
        Seconds to wait for a connection or an answer.
    """

    def __init__(self, url: str, *, feature_service: str, timeout: float = 5.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise FeatureServerError(f"feature server URL {url!r}: expected http(s)://host:port")
        self.url = url.rstrip("/")
        self.feature_service = feature_service
        self.timeout = timeout
        self._parts = parts
        self._local = threading.local()

    def get(self, entities: Mapping[str, Sequence[EntityKey]]) -> list[dict[str, FeatureValue]]:
        """One record of features per entity row, in the order given.

        ``entities`` maps each join key to its values, one per row: ``{"penguin_id": [1, 2]}``.
        Raises :class:`MissingEntityError` for a row the online store has no features for, and
        :class:`FeatureServerError` when the server cannot answer.
        """
        lengths = {len(values) for values in entities.values()}
        if not entities or len(lengths) != 1:
            raise DataError(
                f"entity keys: expected one or more keys with the same number of values, got {dict(entities)}"
            )
        body = {"feature_service": self.feature_service, "entities": {k: list(v) for k, v in entities.items()}}
        answer = self._post("/get-online-features", {**body, "full_feature_names": True})
        return _records(answer, entities, feature_service=self.feature_service)

    def get_one(self, **keys: EntityKey) -> dict[str, FeatureValue]:
        """The features of one entity: ``client.get_one(penguin_id=5)``."""
        return self.get({name: [value] for name, value in keys.items()})[0]

    def close(self) -> None:
        """Close this thread's connection (a later call opens a new one)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def _connection(self) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            kind = http.client.HTTPSConnection if self._parts.scheme == "https" else http.client.HTTPConnection
            connection = kind(str(self._parts.hostname), self._parts.port, timeout=self.timeout)
            self._local.connection = connection
        return connection

    def _post(self, path: str, body: Mapping[str, Any]) -> Any:
        payload = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        for attempt in (1, 2):
            connection = self._connection()
            try:
                connection.request("POST", path, body=payload, headers=headers)
                response = connection.getresponse()
                text = response.read().decode("utf-8", errors="replace")
                break
            except (ConnectionError, http.client.HTTPException, TimeoutError, OSError) as exc:
                self.close()
                # A kept-alive connection the server closed meanwhile: retry once on a new one.
                if attempt == 2 or isinstance(exc, TimeoutError):
                    raise FeatureServerError(f"feature server {self.url}: {path} failed: {exc}") from None
        if response.status != 200:
            raise FeatureServerError(f"feature server {self.url}: {path} answered {response.status}: {_detail(text)}")
        return json.loads(text)


def with_online_features(
    records: Sequence[Mapping[str, Any]], client: OnlineFeatures, *, keys: Sequence[str]
) -> list[dict[str, Any]]:
    """Each record with its entity's online features added, fetched in one request: the serving hook.

    ``records`` give the entity ``keys`` (and any request-time fields, which win over a stored
    feature of the same name); the keys themselves are dropped, as the training table drops them.
    A record without a key raises :class:`DataError` naming the record and the key.
    """
    if not records:
        return []
    for index, record in enumerate(records):
        absent = [key for key in keys if record.get(key) is None]
        if absent:
            raise DataError(f"record {index}: no entity key {absent[0]!r}; expected {list(keys)} in every record")
    features = client.get({key: [record[key] for record in records] for key in keys})
    return [
        {**fetched, **{k: v for k, v in record.items() if k not in keys}}
        for record, fetched in zip(records, features, strict=True)
    ]


def parse_entity(text: str) -> tuple[str, EntityKey]:
    """``"penguin_id=5"`` as ``("penguin_id", 5)``: digits are an integer key, anything else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise DataError(f"entity key {text!r}: expected KEY=VALUE, e.g. penguin_id=5")
    return key, int(value) if value.lstrip("-").isdigit() else value


def _records(
    answer: Any, entities: Mapping[str, Sequence[EntityKey]], *, feature_service: str
) -> list[dict[str, FeatureValue]]:
    """Feast's columns (``results[i].values``/``statuses`` for ``metadata.feature_names[i]``) as records."""
    names: list[str] = answer["metadata"]["feature_names"]
    results: list[dict[str, Any]] = answer["results"]
    rows = len(next(iter(entities.values())))
    records: list[dict[str, FeatureValue]] = [{} for _ in range(rows)]
    lacking: list[set[str]] = [set() for _ in range(rows)]
    for name, result in zip(names, results, strict=True):
        if name in entities:
            continue
        view, _, feature = name.rpartition("__")
        for row, (value, status) in enumerate(zip(result["values"], result["statuses"], strict=True)):
            records[row][feature or name] = value
            if status == "NOT_FOUND":
                lacking[row].add(view or feature_service)
    for row, views in enumerate(lacking):
        if views:
            entity = {k: v[row] for k, v in entities.items()}
            key = ", ".join(f"{k}={v!r}" for k, v in entity.items())
            raise MissingEntityError(
                f"entity {key}: not in the online store of feature view {', '.join(sorted(views))} "
                f"(feature service {feature_service}); materialize it (`make materialize`) or check the key",
                row=row,
                entity=entity,
            )
    return records


def _detail(text: str) -> str:
    """The message of a Feast error body (a JSON string holding JSON), else the text, shortened."""
    try:
        value = json.loads(text)
        if isinstance(value, str):
            value = json.loads(value)
        if isinstance(value, dict) and "message" in value:
            return str(value["message"])
    except ValueError:
        pass
    return text[:300]
