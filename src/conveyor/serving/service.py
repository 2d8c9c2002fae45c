"""The BentoML service: the model that passed the gate, behind a strict, typed HTTP API.

``bentoml serve`` at the repository root (or ``make serve``) serves the model this checkout's
package stage saved (its tag is in ``reports/package.json``; ``CONVEYOR_MODEL_TAG`` picks another
version); inside a bento, the model the bento carries. This module is the BentoML wiring only;
the rest of :mod:`conveyor.serving` runs without BentoML.

``predict``, ``predict_proba`` (classifiers) and ``metadata`` are BentoML APIs (``bentoml.api``)
whose input and output types are the data contract's record types, so BentoML sees them as any
service's: ``/schema.json`` lists them, ``bentoml.SyncHTTPClient(url).predict(records=[...])``
and ``AsyncHTTPClient`` call them, ``bentoml.depends(Conveyor)`` composes the service (in process
or served), and the bento's ``apis/openapi.yaml`` is the document served at ``/docs.json``
(:meth:`ConveyorService.openapi_spec`).

Over HTTP, though, BentoML's handlers are not on the request path: its IO descriptors parse each
body twice and hop to a thread, which made a 0.1 ms ONNX prediction cost 5 ms a request. The
service class (BentoML's ``service_class`` option) puts Conveyor's middleware in front of
BentoML's server: request metrics, admission (concurrency, timeout), the body limit on every
route, and a fast lane that answers the declared routes' JSON requests itself (validated once,
from bytes, by the same types) past BentoML's per-request middleware. The other routes (the
metadata as ``GET``, the docs page, ``/docs.json``, ``/metrics``) are a small Starlette app
(:class:`conveyor.serving.routes.ServingApp`) mounted with ``bentoml.asgi_app``. BentoML still
runs the server and its workers, the probes, the Swagger UI files and the bento; the APIs'
bodies (:meth:`conveyor.serving.routes.ServingApp.call`) answer the calls that are not HTTP
requests from a client: in process, and BentoML's own pickled calls between services.

Import-time work is light on purpose (the bundle's JSON and contract, checked against the hashes
recorded at package time): the routes, limits and worker settings must exist before the class is
decorated. The model itself is loaded once per worker in ``__init__``, warmed up, and then
``gc.freeze()`` moves everything loaded so far out of the collector's sight, which took
single-record p99 from 82 ms to 12 ms here.
"""

import atexit
import contextlib
import gc
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, TypeVar

import bentoml
import yaml
from bentoml._internal.configuration.containers import BentoMLContainer
from pydantic import BaseModel, ConfigDict, Field, create_model
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
from typing_extensions import TypedDict

from conveyor.bundle import MODEL_NAME, PACKAGE_REPORT, Bundle, read_package_report
from conveyor.errors import ConveyorError
from conveyor.serving import connection
from conveyor.serving.middleware import api_tokens
from conveyor.serving.prediction_log import BentoMonitorExporter, log_types
from conveyor.serving.request import body_type, record_type
from conveyor.serving.routes import ServingApp

