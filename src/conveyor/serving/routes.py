"""What the service runs, without BentoML: the packaged bundle, the prediction engine, the HTTP app.

The package stage writes a *bundle* (the skops model, the ONNX model when it passed the parity
check, the data contract, ``conveyor.json`` and the SHA-256 of each) into the BentoML model's
directory; the service loads it back with :meth:`Bundle.load`, which first checks every file
against its recorded hash. :class:`ServingApp` is the HTTP API as a small Starlette app that the
BentoML service mounts, and :meth:`ServingApp.front` the middleware put in front of BentoML's
whole server: metrics, admission (concurrency and time), the body limit, and a fast lane that
takes the prediction routes straight to their endpoints.
Keeping this apart from ``service.py`` lets tests run all of it in process, with no model store.

The request path is short on purpose (the model takes 0.1 ms on the ONNX path, so the server is
most of the cost): the body is read once, validated straight from bytes into plain dicts
(:func:`conveyor.serving.request.body_type`), predicted on the event loop without a thread hop, and the
answer serialised by pydantic-core.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import logging
import secrets
import time
from collections import Counter as Tally
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import TypeAdapter, ValidationError
from pydantic_core import to_json
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor import io
from conveyor.artifacts import BundleInfo
from conveyor.config import ServeConfig
from conveyor.contract import Contract, contract_to_dict
from conveyor.errors import ConveyorError
from conveyor.model.features import FeatureSpec
from conveyor.serving.prediction_log import Exporter, LoggedRequest, PredictionLog
from conveyor.serving.prediction_log import register as register_log_counter
from conveyor.serving.request import body_type, example_record, record_type

MODEL_FILE = "model.skops"
ONNX_FILE = "model.onnx"
CONTRACT_FILE = "contract.yaml"
INFO_FILE = "conveyor.json"
CHECKSUMS_FILE = "sha256sums.txt"

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

    from conveyor.model.onnx import Predictor

logger = logging.getLogger("conveyor.serving")


class BundleError(RuntimeError):
    """A packaged bundle that cannot be served: a file missing or not what was packaged."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_bundle(directory: Path, *, model: Pipeline, onnx: bytes | None, contract: Contract, info: BundleInfo) -> None:
    """Write everything the service needs into ``directory`` (a BentoML model's path).

    Last comes ``sha256sums.txt`` (the format ``sha256sum -c`` reads) with the hash of every
    other file, which :meth:`Bundle.load` checks before it reads anything.
    """
    io.save_model(model, directory / MODEL_FILE)
    names = [MODEL_FILE, CONTRACT_FILE, INFO_FILE]
    if onnx is not None:
        io.write_bytes(onnx, directory / ONNX_FILE)
        names.append(ONNX_FILE)
    io.write_contract(contract, directory / CONTRACT_FILE)
    io.write_artifact(info, directory / INFO_FILE)
    sums = "".join(f"{_sha256(directory / name)}  {name}\n" for name in sorted(names))
    (directory / CHECKSUMS_FILE).write_text(sums, encoding="utf-8")


def verify_bundle(directory: Path) -> None:
    """Raise :class:`BundleError` naming the first bundle file that is missing or not as packaged."""
    sums = directory / CHECKSUMS_FILE
    if not sums.is_file():
        raise BundleError(f"{sums}: missing, so the bundle cannot be verified; re-package (dvc repro --force package)")
    for line in sums.read_text(encoding="utf-8").splitlines():
        expected, name = line.split("  ", 1)
        path = directory / name
        if not path.is_file():
            raise BundleError(f"{path}: missing from the packaged bundle; re-package (dvc repro --force package)")
        if _sha256(path) != expected:
            raise BundleError(
                f"{path}: corrupt, its SHA-256 differs from the one recorded at package time; "
                "re-package (dvc repro --force package)"
            )


