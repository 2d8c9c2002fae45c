"""Prediction logging: each answered prediction request, handed to BentoML's monitor off the request path.

A request's validated records, its answer, the model tag and the request id (the one the client
got in ``X-Request-ID``) go into a bounded in-memory queue; a background thread takes them out
in chunks and hands each chunk to the exporter (:class:`BentoMonitorExporter`: ``bentoml.monitor``,
which writes JSON lines by default or sends OTLP when BentoML's ``monitoring`` configuration says
so; its default JSON lines are written a chunk at a time, see :meth:`BentoMonitorExporter.export_batch`). So logging
never blocks a request on disk or network and never fails one: a full queue drops the request's
records and counts them, a failing exporter is counted and logged at most once a minute, and the
thread keeps to a share of a core (``monitor.log_max_cpu_share``), so that under a load it cannot
keep up with it drops records rather than slow the requests down.
Requests are sampled whole (all records of a request or none), so labels can name any logged one.
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
import random
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from logging.handlers import RotatingFileHandler, TimedRotatingFileHandler
from operator import itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from prometheus_client import CollectorRegistry, Counter

if TYPE_CHECKING:
    from bentoml.monitoring import MonitorBase

from conveyor.config import PredictionLogConfig
from conveyor.contract import Contract
from conveyor.model.features import FeatureSpec
from conveyor.model.registry import Task

__all__ = [
    "MODEL_TAG",
    "MONITOR_NAME",
    "BatchExporter",
    "BentoMonitorExporter",
    "ExportError",
    "Exporter",
    "LoggedRequest",
    "PredictionLog",
    "log_types",
    "register",
]

logger = logging.getLogger("conveyor.serving")

# One monitor for both endpoints: BentoML's default exporter configures one process-wide pair of
# loggers, so a second monitor name would take over the first one's files.
MONITOR_NAME = "conveyor_predictions"
PREDICTION = "prediction"
PROBABILITIES = "probabilities"
ENDPOINT = "endpoint"
MODEL_TAG = "model_tag"
# How long the idle thread sleeps before looking at the queue again; also about the most a record
# waits (beyond its CPU rests). Each wake-up takes the GIL from the requests, so it is rare: a quarter
# of a second's records go out in one chunk rather than one at a time.
POLL_SECONDS = 0.25
# Records per chunk handed to the exporter: enough to spread its fixed costs (a write, a flush),
# few enough that one chunk holds the GIL well under a millisecond on a quiet machine (256 took
# 4-6 ms on a loaded one, and single-record p99 at 32 connections rose with it).
CHUNK_RECORDS = 64
FAILURE_LOG_INTERVAL_S = 60.0
MIN_REST_S = 0.001


class LoggedRequest(NamedTuple):
    """One answered prediction request: its id, route, validated records and the answer to each.

    A named tuple, since one is built for every answered request: a frozen dataclass's
    ``__init__`` (an ``object.__setattr__`` per field) cost several times as much.
    """

    request_id: str
    endpoint: str
    records: Sequence[Mapping[str, Any]]
    outputs: Sequence[Any]
    # When it was answered (seconds since the epoch), the record's ``timestamp``; the thread may
    # export it a while later. None: when it is exported.
    answered_at: float | None = None


Exporter = Callable[[LoggedRequest], None]


class ExportError(Exception):
    """A chunk exported in part: ``exported`` of its records went out before ``__cause__`` stopped it."""

    def __init__(self, exported: int) -> None:
        super().__init__(f"{exported} record(s) exported before the failure")
        self.exported = exported


@runtime_checkable
class BatchExporter(Protocol):
    """An exporter that takes a chunk of requests at once (raising :class:`ExportError` when some went out)."""

    def export_batch(self, requests: Sequence[LoggedRequest]) -> None:
        """Export every one of ``requests``, or raise."""


class PredictionLog:
    """A bounded queue of answered requests, drained by a daemon thread that calls ``export``.

    ``settings`` are the bundle's ``monitor.log_*``. ``submit`` is all the request path pays: a
    sampling draw (``log_sample_rate``) and a ``deque.append`` (or a count when the queue holds
    ``log_queue_records`` records already). The queue is bounded in records, not requests, since
    one request may carry up to ``serve.max_records`` of them. The thread spends at most
    ``log_max_cpu_share`` of a core exporting: under a load the exporter cannot keep up with,
    records are dropped (and counted) rather than taken from the requests' CPU. An exporter with
    ``export_batch`` (:class:`BatchExporter`) gets up to :data:`CHUNK_RECORDS` records' worth of
    requests at a time; any other is called once per request.
    """

    def __init__(self, export: Exporter, settings: PredictionLogConfig, *, records: Counter) -> None:
        self.export = export
        self.batch = export if isinstance(export, BatchExporter) else None
        self.sample_rate = settings.log_sample_rate
        self.max_queued_records = settings.log_queue_records
        # After each CPU second spent exporting, the thread rests this long (none at a share of 1).
        self.rest_per_busy_second = 1.0 / settings.log_max_cpu_share - 1.0
        self.queue: deque[LoggedRequest] = deque()
        # Each written by one thread only (the request path, the drain): their difference is the backlog.
        self.queued_records = 0
        self.done_records = 0
        self.dropped_records = 0
        self.published_dropped = 0
        self.publishing = threading.Lock()
        self.failures = 0
        # ``records`` is :func:`register`'s counter.
        self.outcomes = {name: records.labels(name) for name in ("exported", "dropped", "failed")}
        self.stopping = threading.Event()
        self.last_failure_logged = -FAILURE_LOG_INTERVAL_S
        self.thread = threading.Thread(target=self._drain, name="conveyor-prediction-log", daemon=True)

    def start(self) -> PredictionLog:
        """Start the draining thread; returns ``self``."""
        self.thread.start()
        return self

    def sampled(self) -> bool:
        """Whether to log the next request (``log_sample_rate`` of them, drawn per request)."""
        return self.sample_rate >= 1.0 or random.random() < self.sample_rate

    def submit(self, request: LoggedRequest) -> bool:
        """Queue ``request`` for the exporter, or drop and count it if the queue is full; never blocks."""
        size = len(request.records)
        if self.queued_records - self.done_records + size > self.max_queued_records:
            # Counted here, published by publish_dropped: under BentoML the counter is a
            # multiprocess one (a lock and an mmap write), paid per dropped request otherwise.
            self.dropped_records += size
            return False
        self.queued_records += size
        self.queue.append(request)
        return True

    def publish_dropped(self) -> None:
        """Add the records dropped since the last call to ``outcome="dropped"``.

        Called by the thread whenever it wakes (at least every :data:`POLL_SECONDS` when idle),
        at close, and before ``/metrics`` is rendered, so a scrape of this worker is exact and
        another worker's count is at most a rest behind.
        """
        with self.publishing:
            dropped = self.dropped_records
            if dropped > self.published_dropped:
                self.outcomes["dropped"].inc(dropped - self.published_dropped)
                self.published_dropped = dropped

    def close(self, timeout: float = 5.0) -> None:
        """Export what is queued (within ``timeout`` seconds), then stop the thread."""
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(timeout)
        self.publish_dropped()

    def _drain(self) -> None:
        owed = 0.0
        while True:
            self.publish_dropped()
            chunk = self._take()
            if not chunk:
                if self.stopping.is_set():
                    return
                self.stopping.wait(POLL_SECONDS)
                continue
            started = time.thread_time()
            if self.batch is not None:
                self._counted(self.batch.export_batch, chunk)
            else:
                for request in chunk:
                    self._counted(self.export, request)
            # Exporting holds the GIL the request path needs; resting in proportion to the CPU
            # time it took (not the wall time: waiting on a network is free) keeps the thread
            # within max_cpu_share of a core, and a backlog beyond it fills the queue, to be
            # dropped and counted. Rests are gathered into steps of at least a millisecond.
            owed += (time.thread_time() - started) * self.rest_per_busy_second
            if owed >= MIN_REST_S:
                self.stopping.wait(owed)
                owed = 0.0

    def _take(self) -> list[LoggedRequest]:
        """The oldest queued requests, up to :data:`CHUNK_RECORDS` records (at least one request)."""
        chunk: list[LoggedRequest] = []
        records = 0
        while records < CHUNK_RECORDS:
            try:
                request = self.queue.popleft()
            except IndexError:
                break
            chunk.append(request)
            records += len(request.records)
        return chunk

    def _counted(self, export: Callable[[Any], None], what: LoggedRequest | list[LoggedRequest]) -> None:
        """Call ``export`` on one request or a chunk, counting its records exported or failed."""
        size = len(what.records) if isinstance(what, LoggedRequest) else sum(len(r.records) for r in what)
        exported = size
        try:
            export(what)
        except Exception as error:  # whatever the exporter raises, the service goes on
            exported = error.exported if isinstance(error, ExportError) else 0
            self.failures += 1
            self.outcomes["failed"].inc(size - exported)
            cause = error.__cause__ if isinstance(error, ExportError) else None
            self._report(cause if isinstance(cause, Exception) else error)
        finally:
            if exported:
                self.outcomes["exported"].inc(exported)
            self.done_records += size

    def _report(self, error: Exception) -> None:
        now = time.monotonic()
        if now - self.last_failure_logged >= FAILURE_LOG_INTERVAL_S:
            self.last_failure_logged = now
            logger.warning(
                "prediction log: the exporter failed (%d failure(s) so far; logged at most once a minute): %r",
                self.failures,
                error,
            )


def _quiet_json_formatter_import() -> None:
    """Import the formatter BentoML's default exporter names, without its DeprecationWarning.

    BentoML's logging config names ``pythonjsonlogger.jsonlogger``, a module that warns on import
    that it moved; under warnings-as-errors ``logging.config`` would then fail to build the
    formatter. Imported once here, the module is cached and the config finds it silently.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import pythonjsonlogger.jsonlogger  # noqa: F401