__all__ = [
    "Conveyor",
    "ConveyorService",
    "OpenAPIDocument",
    "api_types",
    "bento_model",
    "model_tag",
    "prediction_exporter",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def model_tag() -> str:
    """``CONVEYOR_MODEL_TAG``, else the model the bento serving this carries, else the model this
    checkout packaged, else the newest one.

    Not simply the newest: switching back to a branch whose model is already in the store
    re-packages nothing, so "latest" would still be the other branch's model; and a bento served
    by tag on a machine whose store holds newer models must serve its own.
    """
    if tag := os.environ.get("CONVEYOR_MODEL_TAG"):
        return tag
    if (carried := bento_model()) is not None:
        return carried
    if PACKAGE_REPORT.is_file():
        return read_package_report(PACKAGE_REPORT).model_tag
    return f"{MODEL_NAME}:latest"


def bento_model() -> str | None:
    """Inside a bento (this file at ``<bento>/src/conveyor/serving/service.py``), the model its ``bento.yaml`` names."""
    manifest = Path(__file__).resolve().parents[3] / "bento.yaml"
    if not manifest.is_file():
        return None
    info = yaml.safe_load(manifest.read_text(encoding="utf-8")) or {}
    models = info.get("models") or [m for service in info.get("services") or [] for m in service.get("models") or []]
    tags = [str(m["tag"]) for m in models if isinstance(m, dict) and str(m.get("tag", "")).startswith(f"{MODEL_NAME}:")]
    return tags[0] if tags else None


# The process that imported this module before this one: in a worker of `bentoml serve`, that
# server (its arbiter), which a worker that cannot start stops (see stop_serving).
SERVER_PID_VARIABLE = "CONVEYOR_SERVER_PID"
# Where that worker leaves its failure, so that the server exits non-zero (see _exit_failed).
FAILURE_VARIABLE = "CONVEYOR_SERVER_FAILURE"
_IMPORTED_BY = os.environ.get(SERVER_PID_VARIABLE)
_SERVER_FAILURE = os.environ.get(FAILURE_VARIABLE)
os.environ[SERVER_PID_VARIABLE] = str(os.getpid())
os.environ[FAILURE_VARIABLE] = str(Path(tempfile.gettempdir(), f"conveyor-failed-{os.getpid()}"))


@atexit.register
def _exit_failed() -> None:
    """Exit 3 rather than 0 if a worker stopped this server because it could not start."""
    failure = Path(os.environ[FAILURE_VARIABLE])
    if os.environ.get(SERVER_PID_VARIABLE) == str(os.getpid()) and failure.is_file():
        failure.unlink(missing_ok=True)
        os._exit(3)


MODEL = bentoml.models.BentoModel(model_tag())
_stored = MODEL.stored
if _stored is None:
    sys.exit(
        f"conveyor: no BentoML model {MODEL.tag} in {os.environ.get('BENTOML_HOME', '~/bentoml')}: "
        "run `make run` (dvc repro) first"
    )
try:
    BUNDLE = Bundle.load(Path(_stored.path))
    SERVE = BUNDLE.serve
    TOKENS = api_tokens() if SERVE.auth == "bearer" else ()
except ConveyorError as error:
    # One line naming the file, and an exit rather than a traceback BentoML would retry forever.
    sys.exit(f"conveyor: cannot serve {MODEL.tag}: {error}")

# Native thread pools read these when they start; set before any model is loaded in this worker.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, str(SERVE.threads))

# BentoML's server logging shows only WARNING and up outside its own loggers; a refused request is
# one INFO line (see conveyor.serving.middleware.refuse).
logging.getLogger("conveyor").setLevel(logging.INFO)

try:
    APP = ServingApp(BUNDLE, exposition=lambda: bytes(BentoMLContainer.metrics_client.get().generate_latest()))  # type: ignore[no-untyped-call]
except ConveyorError as error:  # e.g. a CONVEYOR_FEAST_URL that is no URL
    sys.exit(f"conveyor: cannot serve {MODEL.tag}: {error}")
TIMEOUT_S = 30
# The prediction log's thread holds the GIL while it encodes a chunk of records; a request that
# arrives meanwhile waits until the thread lets go, or the switch interval (5 ms by default) forces
# it to. A fifth of a millisecond bounds that wait: single-record p99 at one connection fell from
# 0.88-0.94 to 0.73-0.77 ms, throughput unchanged (benchmarks/serving.py, 2026-12-02).
GIL_SWITCH_INTERVAL_S = 0.0002
_typed_dict: Any = TypedDict


def api_types(bundle: Bundle) -> tuple[type[BaseModel], type[BaseModel], Any, Any]:
    """The declared APIs' types for ``bundle``: the prediction input (``records``, the request
    body's own type), an input with no field, the labels (or values) and the probabilities.

    The same contract types as :func:`conveyor.serving.request.request_type`, so what
    ``/schema.json`` tells BentoML's clients is what the front validates.
    """
    strict = ConfigDict(extra="forbid", strict=True)
    online = bundle.info.online_features
    if online is None:
        record = record_type(bundle.contract, bundle.columns)
    else:  # the entity keys and the request-time fields; the features are fetched
        given = [column for column in bundle.columns if column not in online.features]
        record = record_type(bundle.contract, given, optional=online.features, keys=online.entity_keys)
    body = body_type(record, max_records=bundle.serve.max_records)
    field: Any = (body.__annotations__["records"], ...)
    records = create_model("PredictInput", __config__=strict, records=field)
    nothing = create_model("MetadataInput", __config__=strict)
    classes = tuple(bundle.info.classes or ())
    if not bundle.is_classifier:
        return records, nothing, list[float], None
    probability = Annotated[float, Field(ge=0.0, le=1.0)]
    probabilities = _typed_dict("Probabilities", dict.fromkeys(classes, probability))
    return records, nothing, list[Literal[classes]], list[probabilities]  # type: ignore[valid-type]


PREDICT_INPUT, METADATA_INPUT, LABELS, PROBABILITIES = api_types(BUNDLE)


def returns(kind: Any) -> Callable[[F], F]:
    """Give an API method its return type, known only once the bundle is loaded: ``bentoml.api``
    reads its output type (and so ``/schema.json``'s) from the method's return annotation."""

    def annotate(method: F) -> F:
        method.__annotations__["return"] = kind
        return method

    return annotate


class OpenAPIDocument(dict[str, Any]):
    """The OpenAPI document where BentoML expects its own: ``asdict()`` for ``/docs.json``, YAML for the bento."""

    def asdict(self) -> dict[str, Any]:
        """The document as plain JSON-ready data."""
        return dict(self)


# `bentoml build` writes `apis/openapi.yaml` with `yaml.dump(service.openapi_spec)`.
yaml.add_representer(OpenAPIDocument, lambda dumper, document: dumper.represent_dict(dict(document)))


class ConveyorService(bentoml.Service[T]):  # type: ignore[misc]
    """BentoML's service, with :meth:`conveyor.serving.routes.ServingApp.front` in front of its server."""

    def to_asgi(self, is_main: bool = True) -> Any:
        """BentoML's ASGI app (probes, docs, the mounted routes) behind Conveyor's middleware.

        Called in each worker just before BentoML builds its uvicorn server: the connection
        limits (:func:`conveyor.serving.connection.install`) go in here too.
        """
        connection.install(SERVE)
        return APP.front(super().to_asgi(is_main), timeout=TIMEOUT_S, tokens=TOKENS, dependency=not is_main)

    @property
    def openapi_spec(self) -> OpenAPIDocument:
        """The served OpenAPI document (``/docs.json``), also the bento's ``apis/openapi.yaml``."""
        return OpenAPIDocument(APP.openapi)


@bentoml.service(
    name="conveyor",
    service_class=ConveyorService,
    workers=SERVE.workers,
    threads=SERVE.threads,
    # The same limits for the routes BentoML serves itself (the front applies them to all).
    traffic={"timeout": TIMEOUT_S, "max_concurrency": SERVE.max_concurrency},
    # The front logs, counts and times every request: BentoML's access log would repeat it, and
    # its metrics label requests by raw path (a series per unknown URL).
    logging={"access": {"enabled": False}},
    metrics={"enabled": False},
    labels={"project": "conveyor"},
)
@bentoml.asgi_app(APP.app, path="/")
class Conveyor:
    """Predictions from the accepted model, typed from the data contract."""

    model = MODEL

    def __init__(self) -> None:
        try:
            threadpool_limits(limits=SERVE.threads)
            APP.load(exporter=prediction_exporter())
        except Exception as error:  # whatever stops the model loading, the server must not retry forever
            stop_serving(error)
        gc.collect()
        gc.freeze()
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)

    @bentoml.api(route="/predict", input_spec=PREDICT_INPUT)  # type: ignore[untyped-decorator]
    @returns(LABELS)
    async def predict(self, records: list[dict[str, Any]]) -> list[Any]:
        """One label (classification) or value (regression) per record."""
        return await APP.call("/predict", records)

    if PROBABILITIES is not None:

        @bentoml.api(route="/predict_proba", input_spec=PREDICT_INPUT)  # type: ignore[untyped-decorator]
        @returns(PROBABILITIES)
        async def predict_proba(self, records: list[dict[str, Any]]) -> list[dict[str, float]]:
            """Each class' probability, per record."""
            return await APP.call("/predict_proba", records)

    @bentoml.api(route="/metadata", input_spec=METADATA_INPUT)  # type: ignore[untyped-decorator]
    async def metadata(self) -> dict[str, Any]:
        """The served model: its tag, provenance, metrics, limits and data contract."""
        if APP.engine is None:
            raise RuntimeError("the model is still loading")
        return APP.engine.metadata()

    @bentoml.on_shutdown  # type: ignore[untyped-decorator]
    def flush_prediction_log(self) -> None:
        """Export the predictions still queued before the worker exits."""
        APP.close()


