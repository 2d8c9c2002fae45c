"""The bake-off ``conveyor init`` runs: seeded, time-boxed, on the train split only, and what it writes."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conveyor.config import Config, parse_config
from conveyor.contract import Contract, infer_contract
from conveyor.errors import ConfigError
from conveyor.model.predict import predict
from conveyor.ops.bakeoff import CANDIDATES, bake_off
from conveyor.ops.init import cv_margin, retarget
from conveyor.stages.train import train
from tests.conftest import mixed_table

ROOT = Path(__file__).resolve().parents[2]
PARAMS = (ROOT / "params.yaml").read_text(encoding="utf-8")


def interactions(rows: int = 1500, *, seed: int = 0) -> pd.DataFrame:
    """A label a linear model cannot draw (an XOR of two signs), with a category and noise columns."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4))
    frame = pd.DataFrame(x, columns=["u", "v", "w", "z"]).assign(kind=rng.choice(["p", "q", "r"], rows))
    frame["label"] = np.where((x[:, 0] > 0) ^ (x[:, 1] > 0), "odd", "even")
    return frame


def linear(rows: int = 600, *, seed: int = 0) -> pd.DataFrame:
    """A regression target that is linear in the columns plus noise: the linear model's home ground."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 5))
    return pd.DataFrame(x, columns=list("abcde")).assign(
        y=x @ np.array([3.0, -2.0, 1.0, 0.5, 0.0]) + rng.normal(size=rows)
    )


def prices(rows: int = 800, *, seed: int = 0) -> pd.DataFrame:
    """A positive, right-skewed price, multiplicative in its inputs."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3))
    return pd.DataFrame(x, columns=["s", "t", "r"]).assign(price=np.exp(2 + x @ np.array([0.8, 0.5, 0.1])))


def configured(df: pd.DataFrame, target: str) -> tuple[Config, Contract]:
    """The params and contract ``conveyor init --bakeoff-seconds 0`` writes for ``df``."""
    result = retarget(df, PARAMS, source="x.csv", target=target)
    return result.config, result.contract


def test_gradient_boosting_beats_the_linear_model_where_the_label_is_an_interaction() -> None:
    df = interactions()
    cfg, contract = configured(df, "label")
    result = bake_off(df, cfg, contract, budget_s=60)
    scores = {c.estimator: c.score for c in result.candidates}
    assert list(scores) == [name for name, _ in CANDIDATES["classification"]]
    assert result.metric == "balanced_accuracy"
    linear_score = scores["logistic_regression"]
    assert linear_score is not None
    assert linear_score < 0.6
    assert result.winner.estimator in {"hist_gradient_boosting", "lightgbm"}
    assert result.winner.score is not None
    assert result.winner.score > 0.9
    assert all(len(c.scores) == 3 for c in result.candidates)


def test_the_linear_model_wins_on_linear_data_and_the_result_is_seeded() -> None:
    df = linear()
    cfg, contract = configured(df, "y")
    first = bake_off(df, cfg, contract, budget_s=60)
    again = bake_off(df, cfg, contract, budget_s=60)
    assert first.winner.estimator == "ridge"
    assert [c.scores for c in first.candidates] == [c.scores for c in again.candidates]


def test_the_time_box_skips_what_it_cannot_fit_and_still_names_a_winner() -> None:
    df = interactions(600)
    cfg, contract = configured(df, "label")
    result = bake_off(df, cfg, contract, budget_s=0.0)
    assert [len(c.scores) for c in result.candidates] == [1, 0, 0]  # the first fold always runs
    assert result.winner.estimator == "logistic_regression"
    assert (
        result.candidates[1].describe(result.metric)
        == "hist_gradient_boosting: skipped (the budget ran out before it started)"
    )
    assert "(1 of 3 folds" in result.candidates[0].describe(result.metric)


def test_a_large_table_is_sampled_so_the_bake_off_stays_bounded() -> None:
    df = linear(3000)
    cfg, contract = configured(df, "y")
    assert bake_off(df, cfg, contract, max_rows=1000, budget_s=60).rows == 1000


def test_init_writes_the_winner_every_score_and_a_gate_from_the_winners_cv_score() -> None:
    df = interactions()
    result = retarget(df, PARAMS, source="x.csv", target="label", bakeoff_s=60)
    cfg = parse_config(yaml.safe_load(result.params))  # the winner's params are valid for it
    assert cfg.model.estimator in {"hist_gradient_boosting", "lightgbm"}
    assert cfg.model.params == dict(CANDIDATES["classification"])[cfg.model.estimator]
    comment = next(line for line in result.params.splitlines() if "init bake-off" in line)
    scores = dict(re.findall(r"(\w+): balanced_accuracy (\d\.\d{3}) ± (?:\d\.\d{3})", comment))
    assert set(scores) == {"logistic_regression", "hist_gradient_boosting", "lightgbm"}
    # 1500 rows, test_size 0.25: the bake-off saw the 1125 train-split rows and never the test split.
    train_rows = len(df) - math.ceil(0.25 * len(df))
    assert f"3-fold CV on {train_rows} train-split rows" in comment
    winner = float(scores[cfg.model.estimator])
    threshold = cfg.gate.thresholds["balanced_accuracy"].min
    assert threshold is not None
    assert winner - 0.1 < threshold <= winner - 0.02
    assert threshold > 0.5 + 0.1, "far above the chance-based default"


