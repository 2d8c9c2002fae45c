"""The service's logic in process: the bundle and its checks, and the engine over it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from helpers_model import labelled, regression
from helpers_service import make_bundle

from conveyor import io
from conveyor.model.onnx import OnnxPredictor, SklearnPredictor
from conveyor.config import Config
from conveyor.contract import Contract
from conveyor.model.predict import predict
from conveyor.serving.routes import CHECKSUMS_FILE, MODEL_FILE, ONNX_FILE, Bundle, BundleError, Engine


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, params: Config, contract: Contract) -> Bundle:
    """The default model (logistic regression, served through ONNX) as a bundle on disk."""
    data = io.read_source(str(Path(__file__).resolve().parents[2] / "data" / "penguins.csv"))
    return make_bundle(tmp_path_factory.mktemp("bundle"), params, contract, data)


def as_records(bundle: Bundle, df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of ``df`` validated as a request body would be (NaN sent as null)."""
    rows = df[list(bundle.columns)].astype(object).where(df.notna(), None).to_dict("records")
    records: list[dict[str, Any]] = bundle.request.validate_json(json.dumps({"records": rows}))["records"]
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
    assert meta["model_tag"] == "conveyor-model:test"
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
    fallback = Bundle(bundle.directory, info, bundle.contract)
    assert isinstance(Engine(fallback).predictor, SklearnPredictor)


def test_the_bundle_records_the_hash_of_every_file(bundle: Bundle) -> None:
    listed = {line.split("  ", 1)[1] for line in (bundle.directory / CHECKSUMS_FILE).read_text().splitlines()}
    assert listed == {path.name for path in bundle.directory.iterdir()} - {CHECKSUMS_FILE}


@pytest.mark.parametrize("name", [ONNX_FILE, MODEL_FILE, "conveyor.json", "contract.yaml"])
def test_a_corrupt_bundle_file_is_named_before_anything_is_loaded(bundle: Bundle, tmp_path: Path, name: str) -> None:
    """Every file is checked, whichever path serves: a corrupt ``model.skops`` is caught even
    behind a healthy ONNX model, and a corrupt ``conveyor.json`` before it is parsed."""
    copy = tmp_path / "bundle"
    copy.mkdir()
    for path in bundle.directory.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    target = copy / name
    target.write_bytes(np.random.default_rng(0).bytes(target.stat().st_size))
    with pytest.raises(BundleError, match=rf"{name}: corrupt") as caught:
        Bundle.load(copy)
    assert "\n" not in str(caught.value)


def test_a_missing_bundle_file_or_hash_list_is_named(bundle: Bundle, tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    copy.mkdir()
    for path in bundle.directory.iterdir():
        if path.name != ONNX_FILE:
            (copy / path.name).write_bytes(path.read_bytes())
    with pytest.raises(BundleError, match=rf"{ONNX_FILE}: missing"):
        Bundle.load(copy)
    (copy / CHECKSUMS_FILE).unlink()
    with pytest.raises(BundleError, match=rf"{CHECKSUMS_FILE}: missing"):
        Bundle.load(copy)
