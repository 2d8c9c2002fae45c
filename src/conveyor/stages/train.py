"""train: fit the one ``Pipeline`` (feature preparation + estimator) and record its provenance."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.pipeline import Pipeline

from conveyor import io, provenance
from conveyor.artifacts import TunedParams, read_artifact
from conveyor.config import Config
from conveyor.contract import Contract
from conveyor.features import model_frame, resolve_features, target_values
from conveyor.model import build_pipeline


class TrainError(ValueError):
    """The inputs of the train stage do not fit together; the message says which and what to run."""


def train(df: pd.DataFrame, cfg: Config, contract: Contract) -> Pipeline:
    """Fit a pipeline on ``df`` (DataFrame of shape (n_samples, n_columns), target included)."""
    spec = resolve_features(cfg.features, contract, target=cfg.data.target)
    pipeline = build_pipeline(spec, cfg.features, cfg.model, task=cfg.task)
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


def tuning_summary(tuned: TunedParams | None) -> dict[str, Any]:
    """What ``model.json`` says about tuning: whether the params were tuned, the best CV value, the trials."""
    if tuned is None or not tuned.tuned:
        return {"tuned": False, "metric": None, "best_value": None, "trials": 0}
    return {"tuned": True, "metric": tuned.metric, "best_value": tuned.best_value, "trials": tuned.trials}


def metadata(
    model: Pipeline,
    df: pd.DataFrame,
    cfg: Config,
    *,
    seconds: float,
    root: Path,
    outputs: Sequence[Path] = (),
    tuned: TunedParams | None = None,
) -> dict[str, Any]:
    """What traces a model to its origin: git revision, data and params hashes, versions, timing.

    ``outputs`` are the files this training run writes; they do not count as uncommitted code.
    """
    params = cfg.model_dump(mode="json", by_alias=True)
    preprocessor = model.named_steps["features"]
    classes = getattr(model, "classes_", None)
    return {
        "git_revision": provenance.git_revision(root, outputs=outputs),
        "data_hash": io.table_hash(df),
        "train_rows": len(df),
        "task": cfg.task,
        "target": cfg.data.target,
        "estimator": cfg.model.estimator,
        "features": {name: list(columns) for name, _, columns in preprocessor.transformers},
        "classes": None if classes is None else [str(c) for c in classes],
        "params": params,
        "params_hash": provenance.params_hash(params),
        "tuning": tuning_summary(tuned),
        "libraries": provenance.library_versions(),
        "training_seconds": round(seconds, 3),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def run(
    cfg: Config,
    contract: Contract,
    *,
    data: Path,
    model_out: Path,
    metadata_out: Path,
    tuned_params: Path | None = None,
) -> Pipeline:
    """Train on ``data`` (with the tune stage's params from ``tuned_params``); write the model (skops) and its metadata (JSON)."""
    tuned = None if tuned_params is None else read_artifact(TunedParams, tuned_params)
    cfg = with_tuned_params(cfg, tuned)
    df = io.read_table(data)
    started = time.perf_counter()
    model = train(df, cfg, contract)
    seconds = time.perf_counter() - started
    io.save_model(model, model_out)
    info = metadata(model, df, cfg, seconds=seconds, root=Path.cwd(), outputs=(model_out, metadata_out), tuned=tuned)
    io.write_json(info, metadata_out)
    return model
