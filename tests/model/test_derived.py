"""``features.derived``: declared in params.yaml, checked on load, fitted inside the one Pipeline.

Per kind: the config error names the key; the pipeline fits and transforms; skops loads what it
saved; the ONNX fast path either matches scikit-learn or records why it is not used.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from conveyor import io, provenance
from conveyor.config import Config, parse_config
from conveyor.errors import ConfigError
from conveyor.model.features import (
    NO_ONNX_KINDS,
    FeatureSpec,
    model_frame,
    resolve_features,
    spec_from_card,
    spec_of,
)
from conveyor.model.onnx import compile_pipeline
from conveyor.model.predict import predict, predict_proba
from conveyor.stages.train import model_card, train
from tests.conftest import configured, mixed_contract, mixed_table

KINDS: dict[str, dict[str, Any]] = {
    "date_parts": {"kind": "date_parts", "column": "when"},
    "ratio": {"kind": "ratio", "columns": ["a", "b"]},
    "difference": {"kind": "difference", "columns": ["a", "b"]},
    "log": {"kind": "log", "column": "b"},
    "power": {"kind": "power", "column": "a"},
    "bins": {"kind": "bins", "column": "b", "n_bins": 4},
    "text": {"kind": "text", "column": "note", "max_features": 6},
    "target_encoding": {"kind": "target_encoding", "column": "code"},
    "missing_indicator": {"kind": "missing_indicator", "column": "a"},
}
# Kinds whose pipeline must keep the ONNX fast path (skl2onnx's converters, or Conveyor's own).
ONNX_KINDS = frozenset({"bins", "target_encoding", "ratio", "difference", "log", "missing_indicator"})
# Output columns each kind adds for KINDS' settings.
WIDTHS = {
    "date_parts": 1 + 3 * 4,  # year; month, day of week, day of year, hour each with sin and cos
    "ratio": 1,
    "difference": 1,
    "log": 1,
    "power": 1,
    "bins": 4,
    "text": 6,
    "target_encoding": 1,
    "missing_indicator": 1,
}


def derived(params: Config, *items: dict[str, Any], target: str = "label", **features: Any) -> Config:
    """The repository's params for :func:`mixed_table` with ``features.derived`` set to ``items``."""
    task = (
        {"task": "classification"}
        if target == "label"
        else {
            "task": "regression",
            "model": {"estimator": "ridge", "params": {"alpha": 1.0}},
            "gate": {"thresholds": {"r2": {"min": 0.5}}, "compare": ["rmse"]},
        }
    )
    return configured(
        params, data={"target": target}, features={"drop": [], "derived": list(items), **features}, **task
    )


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return mixed_table(600)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_fits_inside_the_pipeline_and_names_its_outputs(
    params: Config, table: pd.DataFrame, kind: str
) -> None:
    cfg = derived(params, KINDS[kind])
    model = train(table, cfg, mixed_contract())
    features = model.named_steps["features"]
    names = [str(n) for n in features.get_feature_names_out()]
    added = [n for n in names if n.startswith(f"{kind}_0__")]
    assert len(added) == WIDTHS[kind], added
    out = features.transform(model_frame(table, spec_of(model)))
    assert out.shape == (len(table), 2 + WIDTHS[kind])  # a and b, as the contract's numeric features
    assert np.isfinite(out).all(), "every derived output is imputed: a linear model takes it"


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"kind": "squared", "column": "a"}, r"features\.derived\.0: .*'squared'.*expected.*'date_parts'"),
        ({"kind": "log", "column": "a", "base": 10}, r"features\.derived\.0\.log\.base: unknown key"),
        ({"kind": "ratio", "columns": ["a"]}, r"features\.derived\.0\.ratio\.columns"),
        (
            {"kind": "bins", "column": "b", "n_bins": 1},
            r"features\.derived\.0\.bins\.n_bins: .*greater than or equal to 2",
        ),
        ({"kind": "text", "column": "note", "max_features": 50_000}, r"features\.derived\.0\.text\.max_features"),
        ({"kind": "log", "column": "label"}, r"features\.derived\.0: log reads the target column 'label'"),
    ],
)
def test_a_bad_derived_feature_is_refused_on_load_naming_the_key(
    params: Config, item: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        derived(params, item)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"kind": "log", "column": "wingspan"}, "features.derived.0: log reads 'wingspan', which is not a column"),
        ({"kind": "log", "column": "note"}, "features.derived.0: log needs a numeric column; 'note' is type string"),
        ({"kind": "date_parts", "column": "b"}, "features.derived.0: date_parts needs a text, category or date column"),
        ({"kind": "target_encoding", "column": "a"}, "target_encoding needs a text, category or date column"),
    ],
)
def test_a_derived_feature_on_the_wrong_column_names_the_key(
    params: Config, item: dict[str, Any], message: str
) -> None:
    cfg = derived(params, item)
    with pytest.raises(ConfigError, match=re.escape(message)):
        resolve_features(cfg.features, mixed_contract(), target="label")


