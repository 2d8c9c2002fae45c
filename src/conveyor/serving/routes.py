"""The service's routes: one table (:data:`ROUTES`) and the Starlette app that serves it.

:data:`ROUTES` lists every path the server answers, Conveyor's and BentoML's: the app mounts
Conveyor's, :class:`~conveyor.serving.middleware.Admission` exempts those the table does not
admit, :func:`conveyor.serving.openapi.openapi` documents those with a summary, and request
metrics count each by name. A new route is one entry here (and its handler in :class:`ServingApp`).
The prediction routes and ``/metadata`` are also BentoML APIs (declared in
:mod:`conveyor.serving.service`, so BentoML's clients and ``bentoml.depends`` find them): over HTTP
the front still answers them here, and :meth:`ServingApp.call` answers BentoML's own calls.

The request path is short on purpose (the model takes 0.1 ms on the ONNX path, so the server is
most of the cost): the body is read once, validated straight from bytes into plain dicts
(:func:`conveyor.serving.request.request_type`), predicted on the event loop without a thread
hop, and the answer serialised by pydantic-core.

A model trained from a feature store (the bundle's ``online_features``) takes records giving its
entity keys instead (:class:`FeatureLookup`): their features are fetched from Feast's feature
server in one request per request, in a thread, validated by the contract like a client's, and
predicted and logged as if sent. Only that service pays for it; any other one never looks.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from pydantic_core import to_json
from starlette.applications import Starlette
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor.artifacts import OnlineFeaturesInfo
from conveyor.bundle import Bundle
from conveyor.serving.docs import docs_page
from conveyor.serving.engine import Batcher, Engine, Records
from conveyor.serving.metrics import ServiceMetrics
from conveyor.serving.middleware import (
    JSON_TYPE,
    Admission,
    ASGIApp,
    BearerAuth,
    BodyLimit,
    FastLane,
    HeaderLimit,
    Receive,
    RequestMetrics,
    Scope,
    Send,
    api_tokens,
    error_body,
    header,
    problem,
    read_body,
    refuse,
    send_body,
    send_response,
)
from conveyor.serving.online_features import (
    FeatureServerError,
    MissingEntityError,
    OnlineFeatures,
    server_url,
    with_online_features,
)
from conveyor.serving.openapi import openapi
from conveyor.serving.prediction_log import Exporter, LoggedRequest, PredictionLog
from conveyor.serving.request import request_type

__all__ = ["FeatureLookup", "InvalidFeaturesError", "Prediction", "RouteSpec", "ServingApp"]

logger = logging.getLogger("conveyor.serving")

RouteKind = Literal["labels", "probabilities", "metadata", "openapi", "docs", "metrics", "probe", "bentoml"]
PREDICTIONS: frozenset[RouteKind] = frozenset({"labels", "probabilities"})
REQUEST_ID_HEADER = b"x-request-id"
# What BentoML's own client sends a service another one depends on (never accepted by the main one).
PICKLE_TYPE = b"application/vnd.bentoml+pickle"


@dataclass(frozen=True)
class RouteSpec:
    """One path the server answers: what it serves, and its summary in the OpenAPI document.

    ``kind`` says what answers it: a prediction route (``labels``; ``probabilities``, classifiers
    only), the metadata, the OpenAPI document, the docs page or the metrics of :class:`ServingApp`, or BentoML
    (its ``probe`` routes, documented here, and its own pages). An empty ``summary`` keeps the
    route out of the document; the probes and ``/metrics`` are not ``admitted`` (no concurrency
    limit, no timeout), as in BentoML's own ``traffic.max_concurrency``.
    """

    path: str
    kind: RouteKind
    summary: str = ""

    @property
    def methods(self) -> tuple[str, ...]:
        """The HTTP methods the route answers."""
        if self.kind in PREDICTIONS:
            return ("POST",)
        return ("GET", "POST") if self.kind == "metadata" else ("GET",)

    @property
    def admitted(self) -> bool:
        """Whether :class:`~conveyor.serving.middleware.Admission` holds the route to its limits."""
        return self.kind not in ("probe", "metrics")


ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("/predict", "labels", "One label (classification) or value (regression) per record"),
    RouteSpec("/predict_proba", "probabilities", "Each class' probability, per record"),
    RouteSpec("/metadata", "metadata", "The served model"),
    RouteSpec("/docs.json", "openapi"),
    RouteSpec("/livez", "probe", "Liveness"),
    RouteSpec("/healthz", "probe", "Liveness"),
    RouteSpec("/readyz", "probe", "Readiness: 200 once the model is loaded"),
    RouteSpec("/metrics", "metrics", "Prometheus metrics"),
    RouteSpec("/", "docs"),
    RouteSpec("/schema.json", "bentoml"),
)


class InvalidFeaturesError(FeatureServerError):
    """The feature server answered features the data contract refuses (a value out of range, an unknown category)."""


class FeatureLookup:
    """The online features of validated records that give entity keys: fetched, then validated as a client's.

    One request to the feature server (``CONVEYOR_FEAST_URL``, else the bundle's
    ``server_url``) per call, in a worker thread so the event loop goes on meanwhile. The records
    come back with the features, the request-time fields (which win over a fetched feature of the
    same name) and the entity keys: what the model is given and the prediction log records.
    """

    def __init__(self, bundle: Bundle, online: OnlineFeaturesInfo) -> None:
        self.keys = tuple(online.entity_keys)
        self.client = OnlineFeatures(server_url(online.server_url), feature_service=online.feature_service)
        self.fields = frozenset((*bundle.columns, *bundle.other_columns))
        self.features = request_type(
            bundle.contract, bundle.columns, max_records=bundle.serve.max_records, optional=bundle.other_columns
        )

    async def __call__(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``records`` fed with their features; :class:`MissingEntityError`, :class:`FeatureServerError` otherwise."""
        fetched = await asyncio.to_thread(with_online_features, records, self.client, keys=self.keys)
        known = [{name: value for name, value in record.items() if name in self.fields} for record in fetched]
        try:
            fed: list[dict[str, Any]] = self.features.validate_python({"records": known})["records"]
        except ValidationError as error:
            first = error.errors(include_url=False, include_input=False, include_context=False)[0]
            where = ".".join(str(part) for part in first["loc"][1:])
            raise InvalidFeaturesError(
                f"feature server {self.client.url}: the data contract refuses its features: {where}: {first['msg']}"
            ) from None
        return [
            {**{key: record[key] for key in self.keys}, **features}
            for record, features in zip(records, fed, strict=True)
        ]


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
        checked = self.check(scope, await read_body(receive))
        if isinstance(checked, Response):
            await send_response(checked, scope, receive, send)
            return
        if self.service.engine is None:
            await send_body(send, 503, error_body("the model is still loading", []))
            return
        if self.service.lookup is not None:
            fed = await self.fed(scope, checked)
            if isinstance(fed, Response):
                await send_response(fed, scope, receive, send)
                return
            checked = fed
        outputs = await self.service.answer(checked, proba=self.proba)
        request_id = secrets.token_hex(8)
        await send_body(send, 200, to_json(outputs), extra=((REQUEST_ID_HEADER, request_id.encode()),))
        self.service.answered(LoggedRequest(request_id, self.path, checked, outputs, time.time()), proba=self.proba)

    def check(self, scope: Scope, body: bytes) -> Response | list[dict[str, Any]]:
        """The validated records, or the 4xx refusing them."""
        content_type = header(scope, b"content-type").split(b";", 1)[0].strip().lower()
        if content_type != JSON_TYPE.encode():
            shown = content_type.decode("latin-1") or "none"
            detail = [problem(["header", "content-type"], "media_type", f"expected {JSON_TYPE}, got {shown}")]
            self.service.counts.refused(self.path, detail)
            return refuse(scope["method"], scope["path"], 415, detail)
        try:
            records: list[dict[str, Any]] = self.service.request.validate_json(body)["records"]
        except ValidationError as error:
            found = error.errors(include_url=False, include_input=False, include_context=False)
            detail = [problem(d["loc"], d["type"], d["msg"]) for d in found]
            self.service.counts.refused(self.path, detail)
            return refuse(scope["method"], scope["path"], 400, detail)
        return records

    async def fed(self, scope: Scope, records: list[dict[str, Any]]) -> Response | list[dict[str, Any]]:
        """The records with their online features, or the answer saying why not.

        An entity the online store lacks is the client's 404, naming the key and the value; a
        feature server that cannot answer (or answers what the contract refuses) is a 503 (502).
        """
        assert self.service.lookup is not None
        try:
            return await self.service.lookup(records)
        except MissingEntityError as error:
            key = next(iter(error.entity))
            detail = [problem(["records", error.row, key], "entity_not_found", str(error))]
            self.service.counts.refused(self.path, detail)
            return refuse(scope["method"], scope["path"], 404, detail)
        except FeatureServerError as error:
            logger.warning("%s %s: %s", scope["method"], self.path, error)
            status = 502 if isinstance(error, InvalidFeaturesError) else 503
            return Response(error_body(str(error), []), status_code=status, media_type=JSON_TYPE)