class BentoMonitorExporter:
    """Logs one request through ``bentoml.monitor``: one record per input record, the id as BentoML's.

    Columns: each input column (role ``feature``), each of ``others`` (the contract's columns the
    model does not take: ids, so that labels can be joined on them later, dates, text; role
    ``metadata``, null where a record left it out), ``prediction`` (the label or value; for
    ``/predict_proba`` the most probable class) and ``probabilities`` (``/predict_proba`` only, in
    the order of the model's classes) with role ``prediction``, and ``endpoint`` and ``model_tag``
    (role ``metadata``). BentoML adds ``timestamp`` (in chunks, when the request was answered),
    ``request_id`` (set here to Conveyor's id) and ``trace_id``. ``others`` maps each column to its BentoML data type (:func:`log_types`).
    """

    def __init__(
        self,
        *,
        spec: FeatureSpec,
        task: Task,
        classes: Sequence[str],
        model_tag: str,
        others: Mapping[str, str] | None = None,
    ) -> None:
        import bentoml
        from bentoml._internal.context import trace_context

        _quiet_json_formatter_import()
        # BentoML warns once per value for a role outside its three (our metadata columns), and for
        # every value after the first of the first batch ("Column name … is duplicated"): a line
        # per record for a schema that is fixed here. Its errors still show.
        logging.getLogger("bentoml._internal.monitoring.base").setLevel(logging.ERROR)
        self.open_monitor = bentoml.monitor
        self.monitor: MonitorBase[Any] | None = None
        self.trace_context = trace_context
        # Dates and text that derived features read are inputs too, logged as the strings sent.
        self.columns = [(name, "numerical") for name in spec.numeric] + [
            (name, "categorical") for name in (*spec.categorical, *(column for column, _ in spec.extra))
        ]
        self.others = list((others or {}).items())
        self.prediction_type = "categorical" if task == "classification" else "numerical"
        self.classes = list(classes)
        self.model_tag = model_tag
        # BentoML's default JSON-lines files, once the first request through BentoML opened them
        # (and wrote the schema): None until then, or for any other monitor (OTLP, a custom config).
        self.lines: _JsonLines | None = None
        self.lines_checked = False

    def __call__(self, request: LoggedRequest) -> None:
        """Write ``request`` as ``len(request.records)`` monitor records."""
        records, size = request.records, len(request.records)
        # Every column is built before the monitor is touched: an error here leaves it clean.
        columns = [([record[name] for record in records], name, "feature", kind) for name, kind in self.columns]
        columns += [([record.get(name) for record in records], name, "metadata", kind) for name, kind in self.others]
        if request.endpoint == "/predict_proba":
            predictions: list[Any] = [max(answer, key=answer.__getitem__) for answer in request.outputs]
            probabilities: list[Any] = [[answer[name] for name in self.classes] for answer in request.outputs]
        else:
            predictions, probabilities = list(request.outputs), [None] * size
        columns += [
            (predictions, PREDICTION, "prediction", self.prediction_type),
            (probabilities, PROBABILITIES, "prediction", "numerical_sequence"),
            ([request.endpoint] * size, ENDPOINT, "metadata", "categorical"),
            ([self.model_tag] * size, MODEL_TAG, "metadata", "categorical"),
        ]
        # In a context of its own: BentoML keeps the record being built and the request id in
        # context variables, which an export that failed halfway must not leave to the next one.
        contextvars.Context().run(self._write, request.request_id, columns)

    def export_batch(self, requests: Sequence[LoggedRequest]) -> None:
        """Write every one of ``requests``; :class:`ExportError` (saying how many records went out) if not.

        BentoML's default monitor turns each record into a ``logging`` call, its JSON formatter and
        a write and flush of its own: 130-190 µs of the GIL a record on the shared machine, so the log could keep up
        with only a few hundred records a second within its CPU share. Once the first request
        through BentoML has opened its files and written the schema, the rest are written
        here as BentoML would write them (the same keys in the same order, its formatter's own
        JSON encoder), one ``write`` and one flush per chunk. Any other monitor gets every
        request through BentoML, one after the other.
        """
        exported = 0
        for index, request in enumerate(requests):
            if self.lines is not None:
                try:
                    self.lines.write(requests[index:], trace_id=self._trace_id())
                except Exception as error:
                    raise ExportError(exported) from error
                return
            try:
                self(request)
            except Exception as error:
                raise ExportError(exported) from error
            exported += len(request.records)
            if not self.lines_checked and self.monitor is not None:
                self.lines_checked = True
                features, others = [name for name, _ in self.columns], [name for name, _ in self.others]
                self.lines = _JsonLines.of(self.monitor, features, others, self.model_tag, self.classes)

    def _trace_id(self) -> str:
        # As BentoML's default monitor writes it from this thread: a context of its own, no span.
        return str(contextvars.Context().run(lambda: self.trace_context.trace_id))

    def _write(self, request_id: str, columns: list[tuple[list[Any], str, str, str]]) -> None:
        # BentoML types its own ids as integers but only ever writes str(id).
        self.trace_context.request_id = request_id  # type: ignore[assignment]
        if self.monitor is None:
            # Opening leaves BentoML's record variables set; in a context of its own, they go with it.
            self.monitor = contextvars.Context().run(self._open)
        self.monitor.start_record()  # type: ignore[no-untyped-call]
        for column in columns:
            self.monitor.log_batch(*column)
        self.monitor.stop_record()

    def _open(self) -> MonitorBase[Any]:
        """The monitor BentoML's configuration makes, its files open, and its write errors raised.

        The context manager makes (and caches) the monitor; with nothing logged it writes
        nothing. Later requests call the monitor's own start_record/stop_record, sparing
        ``bentoml.monitor``'s dependency injection per request.
        """
        with self.open_monitor(MONITOR_NAME) as monitor:
            pass
        raise_write_errors(monitor)
        return monitor


