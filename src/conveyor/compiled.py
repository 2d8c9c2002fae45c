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

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.pipeline import Pipeline

from conveyor import predict as sk
from conveyor.features import FeatureSpec, model_frame, spec_of

Inference = Literal["onnx", "sklearn"]


class Predictor(Protocol):
    """What the service predicts through: labels (or values) and class probabilities."""

    def predict(self, df: pd.DataFrame) -> NDArray[np.generic]:
        """Labels or values of shape (n_samples,)."""
        ...

    def predict_proba(self, df: pd.DataFrame) -> NDArray[np.float64]:
        """Probabilities of shape (n_samples, n_classes)."""
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

    def _run(self, df: pd.DataFrame) -> list[Any]:
        frame = model_frame(df, self.spec)
        feed = {name: frame[name].to_numpy(np.float32).reshape(-1, 1) for name in self.spec.numeric}
        feed |= {name: frame[name].to_numpy(object).reshape(-1, 1) for name in self.spec.categorical}
        return list(self.session.run(None, feed))

    def predict(self, df: pd.DataFrame) -> NDArray[np.generic]:
        """Labels or values of shape (n_samples,)."""
        return np.asarray(self._run(df)[0]).ravel()

    def predict_proba(self, df: pd.DataFrame) -> NDArray[np.float64]:
        """Probabilities of shape (n_samples, n_classes), columns in the pipeline's class order."""
        if "probabilities" not in self.outputs:
            raise TypeError("predict_proba needs a classifier; this model has no probabilities output")
        return np.asarray(self._run(df)[self.outputs.index("probabilities")], dtype=np.float64)


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