def prediction_exporter() -> BentoMonitorExporter | None:
    """The exporter of the prediction log, unless BentoML's ``monitoring.enabled`` is off.

    Where it writes is BentoML's ``monitoring`` configuration (``BENTOML_CONFIG`` or
    ``BENTOML_CONFIG_OPTIONS``): JSON lines under ``options.log_path`` by default, OTLP with
    ``type: otlp``. Whether and how much is logged is the bundle's (``monitor.log_*``). A model
    fed from a feature store logs the features it was given (the fetched values) as any model
    logs its inputs, and the entity keys as metadata.
    """
    if not BentoMLContainer.config.monitoring.enabled.get():
        return None
    info = BUNDLE.info
    others = log_types(BUNDLE.contract, BUNDLE.other_columns)
    if info.online_features is not None:  # the entity keys too, beside the features fetched for them
        others = dict.fromkeys(info.online_features.entity_keys, "categorical") | others
    return BentoMonitorExporter(
        spec=BUNDLE.spec,
        task=info.task,
        classes=info.classes or [],
        model_tag=info.model_tag,
        others=others,
    )


def stop_serving(error: Exception) -> NoReturn:
    """Exit this worker with one line naming ``error``, stopping the ``bentoml serve`` that started it.

    A worker that raises while starting is restarted by BentoML's arbiter, forever, one
    traceback each ("Application startup failed"); the model will not load any better the next
    time. So the worker stops the server (SIGTERM: it stops its workers and exits) and exits at
    once; the server then exits 3. Only a server that imported this module first is stopped (``CONVEYOR_SERVER_PID`` is
    its process id): never a test or a program that serves the service in its own process.
    """
    cause = str(error) if isinstance(error, ConveyorError) else f"{type(error).__name__}: {error}"
    cause = " ".join(cause.split())[:1000]
    sys.stderr.write(f"conveyor: cannot serve {MODEL.tag}: {cause}\n")
    sys.stderr.flush()
    if str(os.getppid()) == _IMPORTED_BY:
        if _SERVER_FAILURE is not None:
            with contextlib.suppress(OSError):
                Path(_SERVER_FAILURE).write_text(cause, encoding="utf-8")
        os.kill(os.getppid(), signal.SIGTERM)
        os._exit(3)
    raise error