class _JsonLines:
    """BentoML's default monitor's data files, written a chunk of requests at a time.

    Each record is the JSON object BentoML's ``DefaultMonitor.export_data`` hands its logger
    (the logged columns in order, then ``timestamp``, ``request_id`` and ``trace_id``), encoded
    by the encoder its ``JsonFormatter`` builds, one line each: what ``conveyor monitor`` reads.
    """

    def __init__(
        self,
        *,
        handlers: list[logging.FileHandler],
        encode: Callable[[Any], str],
        keys: list[str],
        features: list[str],
        others: list[str],
        model_tag: str,
        classes: Sequence[str],
    ) -> None:
        self.handlers = handlers
        self.encode = encode
        self.keys = keys
        # One C call for the inputs every record has; the others only some records carry.
        self.features = itemgetter(*features) if len(features) > 1 else None
        self.feature_names = features
        self.others = others
        self.model_tag = model_tag
        self.classes = list(classes)
        # Only its time matters to a timed rotation; a size rotation sizes it as an empty record.
        self.probe = logging.LogRecord("bentoml_monitor_data", logging.INFO, __file__, 0, {}, None, None)

    @classmethod
    def of(
        cls, monitor: object, features: list[str], others: list[str], model_tag: str, classes: Sequence[str]
    ) -> _JsonLines | None:
        """The files of ``monitor`` if it is BentoML's default one with its own logging config, else None."""
        from bentoml._internal.monitoring.default import DefaultMonitor
        from pythonjsonlogger.json import JsonFormatter

        if type(monitor) is not DefaultMonitor or monitor.log_config_file is not None or monitor.data_logger is None:
            return None
        handlers = list(monitor.data_logger.handlers)
        if not monitor.data_logger.isEnabledFor(logging.INFO) or not handlers:
            return None
        files = [handler for handler in handlers if isinstance(handler, logging.FileHandler)]
        formatter = handlers[0].formatter
        if len(files) != len(handlers) or any(handler.formatter is not formatter for handler in handlers):
            return None
        if type(formatter) is not JsonFormatter or formatter.json_serializer is not json.dumps:
            return None
        # BentoML renames a column that takes one of its own names, as its ``log`` does.
        columns = [*features, *others, PREDICTION, PROBABILITIES, ENDPOINT, MODEL_TAG]
        keys = [name + "_" if name in DefaultMonitor.PRESERVED_COLUMNS else name for name in columns]
        keys += DefaultMonitor.PRESERVED_COLUMNS
        if len(set(keys)) != len(keys):
            return None  # BentoML would pile a duplicated column's values up in one: left to it
        encoder = formatter.json_encoder(
            default=formatter.json_default, indent=formatter.json_indent, ensure_ascii=formatter.json_ensure_ascii
        )
        return cls(
            handlers=files,
            encode=encoder.encode,
            keys=keys,
            features=features,
            others=others,
            model_tag=model_tag,
            classes=classes,
        )

    def write(self, requests: Sequence[LoggedRequest], *, trace_id: str) -> None:
        """Append ``requests``' records to every file: one write and one flush each; raises what they raise."""
        lines = []
        for request in requests:
            answered_at = time.time() if request.answered_at is None else request.answered_at
            when = datetime.datetime.fromtimestamp(answered_at).isoformat()
            tail = (request.endpoint, self.model_tag, when, request.request_id, trace_id)
            if request.endpoint == "/predict_proba":
                outputs: list[tuple[Any, Any]] = [
                    (max(answer, key=answer.__getitem__), [answer[name] for name in self.classes])
                    for answer in request.outputs
                ]
            else:
                outputs = [(answer, None) for answer in request.outputs]
            for record, output in zip(request.records, outputs, strict=True):
                values = (*self.inputs(record), *(record.get(name) for name in self.others), *output, *tail)
                lines.append(self.encode(dict(zip(self.keys, values, strict=True))))
        text = "".join(line + "\n" for line in lines)
        for handler in self.handlers:
            handler.acquire()
            try:
                if isinstance(handler, RotatingFileHandler | TimedRotatingFileHandler) and handler.shouldRollover(
                    self.probe
                ):
                    handler.doRollover()
                if handler.stream is None:
                    handler.stream = handler._open()
                handler.stream.write(text)
                handler.flush()
            finally:
                handler.release()

    def inputs(self, record: Mapping[str, Any]) -> tuple[Any, ...]:
        """The record's model inputs, in the logged order (a missing one raises, as BentoML's path does)."""
        if self.features is not None:
            return self.features(record)  # type: ignore[no-any-return]
        return tuple(record[name] for name in self.feature_names)