def test_columns_only_derived_features_read_are_inputs_of_their_own_kind(params: Config) -> None:
    cfg = derived(params, KINDS["date_parts"], KINDS["text"], KINDS["target_encoding"], KINDS["log"])
    spec = resolve_features(cfg.features, mixed_contract(), target="label")
    assert spec == FeatureSpec(
        numeric=("a", "b"), categorical=(), extra=(("when", "datetime"), ("note", "text"), ("code", "category"))
    )
    assert spec.columns == ("a", "b", "when", "note", "code")


def test_the_model_card_lists_each_derived_feature_and_the_bundle_reads_the_inputs_back(
    params: Config, table: pd.DataFrame
) -> None:
    cfg = derived(params, KINDS["date_parts"], KINDS["text"], KINDS["ratio"])
    model = train(table, cfg, mixed_contract())
    card = model_card(model, table, cfg)
    assert card.features == {
        "numeric": ["a", "b"],
        "date_parts_0": ["when"],
        "text_1": ["note"],
        "ratio_2": ["a", "b"],
    }
    assert [item["kind"] for item in card.params["features"]["derived"]] == ["date_parts", "text", "ratio"]
    assert spec_from_card(card.features) == spec_of(model)


def test_a_recipe_without_derived_features_keeps_its_hash(params: Config) -> None:
    # model.json's params_hash of the default pipeline must not move because keys were added.
    assert "derived" not in params.features.recipe()
    assert "target_transform" not in params.model.recipe()
    with_one = derived(params, KINDS["log"])
    assert with_one.features.recipe()["derived"] == [{"kind": "log", "column": "b"}]
    assert provenance.params_hash(with_one.features.recipe()) != provenance.params_hash(
        derived(params).features.recipe()
    )


def test_every_kind_survives_a_skops_round_trip(params: Config, table: pd.DataFrame, tmp_path: Path) -> None:
    cfg = derived(params, *KINDS.values())
    model = train(table, cfg, mixed_contract())
    io.save_model(model, tmp_path / "model.skops")
    loaded = io.load_model(tmp_path / "model.skops")
    assert isinstance(loaded, Pipeline)
    np.testing.assert_array_equal(predict_proba(loaded, table), predict_proba(model, table))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_onnx_matches_scikit_learn_or_the_fallback_says_why(params: Config, table: pd.DataFrame, kind: str) -> None:
    cfg = derived(params, KINDS[kind])
    model = train(table, cfg, mixed_contract())
    onnx, choice = compile_pipeline(model, table.head(200), task="classification", tolerance=1e-4)
    if kind in NO_ONNX_KINDS:
        assert onnx is None
        assert choice.reason == (
            f"the derived feature {kind}_0 ({kind}, features.derived) has no ONNX converter; serving with scikit-learn"
        )
    elif choice.inference == "onnx":
        assert choice.parity is not None
        assert choice.parity["passed"]
    else:
        # skl2onnx converts these, but the result may still be refused (ONNX Runtime's text
        # operators need a locale; Yeo-Johnson differs in float32): the reason is recorded.
        assert onnx is None
        assert "serving with scikit-learn" in choice.reason
    assert kind not in ONNX_KINDS or choice.inference == "onnx", choice.reason


