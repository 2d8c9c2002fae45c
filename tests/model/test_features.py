"""Feature columns from params and contract, and the canonical frame every caller predicts on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conveyor.config import Config
from conveyor.contract import Contract
from conveyor.errors import ConfigError, DataError
from conveyor.model.features import MISSING_CATEGORY, FeatureSpec, model_frame, resolve_features, spec_of, target_values
from conveyor.model.pipeline import build_pipeline
from tests.conftest import configured

MEASUREMENTS = ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g")


def test_defaults_come_from_the_contract_minus_target_and_drop(params: Config, contract: Contract) -> None:
    spec = resolve_features(params.features, contract, target="species")
    assert spec.numeric == MEASUREMENTS  # year is dropped in params.yaml
    assert spec.categorical == ("island", "sex")  # species is the target
    assert spec.columns == (*MEASUREMENTS, "island", "sex")


def test_drop_removes_a_column_and_explicit_lists_win(params: Config, contract: Contract) -> None:
    cfg = configured(params, features={"drop": ["year", "body_mass_g", "sex"]}).features
    spec = resolve_features(cfg, contract, target="species")
    assert "body_mass_g" not in spec.numeric
    assert spec.categorical == ("island",)
    explicit = configured(params, features={"numeric": ["bill_depth_mm"], "categorical": [], "drop": []}).features
    spec = resolve_features(explicit, contract, target="species")
    assert spec == FeatureSpec(numeric=("bill_depth_mm",), categorical=())  # [] means none, unlike null


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ({"numeric": ["wingspan"]}, "features.numeric: columns not in the data contract: ['wingspan']"),
        ({"drop": ["colour"]}, "features.drop: columns not in the data contract: ['colour']"),
        ({"numeric": ["island"], "categorical": ["sex"]}, "features.numeric: columns are not numeric"),
    ],
)
def test_bad_feature_lists_name_the_key(
    params: Config, contract: Contract, features: dict[str, object], message: str
) -> None:
    cfg = configured(params, features=features).features
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        resolve_features(cfg, contract, target="species")


def test_nothing_left_is_an_error(params: Config, contract: Contract) -> None:
    everything = [name for name in contract.columns if name != "species"]
    cfg = configured(params, features={"drop": everything}).features
    with pytest.raises(ConfigError, match="no feature columns remain"):
        resolve_features(cfg, contract, target="species")


def test_model_frame_orders_columns_and_fixes_dtypes(params: Config, contract: Contract) -> None:
    spec = resolve_features(params.features, contract, target="species")
    raw = pd.DataFrame(
        {
            "sex": ["male", None, np.nan],
            "year": [2007, 2008, 2009],
            "body_mass_g": ["3750", None, 4000],  # text and None, as a loose source delivers them
            "island": pd.Series(["Biscoe", "Dream", None], dtype="str"),
            "bill_length_mm": [39.1, np.nan, 40.0],
            "bill_depth_mm": [18.7, 17.0, 16.0],
            "flipper_length_mm": [181, 190, 200],
        }
    )
    frame = model_frame(raw, spec)
    assert list(frame.columns) == list(spec.columns)
    assert all(frame[c].dtype == np.float64 for c in spec.numeric)
    assert all(frame[c].dtype == object for c in spec.categorical)
    assert frame["body_mass_g"].tolist()[::2] == [3750.0, 4000.0]
    assert frame["body_mass_g"].isna().tolist() == [False, True, False]
    assert frame["sex"].tolist() == ["male", MISSING_CATEGORY, MISSING_CATEGORY]
    assert frame["island"].tolist() == ["Biscoe", "Dream", MISSING_CATEGORY]


def test_model_frame_names_missing_columns(params: Config, contract: Contract, penguins: pd.DataFrame) -> None:
    spec = resolve_features(params.features, contract, target="species")
    with pytest.raises(DataError, match="sex"):
        model_frame(penguins.drop(columns=["sex"]), spec)


def test_missing_category_is_learned_as_a_value(params: Config, contract: Contract, penguins: pd.DataFrame) -> None:
    spec = resolve_features(params.features, contract, target="species")
    pipeline = build_pipeline(spec, params.features, params.model, task="classification", seed=0)
    pipeline.fit(model_frame(penguins, spec), target_values(penguins, "species", task="classification"))
    encoder = pipeline.named_steps["features"].named_transformers_["categorical"].named_steps["encode"]
    sex_categories = list(encoder.categories_[spec.categorical.index("sex")])
    assert MISSING_CATEGORY in sex_categories  # penguins has rows with no sex recorded


def test_most_frequent_imputation_replaces_the_missing_marker(
    params: Config, contract: Contract, penguins: pd.DataFrame
) -> None:
    cfg = configured(params, features={"categorical_imputation": "most_frequent"})
    spec = resolve_features(cfg.features, contract, target="species")
    pipeline = build_pipeline(spec, cfg.features, cfg.model, task="classification", seed=0)
    pipeline.fit(model_frame(penguins, spec), target_values(penguins, "species", task="classification"))
    encoder = pipeline.named_steps["features"].named_transformers_["categorical"].named_steps["encode"]
    assert MISSING_CATEGORY not in list(encoder.categories_[spec.categorical.index("sex")])


def test_spec_of_reads_the_spec_back_from_a_pipeline(params: Config, contract: Contract) -> None:
    spec = resolve_features(params.features, contract, target="species")
    assert spec_of(build_pipeline(spec, params.features, params.model, task="classification", seed=0)) == spec
    numeric_only = configured(params, features={"drop": ["year", "island", "sex"]})
    spec = resolve_features(numeric_only.features, contract, target="species")
    assert spec.categorical == ()
    assert spec_of(build_pipeline(spec, numeric_only.features, params.model, task="classification", seed=0)) == spec


def test_target_values_per_task(penguins: pd.DataFrame) -> None:
    labels = target_values(penguins, "species", task="classification")
    assert labels.dtype == object
    assert set(labels) == {"Adelie", "Chinstrap", "Gentoo"}
    masses = target_values(penguins, "body_mass_g", task="regression")
    assert masses.dtype == np.float64
    assert len(masses) == len(penguins)