def raise_write_errors(monitor: object) -> None:
    """Make a failed write of BentoML's default monitor raise, rather than print a traceback and go on.

    Its files are written by ``logging`` handlers, whose ``handleError`` prints the error to
    stderr and returns: a full disk would count every record as exported. The handlers are
    made here (its ``_init_logger``, which the first record would call) so that even the first
    failure raises, and :class:`PredictionLog` counts the records ``failed``. Other monitors
    (OTLP) are left as they are: their sending happens later, in OpenTelemetry's own thread.
    """
    if getattr(monitor, "data_logger", True) is None and callable(init := getattr(monitor, "_init_logger", None)):
        init()
    for name in ("data_logger", "schema_logger"):
        found = getattr(monitor, name, None)
        if isinstance(found, logging.Logger):
            for handler in found.handlers:
                handler.handleError = _raise_handled  # type: ignore[method-assign]


def _raise_handled(record: logging.LogRecord) -> None:
    """``logging.Handler.handleError`` that raises the error being handled (a handler calls it in ``except``)."""
    error = sys.exc_info()[1]
    if error is not None:
        raise error


def log_types(contract: Contract, columns: Sequence[str]) -> dict[str, str]:
    """Each of ``columns`` with the BentoML data type it is logged as: ``numerical`` for numbers and bools, else ``categorical``."""
    return {name: "numerical" if contract.columns[name].is_numeric else "categorical" for name in columns}


def register(registry: CollectorRegistry | None) -> Counter:
    """The log's record counter (``conveyor_prediction_log_records_total{outcome}``) in ``registry``."""
    return Counter(
        "conveyor_prediction_log_records_total",
        "Prediction records handed to the log, by outcome: exported, dropped (queue full), failed (exporter error)",
        ("outcome",),
        registry=registry,
    )
