"""Conveyor's own Prometheus series: predictions by class or value bucket, refusals by field."""

from __future__ import annotations

import bisect
from collections import Counter as Tally
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter

from conveyor.bundle import Bundle
from conveyor.serving.prediction_log import register as register_log_counter

__all__ = ["ServiceMetrics", "refused_field"]

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
        self.columns = frozenset((*bundle.columns, *bundle.other_columns))
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
