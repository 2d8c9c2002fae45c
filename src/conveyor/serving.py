"""What the service runs, without BentoML: the packaged bundle, the prediction engine, the request guard.

The package stage writes a *bundle* (the skops model, the ONNX model when it passed the parity
check, the data contract and ``conveyor.json``) into the BentoML model's directory; the service
loads it back with :meth:`Bundle.load`. Keeping this apart from ``service.py`` lets tests use
the engine and the guard in process, with no model store and no server.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel
from sklearn.pipeline import Pipeline

from conveyor import io
from conveyor.compiled import OnnxPredictor, Predictor, SklearnPredictor
from conveyor.config import ServeConfig
from conveyor.contract import Contract, contract_to_dict
from conveyor.features import FeatureSpec
from conveyor.request import RecordBase, example_record, record_model

MODEL_FILE = "model.skops"
ONNX_FILE = "model.onnx"
CONTRACT_FILE = "contract.yaml"
INFO_FILE = "conveyor.json"


def write_bundle(
    directory: Path, *, model: Pipeline, onnx: bytes | None, contract: Contract, info: dict[str, Any]
) -> None:
    """Write everything the service needs into ``directory`` (a BentoML model's path)."""
    io.save_model(model, directory / MODEL_FILE)
    if onnx is not None:
        io.write_bytes(onnx, directory / ONNX_FILE)
    io.write_contract(contract, directory / CONTRACT_FILE)
    io.write_json(info, directory / INFO_FILE)


@dataclass(frozen=True)
class Bundle:
    """A packaged model directory: its ``conveyor.json`` and contract, the models loaded on demand."""

    directory: Path
    info: dict[str, Any]
    contract: Contract

    @classmethod
    def load(cls, directory: Path) -> Bundle:
        """Read the light parts of a bundle (no model is deserialized yet)."""
        return cls(directory, io.read_json(directory / INFO_FILE), io.read_contract(directory / CONTRACT_FILE))

    @property
    def serve(self) -> ServeConfig:
        """The ``serve`` settings the model was packaged with."""
        return ServeConfig.model_validate(self.info["serve"], strict=False)

    @property
    def spec(self) -> FeatureSpec:
        """The model's input columns."""
        features = self.info["features"]
        return FeatureSpec(
            numeric=tuple(features.get("numeric", ())), categorical=tuple(features.get("categorical", ()))
        )

    @property
    def is_classifier(self) -> bool:
        """Whether the model predicts classes (and so has ``predict_proba``)."""
        return bool(self.info["task"] == "classification")

    @cached_property
    def record_model(self) -> type[RecordBase]:
        """The request record model generated from the contract for the model's input columns."""
        return record_model(self.contract, self.spec.columns)

    def example(self) -> dict[str, Any]:
        """A valid record, for the OpenAPI page and the warm-up."""
        return example_record(self.contract, self.spec.columns)

    def predictor(self) -> Predictor:
        """ONNX Runtime when the bundle holds a verified ONNX model, else the scikit-learn pipeline."""
        if self.info["inference"]["inference"] == "onnx":
            return OnnxPredictor(io.read_bytes(self.directory / ONNX_FILE), self.spec, threads=self.serve.threads)
        return SklearnPredictor(io.load_model(self.directory / MODEL_FILE))


class Engine:
    """Validated records in, JSON-ready predictions out: the service's whole prediction logic."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.columns = bundle.spec.columns
        self.predictor = bundle.predictor()
        self.classes = [str(c) for c in bundle.info.get("classes") or []]

    def warm_up(self) -> None:
        """Run one prediction so the first request does not pay for lazy initialisation."""
        record = self.bundle.record_model.model_validate(self.bundle.example())
        self.predict([record])
        if self.bundle.is_classifier:
            self.predict_proba([record])

    def predict(self, records: Sequence[BaseModel]) -> list[Any]:
        """One label (classification) or value (regression) per record."""
        values = self.predictor.predict_rows(_rows(records))
        if self.bundle.is_classifier:
            return [str(v) for v in values]
        return [float(v) for v in np.asarray(values, dtype=np.float64)]

    def predict_proba(self, records: Sequence[BaseModel]) -> list[dict[str, float]]:
        """For each record, the probability of each class."""
        proba = self.predictor.predict_proba_rows(_rows(records))
        return [dict(zip(self.classes, map(float, row), strict=True)) for row in proba]

    def metadata(self) -> dict[str, Any]:
        """Where the served model came from, how well it did, and what it accepts."""
        info = self.bundle.info
        return {
            "model_tag": info["model_tag"],
            "git_revision": info["git_revision"],
            "data_hash": info["data_hash"],
            "params_hash": info["params_hash"],
            "task": info["task"],
            "target": info["target"],
            "estimator": info["estimator"],
            "classes": info.get("classes"),
            "features": list(self.columns),
            "metrics": info["metrics"],
            "inference": info["inference"],
            "libraries": info["libraries"],
            "limits": {
                "max_records": self.bundle.serve.max_records,
                "max_body_bytes": self.bundle.serve.max_body_bytes,
            },
            "contract": contract_to_dict(self.bundle.contract),
        }


def _rows(records: Sequence[BaseModel]) -> list[dict[str, Any]]:
    return [record.model_dump(by_alias=True) for record in records]


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestError(Exception):
    """A request refused before it reaches the API: HTTP status, field location and message."""

    def __init__(self, status: int, loc: Sequence[str], msg: str) -> None:
        super().__init__(msg)
        self.status, self.loc, self.msg = status, list(loc), msg


class RequestGuard:
    """ASGI middleware for the JSON APIs: what BentoML itself lets through.

    For ``POST`` to one of ``paths`` it refuses, with a JSON 4xx naming the problem: a content
    type other than ``application/json`` (415), a body over ``max_body_bytes`` whether declared
    or streamed (413), an empty body or one that is not JSON (400), and a top-level object with
    keys other than ``fields`` (400). It buffers at most ``max_body_bytes`` and then hands the
    same body on, so everything else (field types, ranges, lengths) stays with the typed API.
    """

    def __init__(self, app: ASGIApp, *, paths: Iterable[str], fields: Iterable[str], max_body_bytes: int) -> None:
        self.app = app
        self.paths = frozenset(paths)
        self.fields = tuple(fields)
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check a guarded request, then pass it on with its body replayed."""
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        try:
            body = await self._body(scope, receive)
            self._check(body)
        except RequestError as error:
            await _reply(send, error)
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        headers = {key.lower(): value for key, value in scope["headers"]}
        content_type = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
        if content_type != b"application/json":
            shown = content_type.decode("latin-1") or "none"
            raise RequestError(415, ["header", "content-type"], f"expected application/json, got {shown}")
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                raise RequestError(400, ["header", "content-length"], "not a number")
            if int(declared) > self.max_body_bytes:
                raise RequestError(
                    413, ["body"], f"body of {int(declared)} bytes exceeds the limit of {self.max_body_bytes}"
                )
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestError(400, ["body"], "client disconnected before sending the body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise RequestError(413, ["body"], f"body exceeds the limit of {self.max_body_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _check(self, body: bytes) -> None:
        if not body.strip():
            raise RequestError(400, ["body"], f"empty body; expected a JSON object with {list(self.fields)}")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RequestError(400, ["body"], f"not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise RequestError(
                400, ["body"], f"expected a JSON object with {list(self.fields)}, got {type(data).__name__}"
            )
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise RequestError(
                400, ["body", unknown[0]], f"unknown field(s) {unknown}; expected only {list(self.fields)}"
            )
        missing = [name for name in self.fields if name not in data]
        if missing:
            raise RequestError(400, ["body", missing[0]], "field required")


async def _reply(send: Send, error: RequestError) -> None:
    body = json.dumps({"error": error.msg, "detail": [{"loc": error.loc, "msg": error.msg}]}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