@dataclass(frozen=True)
class Bundle:
    """A packaged model directory: its ``conveyor.json`` and contract, the models loaded on demand."""

    directory: Path
    info: BundleInfo
    contract: Contract

    @classmethod
    def load(cls, directory: Path) -> Bundle:
        """Verify every file against its recorded hash, then read the light parts (no model yet)."""
        verify_bundle(directory)
        try:
            return cls(
                directory,
                io.read_artifact(directory / INFO_FILE, BundleInfo),
                io.read_contract(directory / CONTRACT_FILE),
            )
        except ConveyorError as error:
            raise BundleError(str(error)) from None

    @property
    def serve(self) -> ServeConfig:
        """The ``serve`` settings the model was packaged with."""
        return self.info.serve

    @property
    def columns(self) -> tuple[str, ...]:
        """The model's input columns: numeric first, then categorical, as the pipeline takes them."""
        return self.spec.columns

    @property
    def spec(self) -> FeatureSpec:
        """The model's input columns by kind."""
        features = self.info.features
        return FeatureSpec(
            numeric=tuple(features.get("numeric", ())), categorical=tuple(features.get("categorical", ()))
        )

    @property
    def is_classifier(self) -> bool:
        """Whether the model predicts classes (and so has ``predict_proba``)."""
        return self.info.task == "classification"

    @cached_property
    def record_type(self) -> Any:
        """The request record type generated from the contract for the model's input columns."""
        return record_type(self.contract, self.columns)

    @cached_property
    def request(self) -> TypeAdapter[dict[str, Any]]:
        """Validation of a whole request body, from JSON bytes to ``{"records": [dict, ...]}``."""
        return TypeAdapter(body_type(self.record_type, max_records=self.serve.max_records, example=self.example()))

    def example(self) -> dict[str, Any]:
        """A valid record, for the OpenAPI page and the warm-up."""
        return example_record(self.contract, self.columns)

    def predictor(self) -> Predictor:
        """ONNX Runtime when the bundle holds a verified ONNX model, else the scikit-learn pipeline.

        Imported here, not at the top: ``bentoml serve`` imports the service in its own process
        too, which never predicts, and scikit-learn's import is a second of its start-up.
        """
        from conveyor.model.onnx import OnnxPredictor, SklearnPredictor

        if self.info.inference.inference == "onnx":
            return OnnxPredictor(io.read_bytes(self.directory / ONNX_FILE), self.spec, threads=self.serve.threads)
        return SklearnPredictor(io.load_model(self.directory / MODEL_FILE))


Records = Sequence[Mapping[str, Any]]