class _BentoMLCalls:
    """A lane of :class:`FastLane` that leaves BentoML's own (pickled) calls to BentoML's handler."""

    def __init__(self, lane: ASGIApp, server: ASGIApp) -> None:
        self.lane = lane
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        pickled = header(scope, b"content-type").split(b";", 1)[0].strip().lower() == PICKLE_TYPE
        await (self.server if pickled else self.lane)(scope, receive, send)


class _Paths:
    """Requests to ``paths`` to ``app``, every other one to ``server``."""

    def __init__(self, server: ASGIApp, app: ASGIApp, *, paths: Iterable[str]) -> None:
        self.server = server
        self.app = app
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ours = scope["type"] == "http" and scope["path"] in self.paths
        await (self.app if ours else self.server)(scope, receive, send)


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
        online = bundle.info.online_features
        self.lookup = FeatureLookup(bundle, online) if online is not None else None
        if online is None:
            self.request = request_type(
                bundle.contract, bundle.columns, max_records=bundle.serve.max_records, optional=bundle.other_columns
            )
        else:
            self.request = request_type(
                bundle.contract,
                [column for column in bundle.columns if column not in online.features],
                max_records=bundle.serve.max_records,
                optional=(*online.features, *bundle.other_columns),
                keys=online.entity_keys,
            )
        self.routes = tuple(route for route in ROUTES if bundle.is_classifier or route.kind != "probabilities")
        self.predictions: dict[str, ASGIApp] = {
            route.path: Prediction(self, path=route.path, proba=route.kind == "probabilities")
            for route in self.routes
            if route.kind in PREDICTIONS
        }
        self.counts = ServiceMetrics(bundle, paths=self.predictions, registry=registry)
        pages: dict[RouteKind, Callable[[Request], Awaitable[Response]]] = {
            "metadata": self.metadata,
            "openapi": self.openapi_document,
            "docs": self.docs,
            "metrics": self.metrics,
        }
        self.app = _Routes(
            routes=[
                Route(route.path, self.predictions.get(route.path) or pages[route.kind], methods=list(route.methods))
                for route in self.routes
                if route.kind in PREDICTIONS or route.kind in pages
            ]
        )

    def front(
        self,
        server: ASGIApp,
        *,
        routes: Iterable[str] = (),
        timeout: float = 30,
        tokens: Iterable[bytes] | None = None,
        dependency: bool = False,
    ) -> ASGIApp:
        """The ASGI app to run: ``server`` (which mounts :attr:`app`) behind this service's middleware.

        Outermost first: :class:`RequestMetrics` (every path of :data:`ROUTES` and ``routes``,
        more paths of the server's, counted by name), :class:`Admission` (but for the routes
        :data:`ROUTES` exempts), :class:`BodyLimit`, then :class:`FastLane` to the prediction
        endpoints and ``POST /metadata``; any other request to these paths (which ``server``
        declares as BentoML APIs, ``POST`` only) to :attr:`app`, which also answers ``GET
        /metadata`` and a 405 naming the methods allowed; everything else to ``server``. The
        limits come from the bundle's ``serve``.

        A ``dependency`` (a service another one composes with ``bentoml.depends``, not the main
        one) also takes BentoML's own calls: their pickled bodies go to ``server``'s handlers.

        Between the metrics and admission: :class:`HeaderLimit` and, with ``serve.auth: bearer``,
        :class:`BearerAuth` with ``tokens`` (``None``: :func:`api_tokens`, from the environment).
        """
        serve = self.bundle.serve
        lanes: dict[str, ASGIApp] = {**self.predictions, "/metadata": self.app}
        if dependency:
            lanes = {path: _BentoMLCalls(lane, server) for path, lane in lanes.items()}
        # The exception layer turns a method the route does not take into 405 with `Allow`.
        declared = _Paths(server, ExceptionMiddleware(self.app), paths=lanes)
        app: ASGIApp = FastLane(declared, routes=lanes)
        app = BodyLimit(app, max_body_bytes=serve.max_body_bytes, metrics=self.counts)
        # Per worker, as BentoML divides traffic.max_concurrency.
        exempt = [route.path for route in ROUTES if not route.admitted]
        app = Admission(app, max_concurrency=-(-serve.max_concurrency // serve.workers), timeout=timeout, exempt=exempt)
        if serve.auth == "bearer":
            app = BearerAuth(app, tokens=api_tokens() if tokens is None else tokens, exempt=exempt)
        app = HeaderLimit(app, max_headers=serve.max_headers, max_header_bytes=serve.max_header_bytes)
        known = (*(route.path for route in ROUTES), *routes)
        return RequestMetrics(app, routes=known, registry=self.registry, access_log=serve.access_log)

    def load(self, exporter: Exporter | None = None) -> Engine:
        """Load the model, warm it up and serve it from now on (batched, if ``serve.batching`` says so).

        With an ``exporter`` and the bundle's ``monitor.log_predictions``, answered requests are
        logged through it from a :class:`~conveyor.serving.prediction_log.PredictionLog` started
        here (per worker).
        """
        settings = self.bundle.prediction_log
        if exporter is not None and settings.log_predictions:
            self.log = PredictionLog(exporter, settings, records=self.counts.log_records).start()
        engine = Engine(self.bundle)
        engine.warm_up()
        serve = self.bundle.serve
        batching = serve.batching if serve.batching != "auto" else self.bundle.info.inference.inference != "onnx"
        self.batcher = Batcher(engine, max_batch_size=serve.max_batch_size) if batching else None
        self.engine = engine
        return engine

    async def call(self, path: str, records: Any) -> list[Any]:
        """The answer of prediction route ``path`` to ``records`` outside HTTP: what the declared
        BentoML APIs return when called in process (``bentoml.depends``) or by BentoML's handlers.

        The records are validated as a request body is (a :class:`pydantic.ValidationError`
        otherwise), fed with their online features if the model takes them (or the error of
        :class:`FeatureLookup`), counted and logged like an HTTP request's.
        """
        endpoint = self.predictions[path]
        assert isinstance(endpoint, Prediction)
        checked: list[dict[str, Any]] = self.request.validate_python({"records": records})["records"]
        if self.engine is None:
            raise RuntimeError("the model is still loading")
        if self.lookup is not None:
            checked = await self.lookup(checked)
        outputs = await self.answer(checked, proba=endpoint.proba)
        self.answered(LoggedRequest(secrets.token_hex(8), path, checked, outputs, time.time()), proba=endpoint.proba)
        return outputs

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
        elif self.bundle.bool_labels:
            labels = ["true" if answer else "false" for answer in outputs]
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
        if self.log is not None:
            self.log.publish_dropped()
        return Response(self.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def docs(self, _: Request) -> Response:
        """``GET /``: the docs page (Swagger UI on ``/docs.json``, every asset from this server)."""
        return Response(self.docs_html, media_type="text/html; charset=utf-8")

    @cached_property
    def docs_html(self) -> bytes:
        """The docs page's HTML (see :func:`conveyor.serving.docs.docs_page`)."""
        openapi_path = next(route.path for route in self.routes if route.kind == "openapi")
        return docs_page(title=f"conveyor: {self.bundle.info.model_tag}", openapi_url=openapi_path)

    async def openapi_document(self, _: Request) -> Response:
        """``GET /docs.json``: the OpenAPI document (see :func:`openapi`)."""
        return Response(to_json(self.openapi), media_type=JSON_TYPE)

    @cached_property
    def openapi(self) -> dict[str, Any]:
        """This API as OpenAPI 3.1, built from the same types that validate the requests."""
        return openapi(self.bundle, self.request, self.routes)
