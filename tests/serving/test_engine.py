"""The engine in process: predictions and metadata over a packaged bundle, on either inference path."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from conveyor import io
from conveyor.bundle import MODEL_FILE, Bundle
from conveyor.config import Config
from conveyor.contract import Contract
from conveyor.model.onnx import OnnxPredictor, SklearnPredictor
from conveyor.model.predict import predict
from conveyor.serving.engine import Engine
from conveyor.serving.request import request_type
from tests.conftest import labelled, make_bundle, regression


def as_records(bundle: Bundle, df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of ``df`` validated as a request body would be (NaN sent as null)."""
    rows = df[list(bundle.columns)].astype(object).where(df.notna(), None).to_dict("records")
    records: list[dict[str, Any]] = request_type(bundle.contract, bundle.columns, max_records=len(rows)).validate_json(
        json.dumps({"records": rows})
    )["records"]
    return records


def test_the_engine_predicts_what_the_pipeline_predicts(bundle: Bundle, penguins: pd.DataFrame) -> None:
    engine = Engine(bundle)
    assert isinstance(engine.predictor, OnnxPredictor)
    engine.warm_up()
    rows = penguins.head(60)
    expected = predict(io.load_model(bundle.directory / MODEL_FILE), rows)
    assert engine.predict(as_records(bundle, rows)) == [str(label) for label in expected]
    proba = engine.predict_proba(as_records(bundle, rows))
    assert all(set(p) == {"Adelie", "Chinstrap", "Gentoo"} for p in proba)
    assert np.allclose([sum(p.values()) for p in proba], 1.0, atol=1e-5)


def test_metadata_traces_the_model_and_carries_the_contract(bundle: Bundle, contract: Contract) -> None:
    meta = Engine(bundle).metadata()
    assert meta["model_tag"] == bundle.info.model_tag
    assert meta["model_tag"].startswith("conveyor-model:")
    assert meta["features"] == list(bundle.columns)
    assert meta["inference"]["inference"] == "onnx"
    assert Contract.model_validate(meta["contract"]) == contract
    assert {"git_revision", "data_hash", "params_hash", "metrics", "libraries", "limits"} <= set(meta)
    json.dumps(meta)  # the endpoint must be able to serialise it


def test_a_regression_bundle_predicts_floats(
    tmp_path: Path, params: Config, contract: Contract, penguins: pd.DataFrame
) -> None:
    cfg = regression(params)
    data = labelled(penguins, cfg)
    bundle = make_bundle(tmp_path, cfg, contract, data)
    values = Engine(bundle).predict(as_records(bundle, data.head(3)))
    assert all(isinstance(v, float) and 2000 < v < 7000 for v in values)


def test_sklearn_is_loaded_when_onnx_was_not_verified(bundle: Bundle, tmp_path: Path) -> None:
    info = bundle.info.model_copy(
        update={"inference": bundle.info.inference.model_copy(update={"inference": "sklearn"})}
    )
    fallback = dataclasses.replace(bundle, info=info)
    assert isinstance(Engine(fallback).predictor, SklearnPredictor)
