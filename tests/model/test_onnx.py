"""The ONNX path: used only when it agrees with scikit-learn on every test row, else a stated fallback."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from conveyor.config import Config
from conveyor.contract import Contract, infer_contract
from conveyor.model.features import FeatureSpec, spec_of
from conveyor.model.onnx import ConversionError, OnnxPredictor, compile_pipeline, onnx_input_names, parity, to_onnx
from conveyor.model.predict import predict
from conveyor.stages.train import train
from tests.conftest import configured, labelled, regression

TOLERANCE = 1e-4


def fitted(cfg: Config, contract: Contract, data: pd.DataFrame) -> tuple[Pipeline, pd.DataFrame]:
    """A pipeline trained on the even rows, and the odd rows as its test split."""
    data = labelled(data, cfg)
    return train(data.iloc[::2], cfg, contract), data.iloc[1::2].reset_index(drop=True)


@pytest.mark.parametrize(
    "features", [{}, {"encoding": "ordinal", "scaling": "minmax", "categorical_imputation": "most_frequent"}]
)
def test_logistic_regression_matches_on_every_row_and_is_served_with_onnx(
    params: Config, contract: Contract, penguins: pd.DataFrame, features: dict[str, str]
) -> None:
    cfg = configured(params, features=features)
    pipeline, test = fitted(cfg, contract, penguins)
    onnx, report = compile_pipeline(pipeline, test, task="classification", tolerance=TOLERANCE)
    assert onnx is not None
    assert report.inference == "onnx"
    assert report.parity is not None
    assert report.parity == report.parity | {"rows": len(test), "labels_equal": True, "passed": True}
    assert report.parity["max_abs_difference"] <= TOLERANCE


def test_rows_with_missing_values_and_unseen_categories_agree(
    params: Config, contract: Contract, penguins: pd.DataFrame
) -> None:
    pipeline, test = fitted(params, contract, penguins)
    awkward = test.head(4).copy()
    awkward.loc[0, ["bill_length_mm", "body_mass_g"]] = np.nan
    awkward.loc[1, "sex"] = None
    awkward.loc[2, "island"] = "Atlantis"
    result = parity(
        pipeline,
        OnnxPredictor(to_onnx(pipeline), spec_of(pipeline)),
        awkward,
        task="classification",
        tolerance=TOLERANCE,
    )
    assert result["passed"], result


def test_regression_matches_within_relative_tolerance(
    params: Config, contract: Contract, penguins: pd.DataFrame
) -> None:
    cfg = regression(params)
    pipeline, test = fitted(cfg, contract, penguins)
    onnx, report = compile_pipeline(pipeline, test, task="regression", tolerance=TOLERANCE)
    assert report.inference == "onnx", report
    assert onnx is not None
    predicted = OnnxPredictor(onnx, spec_of(pipeline)).predict(test)
    assert predicted.shape == (len(test),)


def test_hist_gradient_boosting_falls_back_to_scikit_learn_and_says_why(
    params: Config, contract: Contract, penguins: pd.DataFrame
) -> None:
    cfg = configured(params, model={"estimator": "hist_gradient_boosting", "params": {"max_iter": 20}})
    pipeline, test = fitted(cfg, contract, penguins)
    with pytest.raises(ConversionError, match="HistGradientBoostingClassifier"):
        to_onnx(pipeline)
    onnx, report = compile_pipeline(pipeline, test, task="classification", tolerance=TOLERANCE)
    assert onnx is None
    assert report.inference == "sklearn"
    assert "HistGradientBoostingClassifier" in report.reason
    assert report.parity is None


def test_a_model_that_disagrees_beyond_tolerance_is_not_used(
    params: Config, contract: Contract, penguins: pd.DataFrame
) -> None:
    # A random forest's float32 thresholds move a few probabilities by around 1e-2 on this data.
    cfg = configured(params, model={"estimator": "random_forest", "params": {"n_estimators": 30, "random_state": 0}})
    pipeline, test = fitted(cfg, contract, penguins)
    strict, report = compile_pipeline(pipeline, test, task="classification", tolerance=1e-9)
    assert strict is None
    assert report.inference == "sklearn"
    assert report.parity is not None
    assert report.parity["passed"] is False
    assert "beyond tolerance" in report.reason


def test_sklearn_only_skips_conversion(params: Config, contract: Contract, penguins: pd.DataFrame) -> None:
    pipeline, test = fitted(params, contract, penguins)
    onnx, report = compile_pipeline(pipeline, test, task="classification", tolerance=TOLERANCE, enabled=False)
    assert (onnx, report.inference, report.parity) == (None, "sklearn", None)


def test_the_records_feed_is_the_model_frame_feed(params: Config, contract: Contract, penguins: pd.DataFrame) -> None:
    pipeline, _ = fitted(params, contract, penguins)
    predictor = OnnxPredictor(to_onnx(pipeline), spec_of(pipeline))
    data = penguins.copy()
    data.loc[::7, "sex"] = None
    data.loc[::5, "bill_length_mm"] = np.nan
    rows = [
        {str(k): v for k, v in row.items()} for row in data.astype(object).where(data.notna(), None).to_dict("records")
    ]
    from_frame, from_rows = predictor.feed(data), predictor.feed_rows(rows)
    assert from_frame.keys() == from_rows.keys()
    for name, tensor in from_frame.items():
        assert tensor.dtype == from_rows[name].dtype, name
        assert np.array_equal(tensor, from_rows[name], equal_nan=tensor.dtype != object), name
    assert np.array_equal(predictor.predict_rows(rows), predictor.predict(data))


# Every kind of name skl2onnx would rename, two that collide once sanitized, and the output's name.
AWKWARD_NAMES = {
    "bill_length_mm": "bill length (mm)",
    "bill_depth_mm": "bill.depth-mm",
    "flipper_length_mm": "1st flipper",
    "body_mass_g": "masse_corporelle_é",
    "island": "île de départ",
    "sex": "label",
    "year": "bill_length__mm_",
}


def test_onnx_input_names_are_unique_identifiers_whatever_the_column_names() -> None:
    names = onnx_input_names([*AWKWARD_NAMES.values(), "a b", "a_b"])
    assert len(set(names.values())) == len(names)
    assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) for name in names.values()), names
    assert names["bill length (mm)"] == "x0_bill_length__mm_"


def test_columns_with_spaces_dots_dashes_unicode_and_leading_digits_are_served_with_onnx(
    params: Config, penguins: pd.DataFrame
) -> None:
    data = penguins.rename(columns=AWKWARD_NAMES)
    contract = infer_contract(data, target="species")
    cfg = configured(params, features={"drop": []})
    pipeline, test = fitted(cfg, contract, data)
    onnx, report = compile_pipeline(pipeline, test, task="classification", tolerance=TOLERANCE)
    assert report.inference == "onnx", report
    assert onnx is not None
    predictor = OnnxPredictor(onnx, spec_of(pipeline))
    rows = [
        {str(k): v for k, v in row.items()} for row in test.astype(object).where(test.notna(), None).to_dict("records")
    ]
    assert np.array_equal(predictor.predict_rows(rows), predict(pipeline, test))


def test_any_failure_while_checking_the_onnx_model_falls_back_with_the_reason(
    params: Config, contract: Contract, penguins: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, test = fitted(params, contract, penguins)

    def broken(*args: object, **kwargs: object) -> dict[str, object]:
        raise RuntimeError("Required inputs (['mean_radius']) are missing from input feed (['mean radius']).\nmore")

    monkeypatch.setattr("conveyor.model.onnx.parity", broken)
    onnx, report = compile_pipeline(pipeline, test, task="classification", tolerance=TOLERANCE)
    assert (onnx, report.inference, report.parity) == (None, "sklearn", None)
    assert "RuntimeError: Required inputs (['mean_radius']) are missing" in report.reason
    assert "more" not in report.reason


def test_an_onnx_model_whose_inputs_are_not_the_expected_names_is_refused(
    params: Config, contract: Contract, penguins: pd.DataFrame
) -> None:
    pipeline, _ = fitted(params, contract, penguins)
    other = FeatureSpec(numeric=tuple(f"{c} renamed" for c in spec_of(pipeline).numeric), categorical=())
    with pytest.raises(ConversionError, match="not the expected"):
        OnnxPredictor(to_onnx(pipeline), other)