def test_a_positive_skewed_target_is_fitted_on_the_log_scale_unless_told_otherwise() -> None:
    df = prices()
    logged = retarget(df, PARAMS, source="x.csv", target="price")
    assert logged.config.model.target_transform == "log"
    assert re.search(r"target_transform: log +# init: 'price' is positive and skewed \(skewness \d", logged.params)
    told = retarget(df, PARAMS, source="x.csv", target="price", transform="none")
    assert told.config.model.target_transform == "none"
    symmetric = retarget(linear(), PARAMS, source="x.csv", target="y")
    assert symmetric.config.model.target_transform == "none"
    # Back to a classifier: the key goes, it has no meaning there.
    back = retarget(interactions(), logged.params, source="x.csv", target="label")
    assert "target_transform" not in back.params


def test_the_log_scale_bake_off_predicts_no_negative_price() -> None:
    df = prices()
    result = retarget(df, PARAMS, source="x.csv", target="price", bakeoff_s=60)
    assert result.config.model.target_transform == "log"
    model = train(df, result.config, infer_contract(df, target="price"))
    far = df.assign(s=df["s"] * -5)
    assert (np.asarray(predict(model, far), dtype=float) > 0).all()


@pytest.mark.parametrize("estimator", ["hist_gradient_boosting", "lightgbm", "random_forest"])
def test_switching_the_estimator_with_old_params_fails_at_load_not_at_train(estimator: str) -> None:
    raw = yaml.safe_load(PARAMS)
    raw["model"]["estimator"] = estimator  # model.params still holds logistic regression's C
    with pytest.raises(ConfigError, match=r"model\.params\.C: not a parameter of \w+ \(model\.estimator: "):
        parse_config(raw)
    raw["model"]["params"] = {}
    assert parse_config(raw).model.estimator == estimator  # {}: that estimator's defaults


def test_cv_margin_is_two_standard_deviations_and_at_least_two_points() -> None:
    assert cv_margin(0.0) == 0.02
    assert cv_margin(0.05) == pytest.approx(0.1)


def test_cv_margin_covers_the_test_splits_sampling_noise() -> None:
    # 85% right on 100 test rows: 0.85 ± 2 x 0.036 on any one split.
    assert cv_margin(0.01, score=0.85, test_rows=100) == pytest.approx(2 * (0.85 * 0.15 / 100) ** 0.5)
    assert cv_margin(0.01, score=0.85, test_rows=1_000_000) == 0.02, "a large split adds nothing"


def test_init_proposes_date_parts_text_and_target_encoding_for_columns_kept_out_of_the_model() -> None:
    df = mixed_table(600)
    result = retarget(df.drop(columns="label"), PARAMS, source="x.csv", target="price")
    assert [item for item, _ in result.derived] == [
        {"kind": "date_parts", "column": "when"},
        {"kind": "text", "column": "note", "max_features": 100},
        {"kind": "target_encoding", "column": "code"},
    ]
    assert result.derived[0][1] == "100% of its values are dates"
    derived = result.config.features.derived
    assert [(d.kind, getattr(d, "column", None)) for d in derived] == [
        ("date_parts", "when"),
        ("text", "note"),
        ("target_encoding", "code"),
    ]
    back = retarget(interactions(), result.params, source="x.csv", target="label")
    assert "derived" not in back.params, "the old table's derived features go with it"


def test_init_with_dates_scores_the_bake_off_with_them() -> None:
    df = mixed_table(900).drop(columns="label")
    with_dates = retarget(df, PARAMS, source="x.csv", target="price", bakeoff_s=60)
    comment = next(line for line in with_dates.params.splitlines() if "init bake-off" in line)
    best = max(float(v) for v in re.findall(r": r2 (-?\d\.\d{3})", comment))
    without = retarget(df.drop(columns=["when", "code"]), PARAMS, source="x.csv", target="price", bakeoff_s=60)
    comment = next(line for line in without.params.splitlines() if "init bake-off" in line)
    assert best > max(float(v) for v in re.findall(r": r2 (-?\d\.\d{3})", comment)) + 0.1
