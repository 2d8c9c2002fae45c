"""The prediction engine: validated records in, JSON-ready predictions out, batched when it pays.

:func:`predictor` picks the bundle's inference path (ONNX Runtime when the package stage verified
an ONNX model, else the scikit-learn pipeline); :class:`Engine` answers with it, and
:class:`Batcher` predicts the requests that wait while a slow model runs in one call.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from conveyor.bundle import Bundle
from conveyor.contract import contract_to_dict
from conveyor.serving.request import example_record

if TYPE_CHECKING:
    from conveyor.model.onnx import Predictor

__all__ = ["Batcher", "Engine", "Records", "predictor"]


def predictor(bundle: Bundle) -> Predictor:
    """ONNX Runtime when the bundle holds a verified ONNX model, else the scikit-learn pipeline.

    Imported here, not at the top: ``bentoml serve`` imports the service in its own process
    too, which never predicts, and scikit-learn's import is a second of its start-up.
    """
    from conveyor.model.onnx import OnnxPredictor, SklearnPredictor

    if bundle.info.inference.inference == "onnx":
        return OnnxPredictor(bundle.onnx(), bundle.spec, threads=bundle.serve.threads)
    return SklearnPredictor(bundle.model())


Records = Sequence[Mapping[str, Any]]


class Engine:
    """Validated records in, JSON-ready predictions out: the service's whole prediction logic."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.columns = bundle.columns
        self.predictor = predictor(bundle)
        self.classes = list(bundle.info.classes or [])

    def warm_up(self) -> None:
        """Run one prediction so the first request does not pay for lazy initialisation."""
        records = [example_record(self.bundle.contract, self.columns)]
        self.predict(records)
        if self.bundle.is_classifier:
            self.predict_proba(records)

    def predict(self, records: Records) -> list[Any]:
        """One label (classification; ``true``/``false`` for a bool target) or value (regression) per record."""
        values = self.predictor.predict_rows(records)
        if self.bundle.bool_labels:
            return [str(v) == "true" for v in values]
        if self.bundle.is_classifier:
            return [str(v) for v in values]
        return np.asarray(values, dtype=np.float64).tolist()  # type: ignore[no-any-return]

    def predict_proba(self, records: Records) -> list[dict[str, float]]:
        """For each record, the probability of each class."""
        proba = self.predictor.predict_proba_rows(records)
        return [dict(zip(self.classes, row, strict=True)) for row in proba.tolist()]

    def metadata(self) -> dict[str, Any]:
        """Where the served model came from, how well it did, and what it accepts.

        With ``serve.metadata: minimal``, only what a client needs (the model's tag, task, classes
        and the request limits): no contract, git revision, library versions or metrics. A model
        fed from a feature store adds ``online_features``: the feature service, entity keys and
        the features fetched.
        """
        info = self.bundle.info
        limits = {
            "max_records": self.bundle.serve.max_records,
            "max_body_bytes": self.bundle.serve.max_body_bytes,
            "max_concurrency": self.bundle.serve.max_concurrency,
        }
        if self.bundle.serve.metadata == "minimal":
            return {**info.model_dump(mode="json", include={"model_tag", "task", "classes"}), "limits": limits}
        online = (
            {"online_features": info.online_features.model_dump(mode="json", exclude={"server_url"})}
            if info.online_features is not None
            else {}
        )
        return {
            **info.model_dump(mode="json", include={"model_tag", "git_revision"}),
            **info.provenance.model_dump(mode="json", include={"data_hash", "params_hash"}),
            **info.model_dump(mode="json", include={"task", "target", "estimator", "classes"}),
            "features": list(self.columns),
            "metrics": info.metrics,
            "inference": info.inference.model_dump(mode="json"),
            "libraries": info.provenance.libraries,
            "limits": limits,
            "prediction_log": info.prediction_log.model_dump(mode="json"),
            "contract": contract_to_dict(self.bundle.contract),
            **online,
        }


class Batcher:
    """Predictions of a slow model in a worker thread, batched only when requests are waiting.

    A request that finds the model idle is predicted alone, at once; requests that arrive while
    a call runs (the event loop keeps reading and validating them meanwhile) are predicted
    together in the next call, up to ``max_batch_size`` records, and each gets its share of the
    answer. Nothing is held back to fill a batch, so batching adds no latency of its own; it
    pays where a call costs milliseconds however few its rows (scikit-learn's pipeline), not
    for ONNX Runtime's 0.1 ms, where the thread hop alone would cost more.
    """

    def __init__(self, engine: Engine, *, max_batch_size: int) -> None:
        self.engine = engine
        self.max_batch_size = max_batch_size
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
        """The oldest waiting requests of the same kind, within ``max_batch_size`` records (at least one)."""
        proba, records, answer = self.waiting.popleft()
        batch, size = [(proba, records, answer)], len(records)
        while self.waiting and self.waiting[0][0] == proba and size + len(self.waiting[0][1]) <= self.max_batch_size:
            batch.append(self.waiting.popleft())
            size += len(batch[-1][1])
        return batch