def test_a_log_target_is_fitted_on_the_log_scale_and_never_predicts_below_zero(
    params: Config, table: pd.DataFrame
) -> None:
    plain = derived(params, KINDS["date_parts"], KINDS["target_encoding"], target="price")
    logged = configured(plain, model={"target_transform": "log"})
    contract = mixed_contract(target="price")
    test = table.assign(b=table["b"] * 4)  # outside the training range: a linear fit of price goes negative
    test["b"] = -test["b"]
    assert (np.asarray(predict(train(table, plain, contract), test), dtype=float) < 0).any()
    assert (np.asarray(predict(train(table, logged, contract), test), dtype=float) > 0).all()
    model = train(table, logged, contract)
    _, choice = compile_pipeline(model, table.head(50), task="regression", tolerance=1e-4)
    assert "no ONNX converter" in choice.reason


def test_a_log_target_is_refused_for_classification(params: Config) -> None:
    with pytest.raises(ConfigError, match=r"model\.target_transform: 'log' applies to regression"):
        configured(params, model={"target_transform": "log"})


def test_a_kept_over_model_params_is_refused_on_load_saying_how_to_get_the_defaults(params: Config) -> None:
    raw = params.model_dump(mode="json", by_alias=True)
    raw["model"]["estimator"] = "hist_gradient_boosting"  # model.params still holds C and max_iter
    with pytest.raises(
        ConfigError,
        match=re.escape(
            "model.params.C: not a parameter of HistGradientBoostingClassifier (model.estimator: hist_gradient_boosting); set model.params to {} for its defaults"
        ),
    ):
        parse_config(raw, check_params=False)  # even a stage that imports no estimator says so


def test_the_pr_report_shows_each_derived_feature_and_nothing_without_them(params: Config, table: pd.DataFrame) -> None:
    from conveyor.ops.report import features_section

    cfg = derived(params, KINDS["date_parts"], KINDS["bins"], KINDS["ratio"])
    lines = features_section(model_card(train(table, cfg, mixed_contract()), table, cfg))
    assert lines[:2] == ["## Features", ""]
    assert "| numeric | as is | `a`, `b` | |" in lines
    assert "| bins_1 | bins | `b` | n_bins: `4`, strategy: `quantile` |" in lines
    assert "| ratio_2 | ratio | `a`, `b` |  |" in lines
    assert any(line.startswith("| date_parts_0 | date_parts | `when` | parts: ") for line in lines)
    plain = derived(params)
    assert features_section(model_card(train(table, plain, mixed_contract()), table, plain)) == []
    assert features_section(None) == []


def test_the_onnx_fast_path_takes_records_with_every_convertible_kind_at_once(
    params: Config, table: pd.DataFrame
) -> None:
    from conveyor.model.onnx import OnnxPredictor

    cfg = derived(params, *(KINDS[kind] for kind in sorted(ONNX_KINDS)))
    model = train(table, cfg, mixed_contract())
    onnx, choice = compile_pipeline(model, table, task="classification", tolerance=1e-4)
    assert onnx is not None, choice.reason
    predictor = OnnxPredictor(onnx, spec_of(model))
    records: list[dict[str, Any]] = [
        {str(name): (None if pd.isna(value) else value) for name, value in row.items()}
        for row in table[list(spec_of(model).columns)].head(100).to_dict("records")
    ]
    np.testing.assert_allclose(predictor.predict_proba_rows(records), predict_proba(model, table.head(100)), atol=1e-4)
    assert predictor.predict_rows(records).tolist() == predict(model, table.head(100)).tolist()
