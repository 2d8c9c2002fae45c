"""The compiled inference path: the fitted pipeline as ONNX, run by ONNX Runtime, used only if it agrees.

:func:`compile_pipeline` converts a fitted Conveyor pipeline with skl2onnx and runs both it and
the scikit-learn pipeline on the whole test split. The ONNX model is used only when every label
is equal and every probability is within ``tolerance`` (classification), or every value is within
``tolerance`` relative to its size (regression). Otherwise, or when conversion fails (skl2onnx
1.20 cannot convert ``HistGradientBoosting*`` models with numpy 2), the service falls back to
scikit-learn and the parity report says why.

Both predictors take the same input as :mod:`conveyor.predict` and call
:func:`conveyor.features.model_frame` first, so ONNX sees exactly the columns and canonical
dtypes scikit-learn sees. Missing categories are already the string ``MISSING_CATEGORY`` there,
which is what makes string tensors possible.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.pipeline import Pipeline

from conveyor import predict as sk
from conveyor.features import MISSING_CATEGORY, FeatureSpec, model_frame, spec_of
from conveyor.request import rows_frame

Inference = Literal["onnx", "sklearn"]
Feed = dict[str, NDArray[Any]]


Rows = Sequence[Mapping[str, Any]]


class Predictor(Protocol):
    """What the service predicts through: labels (or values) and class probabilities.

    ``*_rows`` take records the request model has already validated, as dicts with ``None``
    for null: the service's input, which needs no DataFrame on the ONNX path.
    """

    def predict(self, df: pd.DataFrame) -> NDArray[np.generic]:
        """Labels or values of shape (n_samples,)."""
        ...

    def predict_proba(self, df: pd.DataFrame) -> NDArray[np.float64]:
        """Probabilities of shape (n_samples, n_classes)."""
        ...

    def predict_rows(self, rows: Rows) -> NDArray[np.generic]:
        """:meth:`predict` for validated records."""
        ...

    def predict_proba_rows(self, rows: Rows) -> NDArray[np.float64]:
        """:meth:`predict_proba` for validated records."""
        ...


@dataclass(frozen=True)
class SklearnPredictor:
    """The scikit-learn pipeline behind the :class:`Predictor` interface."""

    model: Pipeline

    def predict(self, df: pd.DataFrame) -> NDArray[np.generic]:
        """Labels or values of shape (n_samples,), through :func:`conveyor.predict.predict`."""
        return sk.predict(self.model, df)

    def predict_proba(self, df: pd.DataFrame) -> NDArray[np.float64]:
        """Probabilities of shape (n_samples, n_classes), through :func:`conveyor.predict.predict_proba`."""
        return sk.predict_proba(self.model, df)

    def predict_rows(self, rows: Rows) -> NDArray[np.generic]:
        """:meth:`predict` on the records as a DataFrame."""
        return self.predict(rows_frame(rows, spec_of(self.model).columns))

    def predict_proba_rows(self, rows: Rows) -> NDArray[np.float64]:
        """:meth:`predict_proba` on the records as a DataFrame."""
        return self.predict_proba(rows_frame(rows, spec_of(self.model).columns))


class OnnxPredictor:
    """An ONNX Runtime session over a converted Conveyor pipeline.

    ``threads`` sets the intra-op thread pool; one thread per worker is the default because the
    per-row work is tiny and extra threads only contend with other workers for the cores.
    """

    def __init__(self, onnx: bytes, spec: FeatureSpec, *, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.spec = spec
        self.session = ort.InferenceSession(onnx, sess_options=options, providers=["CPUExecutionProvider"])
        self.outputs = [output.name for output in self.session.get_outputs()]
        # skl2onnx renames inputs that are not identifiers ("bill length (mm)" -> "bill_length__mm_");
        # they keep the order of the columns they were converted from (numeric, then categorical).
        self.inputs = dict(zip(spec.columns, (i.name for i in self.session.get_inputs()), strict=True))

    def feed(self, df: pd.DataFrame) -> Feed:
        """The input tensors for ``df``, after :func:`conveyor.features.model_frame`."""
        frame = model_frame(df, self.spec)
        feed = {self.inputs[name]: frame[name].to_numpy(np.float32).reshape(-1, 1) for name in self.spec.numeric}
        return feed | {self.inputs[name]: frame[name].to_numpy(object).reshape(-1, 1) for name in self.spec.categorical}

    def feed_rows(self, rows: Rows) -> Feed:
        """The input tensors for validated records, without pandas.

        The same canonical values ``model_frame`` gives (numbers as floats with NaN for null,
        categories as strings with ``MISSING_CATEGORY`` for null); the record model has already
        checked the types, and a test holds the two feeds equal on the whole data set. A pandas
        round trip costs about 10 ms per call here, the ONNX model 0.1 ms.
        """
        feed = {
            self.inputs[name]: np.array(
                [np.nan if row[name] is None else row[name] for row in rows], dtype=np.float32
            ).reshape(-1, 1)
            for name in self.spec.numeric
        }
        return feed | {
            self.inputs[name]: np.array(
                [MISSING_CATEGORY if row[name] is None else str(row[name]) for row in rows], dtype=object
            ).reshape(-1, 1)
            for name in self.spec.categorical
        }

    def _labels(self, feed: Feed) -> NDArray[np.generic]:
        return np.asarray(self.session.run([self.outputs[0]], feed)[0]).ravel()

    def _proba(self, feed: Feed) -> NDArray[np.float64]:
        if "probabilities" not in self.outputs:
            raise TypeError("predict_proba needs a classifier; this model has no probabilities output")
        return np.asarray(self.session.run(["probabilities"], feed)[0], dtype=np.float64)

    def predict(self, df: pd.DataFrame) -> NDArray[np.generic]:
        """Labels or values of shape (n_samples,)."""
        return self._labels(self.feed(df))

    def predict_proba(self, df: pd.DataFrame) -> NDArray[np.float64]:
        """Probabilities of shape (n_samples, n_classes), columns in the pipeline's class order."""
        return self._proba(self.feed(df))

    def predict_rows(self, rows: Rows) -> NDArray[np.generic]:
        """:meth:`predict` for validated records."""
        return self._labels(self.feed_rows(rows))

    def predict_proba_rows(self, rows: Rows) -> NDArray[np.float64]:
        """:meth:`predict_proba` for validated records."""
        return self._proba(self.feed_rows(rows))


