"""train: fit the one ``Pipeline`` (feature preparation + estimator) and record where it came from."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sklearn.pipeline import Pipeline

from conveyor import io, provenance
from conveyor.artifacts import ModelCard, Provenance, TunedParams, TuningSummary
from conveyor.config import Config
from conveyor.contract import Contract
from conveyor.errors import ConveyorError
from conveyor.model.features import model_frame, resolve_features, target_values
from conveyor.model.pipeline import build_pipeline

__all__ = ["TrainError", "model_card", "run", "train", "tuning_summary", "with_tuned_params"]


class TrainError(ConveyorError):
    """The inputs of the train stage do not fit together; the message says which and what to run."""


def train(df: pd.DataFrame, cfg: Config, contract: Contract) -> Pipeline:
    """Fit a pipeline on ``df`` (DataFrame of shape (n_samples, n_columns), target included)."""
    spec = resolve_features(cfg.features, contract, target=cfg.data.target)
    pipeline = build_pipeline(spec, cfg.features, cfg.model, task=cfg.task, seed=cfg.split.seed)
    return pipeline.fit(model_frame(df, spec), target_values(df, cfg.data.target, task=cfg.task))


def with_tuned_params(cfg: Config, tuned: TunedParams | None) -> Config:
    """``cfg`` with the tune stage's params over ``model.params`` (unchanged when there are none)."""
    if tuned is None:
        return cfg
    if tuned.estimator != cfg.model.estimator:
        raise TrainError(
            f"model.estimator: {cfg.model.estimator!r}, but the tuned params are for {tuned.estimator!r}; "
            "run the tune stage again (dvc repro)"
        )
    model = cfg.model.model_copy(update={"params": dict(cfg.model.params) | tuned.params})
    return cfg.model_copy(update={"model": model})


def tuning_summary(tuned: TunedParams | None) -> TuningSummary:
    """What ``model.json`` says about tuning: whether the params were tuned, the best CV value, the trials."""
    if tuned is None or not tuned.tuned:
        return TuningSummary(tuned=False, metric=None, best_value=None, trials=0)
    return TuningSummary(tuned=True, metric=tuned.metric, best_value=tuned.best_value, trials=tuned.trials)


def model_card(model: Pipeline, df: pd.DataFrame, cfg: Config, *, tuned: TunedParams | None = None) -> ModelCard:
    """What traces a model to its origin: data and params hashes, features, classes, tuning, library versions.

    ``params`` holds the settings train reads (``model.params`` with any tuned values over them),
    so ``params_hash`` names the training recipe. Nothing here depends on when or where it ran.
    """
    # Only the params train reads (as dvc.yaml lists them): the card must not go stale when another
    # stage's params change, since DVC would not rerun train to rewrite it.
    params = {
        "data": {"target": cfg.data.target},
        "task": cfg.task,
        "split": {"seed": cfg.split.seed},
        "features": cfg.features.recipe(),
        "model": cfg.model.recipe(),
    }
    preprocessor = model.named_steps["features"]
    classes = getattr(model, "classes_", None)
    return ModelCard(
        provenance=Provenance(
            data_hash=io.table_hash(df),
            params_hash=provenance.params_hash(params),
            libraries=provenance.library_versions(),
        ),
        train_rows=len(df),
        task=cfg.task,
        target=cfg.data.target,
        estimator=cfg.model.estimator,
        # One entry per ColumnTransformer step and the columns it reads: numeric, categorical and
        # each features.derived step (``log_0``), whose settings are in params.features.derived.
        features={
            name: [columns] if isinstance(columns, str) else list(columns)
            for name, _, columns in preprocessor.transformers
        },
        classes=None if classes is None else [str(c) for c in classes],
        params=params,
        tuning=tuning_summary(tuned),
    )


def run(
    cfg: Config,
    contract: Contract,
    *,
    data: Path,
    model_out: Path,
    metadata_out: Path,
    tuned_params: Path | None = None,
) -> Pipeline:
    """Train on ``data`` (with the tune stage's params from ``tuned_params``); write the model (skops) and its card."""
    if cfg.engine == "dask":
        from conveyor.engine import train as dask_train

        return dask_train.run(
            cfg, contract, data=data, model_out=model_out, metadata_out=metadata_out, tuned_params=tuned_params
        )
    tuned = None if tuned_params is None else io.read_artifact(tuned_params, TunedParams)
    cfg = with_tuned_params(cfg, tuned)
    df = io.read_table(data)
    model = train(df, cfg, contract)
    io.save_model(model, model_out)
    io.write_artifact(model_card(model, df, cfg, tuned=tuned), metadata_out)
    return model