class Engine:
    """Validated records in, JSON-ready predictions out: the service's whole prediction logic."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.columns = bundle.columns
        self.predictor = bundle.predictor()
        self.classes = list(bundle.info.classes or [])

    def warm_up(self) -> None:
        """Run one prediction so the first request does not pay for lazy initialisation."""
        records = self.bundle.request.validate_python({"records": [self.bundle.example()]})["records"]
        self.predict(records)
        if self.bundle.is_classifier:
            self.predict_proba(records)

    def predict(self, records: Records) -> list[Any]:
        """One label (classification) or value (regression) per record."""
        values = self.predictor.predict_rows(records)
        if self.bundle.is_classifier:
            return [str(v) for v in values]
        return np.asarray(values, dtype=np.float64).tolist()  # type: ignore[no-any-return]

    def predict_proba(self, records: Records) -> list[dict[str, float]]:
        """For each record, the probability of each class."""
        proba = self.predictor.predict_proba_rows(records)
        return [dict(zip(self.classes, row, strict=True)) for row in proba.tolist()]

    def metadata(self) -> dict[str, Any]:
        """Where the served model came from, how well it did, and what it accepts."""
        info = self.bundle.info
        return {
            **info.model_dump(mode="json", include={"model_tag", "git_revision", "data_hash", "params_hash"}),
            **info.model_dump(mode="json", include={"task", "target", "estimator", "classes"}),
            "features": list(self.columns),
            "metrics": info.metrics,
            "inference": info.inference.model_dump(mode="json"),
            "libraries": info.libraries,
            "limits": {
                "max_records": self.bundle.serve.max_records,
                "max_body_bytes": self.bundle.serve.max_body_bytes,
                "max_concurrency": self.bundle.serve.max_concurrency,
            },
            "prediction_log": info.logging.model_dump(mode="json"),
            "contract": contract_to_dict(self.bundle.contract),
        }


class Batcher:
    """Predictions of a slow model in a worker thread, batched only when requests are waiting.

    A request that finds the model idle is predicted alone, at once; requests that arrive while
    a call runs (the event loop keeps reading and validating them meanwhile) are predicted
    together in the next call, up to ``max_records`` records, and each gets its share of the
    answer. Nothing is held back to fill a batch, so batching adds no latency of its own; it
    pays where a call costs milliseconds however few its rows (scikit-learn's pipeline), not
    for ONNX Runtime's 0.1 ms, where the thread hop alone would cost more.
    """

    def __init__(self, engine: Engine, *, max_records: int) -> None:
        self.engine = engine
        self.max_records = max_records
        self.waiting: deque[tuple[bool, Records, asyncio.Future[list[Any]]]] = deque()
        self.draining: asyncio.Task[None] | None = None

    async def __call__(self, records: Records, *, proba: bool) -> list[Any]:
        """The predictions (or probabilities) for ``records``, from whichever call includes them."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[list[Any]] = loop.create_future()
        self.waiting.append((proba, records, answer))
        if self.draining is None:
            self.draining = loop.create_task(self._drain())
        return await answer

    async def _drain(self) -> None:
        try:
            while self.waiting:
                batch = self._next_batch()
                rows = [row for _, records, _ in batch for row in records]
                call = self.engine.predict_proba if batch[0][0] else self.engine.predict
                try:
                    results = await asyncio.to_thread(call, rows)
                except Exception as error:  # every request of the batch gets the failure
                    for _, _, answer in batch:
                        if not answer.done():
                            answer.set_exception(error)
                    continue
                start = 0
                for _, records, answer in batch:
                    if not answer.done():  # its client may have gone, or timed out
                        answer.set_result(results[start : start + len(records)])
                    start += len(records)
        finally:
            self.draining = None

    def _next_batch(self) -> list[tuple[bool, Records, asyncio.Future[list[Any]]]]:
        """The oldest waiting requests of the same kind, within ``max_records`` (at least one)."""
        proba, records, answer = self.waiting.popleft()
        batch, size = [(proba, records, answer)], len(records)
        while self.waiting and self.waiting[0][0] == proba and size + len(self.waiting[0][1]) <= self.max_records:
            batch.append(self.waiting.popleft())
            size += len(batch[-1][1])
        return batch


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_TYPE = "application/json"


def error_body(message: str, detail: Iterable[Mapping[str, Any]]) -> bytes:
    """The JSON every refusal sends: a summary and, per problem, where (``loc``), what and its type."""
    return to_json({"error": message, "detail": list(detail)})


def refuse(method: str, path: str, status: int, detail: Sequence[Mapping[str, Any]]) -> Response:
    """A 4xx response for ``detail`` (problems without the client's values), logged as one INFO line.

    The line names each problem's location and type, never a value; a location can hold a key
    the client made up (an unknown field), so one that is long or not printable is elided.
    """
    where = "; ".join(f"{_location(d['loc'])}: {d['type']}" for d in detail[:3])
    more = f" (+{len(detail) - 3} more)" if len(detail) > 3 else ""
    logger.info("refused %s %s with %d: %s%s", method, _printable(path), status, where, more)
    message = f"{len(detail)} problem(s) in the request; first: {detail[0]['msg']}"
    return Response(error_body(message, detail), status_code=status, media_type=JSON_TYPE)


def _printable(text: str, limit: int = 64) -> str:
    return text if len(text) <= limit and text.isprintable() else "…"


def _location(loc: Sequence[str | int]) -> str:
    return ".".join(str(part) if isinstance(part, int) else _printable(part) for part in loc) or "body"


def problem(loc: Sequence[str | int], kind: str, msg: str) -> dict[str, Any]:
    """One entry of an error ``detail``."""
    return {"loc": list(loc), "msg": msg, "type": kind}


async def _send_response(response: Response, scope: Scope, receive: Receive, send: Send) -> None:
    await response(scope, receive, send)


class BodyLimit:
    """ASGI middleware over the whole server: no request body larger than ``max_body_bytes``.

    A declared ``Content-Length`` over the limit is refused before anything is read; a streamed
    body is read up to the limit and refused past it (413 either way). Within the limit the body
    is buffered and handed on, so every route, BentoML's included, sees at most that many bytes.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, metrics: ServiceMetrics | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse an oversized body; otherwise pass the request on with its body replayed."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal, body = await self._read(scope, receive)
        if refusal is not None:
            if self.metrics is not None:
                self.metrics.refused(scope["path"], refusal[1])
            await _send_response(refuse(scope["method"], scope["path"], *refusal), scope, receive, send)
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _read(self, scope: Scope, receive: Receive) -> tuple[tuple[int, list[dict[str, Any]]] | None, bytes]:
        for key, value in scope["headers"]:
            if key == b"content-length":
                if not value.isdigit():
                    return (400, [problem(["header", "content-length"], "invalid", "not a number")]), b""
                if int(value) > self.max_body_bytes:
                    return self._too_large(), b""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return (400, [problem(["body"], "disconnected", "client disconnected during the body")]), b""
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return self._too_large(), b""
            chunks.append(chunk)
            if not message.get("more_body", False):
                return None, chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _too_large(self) -> tuple[int, list[dict[str, Any]]]:
        return 413, [problem(["body"], "too_large", f"body exceeds the limit of {self.max_body_bytes} bytes")]


class RequestMetrics:
    """ASGI middleware counting and timing every request by route and status, for ``/metrics``.

    Any path that is not a route is counted as ``other``: one series per unknown URL a scanner
    tries would grow without bound. Pass ``registry=None`` under Prometheus' multiprocess mode
    (as in ``bentoml serve``), where samples go to shared files rather than a registry. With
    ``access_log``, each request is also one INFO line: method, path, status, milliseconds.
    """

    def __init__(
        self, app: ASGIApp, *, routes: Iterable[str], registry: CollectorRegistry | None, access_log: bool = False
    ) -> None:
        self.app = app
        self.routes = frozenset(routes)
        self.access_log = access_log
        labels = ("endpoint", "http_response_code")
        self.requests = Counter("conveyor_request_total", "HTTP requests", labels, registry=registry)
        self.seconds = Histogram(
            "conveyor_request_duration_seconds",
            "HTTP request duration",
            labels,
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        # Resolving labels takes a lock and a lookup per request; the series are few, keep them.
        self.series: dict[tuple[str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; count and time it once it is answered."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            endpoint = scope["path"] if scope["path"] in self.routes else "other"
            series = self.series.get((endpoint, status))
            if series is None:
                labels = (endpoint, str(status))
                series = self.series[endpoint, status] = (self.requests.labels(*labels), self.seconds.labels(*labels))
            seconds = time.perf_counter() - started
            series[0].inc()
            series[1].observe(seconds)
            if self.access_log:
                logger.info("%s %s %d %.1f ms", scope["method"], scope["path"], status, 1000 * seconds)


class Admission:
    """ASGI middleware: at most ``max_concurrency`` requests in progress, each done within ``timeout``.

    Beyond the limit a request gets 429 at once, before its body is read, so a worker holds at
    most ``max_concurrency`` bodies of at most ``max_body_bytes`` each; the probes and
    ``/metrics`` are exempt, as in BentoML's own ``traffic.max_concurrency``. A request not
    answered within ``timeout`` seconds (a client trickling its body) gets 504.
    """

    EXEMPT = frozenset({"/livez", "/healthz", "/readyz", "/metrics"})

    def __init__(self, app: ASGIApp, *, max_concurrency: int, timeout: float) -> None:
        self.app = app
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.in_progress = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Admit the request if there is room, and bound its time."""
        if scope["type"] != "http" or scope["path"] in self.EXEMPT:
            await self.app(scope, receive, send)
            return
        if self.in_progress >= self.max_concurrency:
            detail = [problem([], "overloaded", f"more than {self.max_concurrency} requests in progress; retry later")]
            await _send_response(refuse(scope["method"], scope["path"], 429, detail), scope, receive, send)
            return
        self.in_progress += 1
        answered = False

        async def tracked(message: Message) -> None:
            nonlocal answered
            answered = True
            await send(message)

        try:
            async with asyncio.timeout(self.timeout):
                await self.app(scope, receive, tracked)
        except TimeoutError:
            if not answered:
                detail = [problem([], "timeout", f"not answered within {self.timeout:g} s")]
                await _send(send, 504, error_body(detail[0]["msg"], detail))
        finally:
            self.in_progress -= 1


class FastLane:
    """ASGI middleware sending ``POST`` to the prediction routes straight to their endpoints.

    Everything else goes on to ``app`` (BentoML's server). Put outside BentoML's own middleware,
    it spares the prediction routes the per-request work there (a task per request for its
    timeout, tracing, a request context), which cost three times what the ONNX model does.
    """

    def __init__(self, app: ASGIApp, *, routes: Mapping[str, ASGIApp]) -> None:
        self.app = app
        self.routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch on path and method."""
        endpoint = self.routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        await (endpoint or self.app)(scope, receive, send)


def _header(scope: Scope, name: bytes) -> bytes:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return b""


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _send(
    send: Send, status: int, body: bytes, media_type: str = JSON_TYPE, extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    headers = [(b"content-type", media_type.encode()), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Routes(Starlette):
    """A Starlette app without its own error and exception layers: the server around it has them.

    Still a ``Starlette`` so that BentoML mounts it passively (only its routes match).
    """

    def build_middleware_stack(self) -> ASGIApp:
        return self.router


class Prediction:
    """One prediction route as a bare ASGI endpoint: one read of the body, one validation, one call.

    Bare rather than a Starlette request handler because a request object, its header parsing
    and the exception wrapping cost more than the ONNX model does.
    """

    def __init__(self, service: ServingApp, *, path: str, proba: bool) -> None:
        self.service = service
        self.path = path
        self.proba = proba

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one ``POST`` with predictions and its ``X-Request-ID``, or a 4xx saying what is wrong."""
        checked = self.check(scope, await _read_body(receive))
        if isinstance(checked, Response):
            await _send_response(checked, scope, receive, send)
            return
        if self.service.engine is None:
            await _send(send, 503, error_body("the model is still loading", []))
            return
        outputs = await self.service.answer(checked, proba=self.proba)
        request_id = secrets.token_hex(8)
        await _send(send, 200, to_json(outputs), extra=((REQUEST_ID_HEADER, request_id.encode()),))
        self.service.answered(LoggedRequest(request_id, self.path, checked, outputs), proba=self.proba)

    def check(self, scope: Scope, body: bytes) -> Response | list[dict[str, Any]]:
        """The validated records, or the 4xx refusing them."""
        content_type = _header(scope, b"content-type").split(b";", 1)[0].strip().lower()
        if content_type != JSON_TYPE.encode():
            shown = content_type.decode("latin-1") or "none"
            detail = [problem(["header", "content-type"], "media_type", f"expected {JSON_TYPE}, got {shown}")]
            self.service.counts.refused(self.path, detail)
            return refuse(scope["method"], scope["path"], 415, detail)
        try:
            records: list[dict[str, Any]] = self.service.bundle.request.validate_json(body)["records"]
        except ValidationError as error:
            found = error.errors(include_url=False, include_input=False, include_context=False)
            detail = [problem(d["loc"], d["type"], d["msg"]) for d in found]
            self.service.counts.refused(self.path, detail)
            return refuse(scope["method"], scope["path"], 400, detail)
        return records


REQUEST_ID_HEADER = b"x-request-id"
# What conveyor_refused_requests_total names as the field at fault, besides the model's input columns.
REFUSAL_FIELDS = ("body", "records", "content-type", "content-length", "unknown_field")


def refused_field(loc: Sequence[str | int], columns: frozenset[str]) -> str:
    """The field a problem's ``loc`` points at, from a fixed set: an input column or one of :data:`REFUSAL_FIELDS`.

    A key the client made up (unknown at the top or in a record) is ``unknown_field``, so the
    series stay as few as the contract's columns whatever clients send.
    """
    if not loc or loc[0] == "body":
        return "body"
    if loc[0] == "header":
        return str(loc[1]) if len(loc) > 1 and loc[1] in REFUSAL_FIELDS else "body"
    if loc[0] != "records":
        return "unknown_field"
    if len(loc) < 3:
        return "records"
    return str(loc[2]) if loc[2] in columns else "unknown_field"


class ServiceMetrics:
    """Conveyor's series beyond the request ones: predictions by class or value bucket, refusals by field.

    ``conveyor_predictions_total{endpoint, prediction}`` counts records: by predicted class (for
    ``/predict_proba``, the most probable one), or for regression by the bucket of the training
    target's deciles the value falls in (``<=12.5``, …, ``>40.1``). ``conveyor_refused_requests_total
    {endpoint, field}`` counts refused prediction requests by the field of their first problem
    (see :func:`refused_field`). Both are bounded: classes, buckets and columns are the model's.
    """

    def __init__(self, bundle: Bundle, *, paths: Iterable[str], registry: CollectorRegistry | None) -> None:
        self.predictions = Counter(
            "conveyor_predictions_total",
            "Predicted records by class (classification) or value bucket (regression)",
            ("endpoint", "prediction"),
            registry=registry,
        )
        self.refusals = Counter(
            "conveyor_refused_requests_total",
            "Refused prediction requests by the field at fault (the first problem's)",
            ("endpoint", "field"),
            registry=registry,
        )
        self.log_records = register_log_counter(registry)
        self.paths = frozenset(paths)
        self.columns = frozenset(bundle.columns)
        self.edges = list(bundle.info.prediction_buckets or [])
        self.buckets = [f"<={edge:g}" for edge in self.edges] + [f">{self.edges[-1]:g}" if self.edges else "all"]
        # Resolving labels takes a lock and a lookup; the series are few, keep them.
        self.series: dict[tuple[str, str, str], Any] = {}

    def refused(self, path: str, detail: Sequence[Mapping[str, Any]]) -> None:
        """Count one refused request to a prediction route, by the field of its first problem."""
        if path in self.paths and detail:
            self._child("refusals", path, refused_field(detail[0]["loc"], self.columns)).inc()

    def predicted(self, path: str, labels: Sequence[str]) -> None:
        """Count each record's predicted class (or bucket)."""
        if len(labels) == 1:
            self._child("predictions", path, labels[0]).inc()
            return
        for label, count in Tally(labels).items():
            self._child("predictions", path, label).inc(count)

    def bucket(self, value: float) -> str:
        """The label of the value bucket ``value`` falls in."""
        return self.buckets[bisect.bisect_left(self.edges, value)]

    def _child(self, counter: Literal["predictions", "refusals"], path: str, label: str) -> Any:
        key = (counter, path, label)
        child = self.series.get(key)
        if child is None:
            child = self.series[key] = getattr(self, counter).labels(path, label)
        return child


class ServingApp:
    """The service's HTTP API as a Starlette app: prediction routes, metadata, OpenAPI and metrics.

    The engine is loaded by :meth:`load` (BentoML calls it once per worker, at startup); until
    then the prediction routes answer 503. ``exposition`` renders ``/metrics``; the service's
    series go to ``registry`` (``None`` under Prometheus' multiprocess mode, as in ``bentoml
    serve``, where samples go to shared files rather than a registry).
    """

    def __init__(
        self, bundle: Bundle, *, exposition: Callable[[], bytes], registry: CollectorRegistry | None = None
    ) -> None:
        self.bundle = bundle
        self.exposition = exposition
        self.registry = registry
        self.engine: Engine | None = None
        self.batcher: Batcher | None = None
        self.log: PredictionLog | None = None
        self.predictions: dict[str, ASGIApp] = {"/predict": Prediction(self, path="/predict", proba=False)}
        if bundle.is_classifier:
            self.predictions["/predict_proba"] = Prediction(self, path="/predict_proba", proba=True)
        self.counts = ServiceMetrics(bundle, paths=self.predictions, registry=registry)
        routes = [Route(path, endpoint, methods=["POST"]) for path, endpoint in self.predictions.items()]
        routes += [
            Route("/metadata", self.metadata, methods=["GET", "POST"]),
            Route("/docs.json", self.openapi_document, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
        ]
        self.app = _Routes(routes=routes)
        self.paths = tuple(route.path for route in routes)

    def front(self, server: ASGIApp, *, routes: Iterable[str] = (), timeout: float = 30) -> ASGIApp:
        """The ASGI app to run: ``server`` (which mounts :attr:`app`) behind this service's middleware.

        Outermost first: :class:`RequestMetrics` (``routes`` are the server's own paths, counted
        by name), :class:`Admission`, :class:`BodyLimit`, then :class:`FastLane` to the prediction
        endpoints, everything else to ``server``. The limits come from the bundle's ``serve``.
        """
        serve = self.bundle.serve
        app: ASGIApp = FastLane(server, routes=self.predictions)
        app = BodyLimit(app, max_body_bytes=serve.max_body_bytes, metrics=self.counts)
        # Per worker, as BentoML divides traffic.max_concurrency.
        app = Admission(app, max_concurrency=-(-serve.max_concurrency // serve.workers), timeout=timeout)
        known = (*self.paths, *routes)
        return RequestMetrics(app, routes=known, registry=self.registry, access_log=serve.access_log)

    def load(self, exporter: Exporter | None = None) -> Engine:
        """Load the model, warm it up and serve it from now on (batched, if ``serve.batching`` says so).

        With an ``exporter`` and the bundle's ``logging.enabled``, answered requests are logged
        through it from a :class:`~conveyor.serving.prediction_log.PredictionLog` started here (per worker).
        """
        settings = self.bundle.info.logging
        if exporter is not None and settings.enabled:
            self.log = PredictionLog(
                exporter,
                sample_rate=settings.sample_rate,
                max_queued_records=settings.max_queued_records,
                records=self.counts.log_records,
                max_cpu_share=settings.max_cpu_share,
            ).start()
        engine = Engine(self.bundle)
        engine.warm_up()
        serve = self.bundle.serve
        batching = serve.batching if serve.batching != "auto" else self.bundle.info.inference.inference != "onnx"
        self.batcher = Batcher(engine, max_records=serve.max_batch_size) if batching else None
        self.engine = engine
        return engine

    async def answer(self, records: Records, *, proba: bool) -> list[Any]:
        """Predictions (or probabilities) for validated records: through the batcher, or right here."""
        if self.batcher is not None:
            return await self.batcher(records, proba=proba)
        assert self.engine is not None, "answer() before load()"
        return self.engine.predict_proba(records) if proba else self.engine.predict(records)

    def answered(self, request: LoggedRequest, *, proba: bool) -> None:
        """Count an answered request's predictions and hand it to the log (if sampled); never raises."""
        outputs = request.outputs
        if proba:
            labels = [max(answer, key=answer.__getitem__) for answer in outputs]
        elif self.bundle.is_classifier:
            labels = list(outputs)
        else:
            labels = [self.counts.bucket(value) for value in outputs]
        self.counts.predicted(request.endpoint, labels)
        if self.log is not None and self.log.sampled():
            self.log.submit(request)

    def close(self) -> None:
        """Flush the prediction log (BentoML calls this at shutdown)."""
        if self.log is not None:
            self.log.close()

    async def metadata(self, _: Request) -> Response:
        """``GET /metadata``: where the model came from, its metrics, limits and contract."""
        if self.engine is None:
            return Response(error_body("the model is still loading", []), status_code=503, media_type=JSON_TYPE)
        return Response(to_json(self.engine.metadata()), media_type=JSON_TYPE)

    async def metrics(self, _: Request) -> Response:
        """``GET /metrics``: Prometheus text exposition."""
        return Response(self.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def openapi_document(self, _: Request) -> Response:
        """``GET /docs.json``: the OpenAPI document (see :func:`openapi`)."""
        return Response(to_json(self.openapi), media_type=JSON_TYPE)

    @cached_property
    def openapi(self) -> dict[str, Any]:
        """This API as OpenAPI 3.1, built from the same types that validate the requests."""
        return openapi(self.bundle)


REF = "#/components/schemas/{model}"
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Why a request was refused: a summary and each problem found (never the values sent)",
    "properties": {
        "error": {"type": "string"},
        "detail": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
                "required": ["loc", "msg", "type"],
            },
        },
    },
    "required": ["error", "detail"],
}


def _json(schema: Mapping[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON_TYPE: {"schema": dict(schema)}}}


def _text(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


def openapi(bundle: Bundle) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the service for ``bundle``: what it accepts, answers and refuses.

    The request schema is the JSON schema of the type that validates the body, so anything it
    allows is accepted and anything it forbids (a missing or unknown key, a value out of range)
    is refused; every status the server itself sends is listed with the body it carries.
    """
    request = bundle.request.json_schema(ref_template=REF)
    schemas: dict[str, Any] = request.pop("$defs", {})
    schemas |= {"PredictRequest": request, "Error": ERROR_SCHEMA}
    error = {"$ref": REF.format(model="Error")}
    refusals = {
        "400": _json(error, "The body is not JSON, or not what the schema allows"),
        "413": _json(error, f"The body is larger than {bundle.serve.max_body_bytes} bytes"),
        "415": _json(error, f"The content type is not {JSON_TYPE}"),
        "429": _json(error, f"More than {bundle.serve.max_concurrency} requests in progress; retry later"),
        "503": _json(error, "The model is still loading"),
        "504": _json(error, "Not answered in time (a body sent too slowly)"),
    }
    limited = {"413": refusals["413"]}
    loading = limited | {status: refusals[status] for status in ("429", "503", "504")}
    if bundle.is_classifier:
        classes = list(bundle.info.classes or [])
        labels: dict[str, Any] = {"type": "array", "items": {"type": "string", "enum": classes}}
        probability = {"type": "number", "minimum": 0.0, "maximum": 1.0}
        schemas["Probabilities"] = {
            "type": "object",
            "properties": dict.fromkeys(classes, probability),
            "required": classes,
            "additionalProperties": False,
        }
    else:
        labels = {"type": "array", "items": {"type": "number"}}
    body = {"required": True, "content": {JSON_TYPE: {"schema": {"$ref": REF.format(model="PredictRequest")}}}}
    request_id = {
        "X-Request-ID": {
            "description": "This request's id: 16 hex digits, the request_id of its records in the prediction log",
            "required": True,
            "schema": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
        }
    }

    def prediction(summary: str, answer: Mapping[str, Any], operation: str) -> dict[str, Any]:
        return {
            "post": {
                "operationId": operation,
                "summary": summary,
                "requestBody": body,
                "responses": {"200": _json(answer, summary) | {"headers": request_id}, **refusals},
            }
        }

    def read(summary: str, answer: dict[str, Any], operation: str, refused: Mapping[str, Any]) -> dict[str, Any]:
        return {"operationId": operation, "summary": summary, "responses": {"200": answer, **refused}}

    metadata = _json({"type": "object"}, "The model's tag, provenance, metrics, limits and data contract")
    paths: dict[str, Any] = {
        "/predict": prediction("One label (classification) or value (regression) per record", labels, "predict")
    }
    if bundle.is_classifier:
        probabilities = {"type": "array", "items": {"$ref": REF.format(model="Probabilities")}}
        paths["/predict_proba"] = prediction("Each class' probability, per record", probabilities, "predict_proba")
    paths["/metadata"] = {
        "get": read("The served model", metadata, "metadata", loading),
        "post": read("The served model (POST, as earlier versions answered)", metadata, "metadata_post", loading),
    }
    for path, summary in (
        ("/livez", "Liveness"),
        ("/healthz", "Liveness"),
        ("/readyz", "Readiness: 200 once the model is loaded"),
        ("/metrics", "Prometheus metrics"),
    ):
        paths[path] = {"get": read(summary, _text(summary), path.strip("/"), limited)}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "conveyor",
            "version": bundle.info.model_tag,
            "description": f"Predictions of {bundle.info.target} from the model that passed the gate",
        },
        "paths": paths,
        "components": {"schemas": schemas},
    }
