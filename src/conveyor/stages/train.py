"""train: fit the one ``Pipeline`` (feature preparation + estimator) and record where it came from."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sklearn.pipeline import Pipeline

from conveyor import io, provenance
from conveyor.artifacts import ModelCard
from conveyor.config import Config
from conveyor.contract import Contract
from conveyor.features import model_frame, resolve_features, target_values
from conveyor.model import build_pipeline


def train(df: pd.DataFrame, cfg: Config, contract: Contract) -> Pipeline:
    """Fit a pipeline on ``df`` (DataFrame of shape (n_samples, n_columns), target included)."""
    spec = resolve_features(cfg.features, contract, target=cfg.data.target)
    pipeline = build_pipeline(spec, cfg.features, cfg.model, task=cfg.task, seed=cfg.split.seed)
    return pipeline.fit(model_frame(df, spec), target_values(df, cfg.data.target, task=cfg.task))


def model_card(model: Pipeline, df: pd.DataFrame, cfg: Config) -> ModelCard:
    """What traces a model to its origin: data and params hashes, features, classes, library versions.

    ``params`` holds the settings train reads, so ``params_hash`` names the training recipe.

    Nothing here depends on when or where it ran (see :mod:`conveyor.artifacts`).
    """
    # Only the params train reads (as dvc.yaml lists them): the card must not go stale when another
    # stage's params change, since DVC would not rerun train to rewrite it.
    params = {
        "data": {"target": cfg.data.target},
        "task": cfg.task,
        "split": {"seed": cfg.split.seed},
        "features": cfg.features.model_dump(mode="json"),
        "model": cfg.model.model_dump(mode="json"),
    }
    preprocessor = model.named_steps["features"]
    classes = getattr(model, "classes_", None)
    return ModelCard(
        data_hash=io.table_hash(df),
        train_rows=len(df),
        task=cfg.task,
        target=cfg.data.target,
        estimator=cfg.model.estimator,
        features={name: list(columns) for name, _, columns in preprocessor.transformers},
        classes=None if classes is None else [str(c) for c in classes],
        params=params,
        params_hash=provenance.params_hash(params),
        libraries=provenance.library_versions(),
    )


def run(cfg: Config, contract: Contract, *, data: Path, model_out: Path, metadata_out: Path) -> Pipeline:
    """Train on ``data``; write the model (skops) and its card (JSON)."""
    df = io.read_table(data)
    model = train(df, cfg, contract)
    io.save_model(model, model_out)
    io.write_artifact(model_card(model, df, cfg), metadata_out)
    return model