class ConversionError(RuntimeError):
    """The pipeline could not be converted to ONNX; the message says by what."""


def to_onnx(model: Pipeline) -> bytes:
    """The fitted pipeline as a serialized ONNX model: one input tensor per feature column.

    Numeric columns are float32 tensors, categorical columns string tensors, each of shape
    (n_samples, 1); a classifier outputs ``label`` and ``probabilities`` (no ZipMap).
    """
    from skl2onnx import to_onnx as convert
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    spec = spec_of(model)
    inputs = [(name, FloatTensorType([None, 1])) for name in spec.numeric]
    inputs += [(name, StringTensorType([None, 1])) for name in spec.categorical]
    estimator = model.named_steps["estimator"]
    options = {id(estimator): {"zipmap": False}} if hasattr(estimator, "predict_proba") else None
    try:
        return bytes(convert(model, initial_types=inputs, options=options).SerializeToString())
    except Exception as exc:  # skl2onnx raises anything from RuntimeError to ValueError to KeyError
        raise ConversionError(f"skl2onnx could not convert {type(estimator).__name__}: {type(exc).__name__}") from exc


def parity(model: Pipeline, compiled: Predictor, test: pd.DataFrame, *, task: str, tolerance: float) -> dict[str, Any]:
    """Compare the compiled predictor with the pipeline on every row of ``test``.

    Classification passes when all labels are equal and the largest absolute probability
    difference is at most ``tolerance``; regression when every ``|onnx - sklearn|`` is at most
    ``tolerance * max(1, |sklearn|)``.
    """
    reference = SklearnPredictor(model)
    if task == "classification":
        labels_equal = bool(np.array_equal(compiled.predict(test).astype(str), reference.predict(test).astype(str)))
        difference = float(np.max(np.abs(compiled.predict_proba(test) - reference.predict_proba(test))))
        passed = labels_equal and difference <= tolerance
        return {"rows": len(test), "labels_equal": labels_equal, "max_abs_difference": difference, "passed": passed}
    expected = reference.predict(test).astype(np.float64)
    got = compiled.predict(test).astype(np.float64)
    relative = np.abs(got - expected) / np.maximum(1.0, np.abs(expected))
    difference = float(np.max(relative))
    return {"rows": len(test), "max_relative_difference": difference, "passed": difference <= tolerance}


def compile_pipeline(
    model: Pipeline, test: pd.DataFrame, *, task: str, tolerance: float, enabled: bool = True
) -> tuple[bytes | None, dict[str, Any]]:
    """Convert and verify; return the ONNX bytes (None when not used) and a report saying which path serves.

    The report is ``{"inference": "onnx" | "sklearn", "reason": str, "tolerance": float, "parity": {...} | None}``.
    """
    report: dict[str, Any] = {"tolerance": tolerance, "parity": None}
    if not enabled:
        return None, report | {"inference": "sklearn", "reason": "serve.inference is sklearn in params.yaml"}
    try:
        onnx = to_onnx(model)
    except ConversionError as exc:
        return None, report | {"inference": "sklearn", "reason": f"{exc}; serving with scikit-learn"}
    result = parity(model, OnnxPredictor(onnx, spec_of(model)), test, task=task, tolerance=tolerance)
    report["parity"] = result
    if not result["passed"]:
        return None, report | {
            "inference": "sklearn",
            "reason": f"ONNX predictions differ from scikit-learn on the test split beyond tolerance {tolerance}; serving with scikit-learn",
        }
    return onnx, report | {"inference": "onnx", "reason": f"ONNX matches scikit-learn on all {len(test)} test rows"}
