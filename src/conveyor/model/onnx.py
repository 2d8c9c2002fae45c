"""The compiled inference path: the fitted pipeline as ONNX, run by ONNX Runtime, used only if it agrees.

:func:`compile_pipeline` converts a fitted Conveyor pipeline with skl2onnx and runs both it and
the scikit-learn pipeline on the whole test split. The ONNX model is used only when every label
is equal and every probability is within ``tolerance`` (classification), or every value is within
``tolerance`` relative to its size (regression). Otherwise, or when conversion or the check
fails in any way (skl2onnx 1.20 cannot convert ``HistGradientBoosting*`` models with numpy 2),
the service falls back to scikit-learn and the report says why: ONNX is an optimisation, and it
never stops the line.

Both predictors take the same input as :mod:`conveyor.model.predict` and call
:func:`conveyor.model.features.model_frame` first, so ONNX sees exactly the columns and canonical
dtypes scikit-learn sees. Missing categories are already the string ``MISSING_CATEGORY`` there,
which is what makes string tensors possible. The ONNX inputs are not named after the columns
(skl2onnx would rename ``mean radius`` to ``mean_radius`` behind our back) but by
:func:`onnx_input_names`, which the feed uses too, so any column name works on this path.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.compose import TransformedTargetRegressor
from sklearn.pipeline import Pipeline

from conveyor.artifacts import InferenceChoice
from conveyor.model import predict as sk
from conveyor.model.features import MISSING_CATEGORY, NO_ONNX_KINDS, FeatureSpec, model_frame, rows_frame, spec_of
from conveyor.model.registry import entry_of

__all__ = [
    "ConversionError",
    "OnnxPredictor",
    "Predictor",
    "SklearnPredictor",
    "compile_pipeline",
    "onnx_input_names",
    "parity",
    "register_converter",
    "to_onnx",
]

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
        """Labels or values of shape (n_samples,), through :func:`conveyor.model.predict.predict`."""
        return sk.predict(self.model, df)

    def predict_proba(self, df: pd.DataFrame) -> NDArray[np.float64]:
        """Probabilities of shape (n_samples, n_classes), through :func:`conveyor.model.predict.predict_proba`."""
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
        self.numbers = frozenset(spec.columns_of("number"))
        self.inputs = onnx_input_names(spec.columns)
        self.session = ort.InferenceSession(onnx, sess_options=options, providers=["CPUExecutionProvider"])
        self.outputs = [output.name for output in self.session.get_outputs()]
        expected, found = sorted(self.inputs.values()), sorted(i.name for i in self.session.get_inputs())
        if found != expected:
            raise ConversionError(f"the ONNX model's inputs {found} are not the expected {expected}")

    def feed(self, df: pd.DataFrame) -> Feed:
        """The input tensors for ``df``, after :func:`conveyor.model.features.model_frame`, keyed by ONNX input name."""
        frame = model_frame(df, self.spec)
        return {
            self.inputs[name]: frame[name].to_numpy(np.float32 if name in self.numbers else object).reshape(-1, 1)
            for name in self.spec.columns
        }

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
            for name in self.numbers
        }
        for name in self.spec.columns:
            if name not in self.numbers:
                # Text holds "" for null (model_frame's canonical value), categories MISSING_CATEGORY.
                empty = "" if self.spec.kind_of(name) == "text" else MISSING_CATEGORY
                feed[self.inputs[name]] = np.array(
                    [empty if row[name] is None else str(row[name]) for row in rows], dtype=object
                ).reshape(-1, 1)
        return feed

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


def onnx_input_names(columns: Sequence[str]) -> dict[str, str]:
    """The ONNX input name of each column: ``x<position>_`` and the name with anything but ASCII
    letters, digits and ``_`` replaced by ``_`` (``mean radius`` -> ``x0_mean_radius``).

    skl2onnx renames inputs that are not C identifiers, and ONNX Runtime then refuses a feed keyed
    by the column names. These names are identifiers already, so skl2onnx keeps them; the position
    makes them unique (``a b`` and ``a_b``) and keeps them clear of the outputs (``label``).
    """
    return {column: f"x{index}_" + re.sub(r"[^A-Za-z0-9_]", "_", column) for index, column in enumerate(columns)}


def _selecting_inputs(model: Pipeline, names: Mapping[str, str]) -> Pipeline:
    # skl2onnx matches the ColumnTransformer's column names with the input names, so a copy of
    # the pipeline selects by the ONNX names; the fitted transformers are unchanged.
    renamed = copy.deepcopy(model)
    features = renamed.named_steps["features"]
    features.transformers_ = [
        (name, transformer, columns if name == "remainder" else _renamed(columns, names))
        for name, transformer, columns in features.transformers_
    ]
    return renamed


def _renamed(columns: str | Sequence[str], names: Mapping[str, str]) -> str | list[str]:
    return names[columns] if isinstance(columns, str) else [names[c] for c in columns]


def to_onnx(model: Pipeline) -> bytes:
    """The fitted pipeline as a serialized ONNX model: one input tensor per feature column.

    Inputs are named by :func:`onnx_input_names`. Numeric columns are float32 tensors,
    categorical columns string tensors, each of shape (n_samples, 1); a classifier outputs
    ``label`` and ``probabilities`` (no ZipMap).
    """
    from skl2onnx import to_onnx as convert
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    spec = spec_of(model)
    names = onnx_input_names(spec.columns)
    numbers = set(spec.columns_of("number"))
    inputs = [
        (names[column], FloatTensorType([None, 1]) if column in numbers else StringTensorType([None, 1]))
        for column in spec.columns
    ]
    features = model.named_steps["features"]
    for name, _, _ in features.transformers:
        kind = name.rpartition("_")[0]
        if kind in NO_ONNX_KINDS:
            raise ConversionError(f"the derived feature {name} ({kind}, features.derived) has no ONNX converter")
    renamed = _selecting_inputs(model, names)
    estimator = renamed.named_steps["estimator"]
    if isinstance(estimator, TransformedTargetRegressor):
        raise ConversionError("TransformedTargetRegressor (model.target_transform: log) has no ONNX converter")
    options = {id(estimator): {"zipmap": False}} if hasattr(estimator, "predict_proba") else None
    register_feature_converters()
    target_opset = register_converter(estimator)
    try:
        onnx = convert(renamed, initial_types=inputs, options=options, target_opset=target_opset)
        return bytes(onnx.SerializeToString())
    except Exception as exc:  # skl2onnx raises anything from RuntimeError to ValueError to KeyError
        raise ConversionError(f"skl2onnx could not convert {type(estimator).__name__}: {type(exc).__name__}") from exc


# --- lightgbm and xgboost: onnxmltools' converters, registered with skl2onnx -------------------
# skl2onnx knows scikit-learn's estimators only. onnxmltools converts the gradient-boosting
# libraries' scikit-learn classes; registered here (the registry entry's ``converter`` says which),
# they convert inside the whole pipeline and go through the same parity check and fallback. Their
# tree operators exist up to version 3 of the ai.onnx.ml domain, which the conversion must then target.
BOOSTING_ML_OPSET = 3


def register_converter(estimator: object) -> dict[str, int] | None:
    """Register the converter the registry names for the fitted ``estimator``; return the opsets to target.

    None (skl2onnx's defaults) for an estimator skl2onnx converts itself; :class:`ConversionError`
    for one the registry gives no converter.
    """
    entry = entry_of(estimator)
    if entry.converter == "none":
        raise ConversionError(f"{type(estimator).__name__} has no ONNX converter")
    if entry.converter == "skl2onnx":
        return None
    from skl2onnx import get_latest_tested_opset_version, update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    if entry.converter == "onnxmltools.lightgbm":
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm as convert
    else:
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost as convert
    cls = type(estimator)
    if hasattr(estimator, "predict_proba"):
        options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
        update_registered_converter(
            cls, f"Conveyor{cls.__name__}", calculate_linear_classifier_output_shapes, convert, options=options
        )
    else:
        update_registered_converter(cls, f"Conveyor{cls.__name__}", calculate_linear_regressor_output_shapes, convert)
    return {"": get_latest_tested_opset_version(), "ai.onnx.ml": BOOSTING_ML_OPSET}


# --- Conveyor's own transformers: converters written here, a few ONNX operators each -----------


def register_feature_converters() -> None:
    """Register ONNX converters for :class:`~conveyor.model.transformers.TwoColumns` (ratio,
    difference), :class:`~conveyor.model.transformers.SignedLog` (log) and scikit-learn's
    ``MissingIndicator`` (which skl2onnx lacks), so pipelines with them keep the fast path.

    Each computes in float32 what the transformer computes in float64; the parity check on the
    test split decides, as for every model.
    """
    from skl2onnx import update_registered_converter
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.impute import MissingIndicator

    from conveyor.model.transformers import SignedLog, TwoColumns

    def shape(width: Any) -> Any:
        def calculate(operator: Any) -> None:
            rows = operator.inputs[0].get_first_dimension()
            operator.outputs[0].type = FloatTensorType([rows, width(operator.raw_operator)])

        return calculate

    update_registered_converter(TwoColumns, "ConveyorTwoColumns", shape(lambda _: 1), _convert_two_columns)
    update_registered_converter(
        SignedLog, "ConveyorSignedLog", shape(lambda op: op.n_features_in_), _convert_signed_log
    )
    update_registered_converter(
        MissingIndicator, "ConveyorMissingIndicator", shape(lambda op: len(op.features_)), _convert_missing_indicator
    )


def _convert_two_columns(scope: Any, operator: Any, container: Any) -> None:
    from skl2onnx.algebra.onnx_ops import OnnxDiv, OnnxEqual, OnnxGather, OnnxSub, OnnxWhere

    version, x = container.target_opset, operator.inputs[0]
    a = OnnxGather(x, np.array([0], dtype=np.int64), axis=1, op_version=version)
    b = OnnxGather(x, np.array([1], dtype=np.int64), axis=1, op_version=version)
    names = operator.outputs[:1]
    if operator.raw_operator.operation == "difference":
        node = OnnxSub(a, b, op_version=version, output_names=names)
    else:
        zero = OnnxEqual(b, np.array([0], dtype=np.float32), op_version=version)
        node = OnnxWhere(
            zero,
            np.array([np.nan], dtype=np.float32),
            OnnxDiv(a, b, op_version=version),
            op_version=version,
            output_names=names,
        )
    node.add_to(scope, container)


def _convert_signed_log(scope: Any, operator: Any, container: Any) -> None:
    from skl2onnx.algebra.onnx_ops import OnnxAbs, OnnxAdd, OnnxLog, OnnxMul, OnnxSign

    version, x = container.target_opset, operator.inputs[0]
    log = OnnxLog(
        OnnxAdd(OnnxAbs(x, op_version=version), np.array([1], dtype=np.float32), op_version=version), op_version=version
    )
    OnnxMul(OnnxSign(x, op_version=version), log, op_version=version, output_names=operator.outputs[:1]).add_to(
        scope, container
    )


def _convert_missing_indicator(scope: Any, operator: Any, container: Any) -> None:
    from onnx import TensorProto
    from skl2onnx.algebra.onnx_ops import OnnxCast, OnnxGather, OnnxIsNaN

    version, x = container.target_opset, operator.inputs[0]
    columns = OnnxGather(x, np.asarray(operator.raw_operator.features_, dtype=np.int64), axis=1, op_version=version)
    OnnxCast(
        OnnxIsNaN(columns, op_version=version),
        to=TensorProto.FLOAT,
        op_version=version,
        output_names=operator.outputs[:1],
    ).add_to(scope, container)


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
    model: Pipeline,
    test: pd.DataFrame,
    *,
    task: str,
    tolerance: float,
    enabled: bool = True,
    test_rows: int | None = None,
) -> tuple[bytes | None, InferenceChoice]:
    """Convert and verify on ``test``; return the ONNX bytes (None when not used) and which path serves, and why.

    ``test_rows`` is the size of the test split when ``test`` is a sample of it.
    """

    def sklearn(reason: str, result: dict[str, Any] | None = None) -> tuple[None, InferenceChoice]:
        return None, InferenceChoice(inference="sklearn", reason=reason, tolerance=tolerance, parity=result)

    if not enabled:
        return sklearn("serve.inference is sklearn in params.yaml")
    try:
        onnx = to_onnx(model)
        result = parity(model, OnnxPredictor(onnx, spec_of(model)), test, task=task, tolerance=tolerance)
    except ConversionError as exc:
        return sklearn(f"{exc}; serving with scikit-learn")
    except Exception as exc:  # ONNX is an optimisation: whatever fails in it falls back, and says why
        problem = f"{type(exc).__name__}: {(str(exc).strip() or 'no message').splitlines()[0]}"
        return sklearn(
            f"the ONNX model could not be checked against scikit-learn ({problem}); serving with scikit-learn"
        )
    if not result["passed"]:
        return sklearn(
            f"ONNX predictions differ from scikit-learn on the test split beyond tolerance {tolerance}; serving with scikit-learn",
            result,
        )
    total = len(test) if test_rows is None else test_rows
    reason = (
        f"ONNX matches scikit-learn on all {total} test rows"
        if len(test) == total
        else f"ONNX matches scikit-learn on a seeded sample of {len(test)} of the {total} test rows"
    )
    return onnx, InferenceChoice(inference="onnx", reason=reason, tolerance=tolerance, parity=result)
