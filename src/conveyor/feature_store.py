"""Training tables from a Feast feature store, built in Feast's own environment.

Feast needs pandas<3 and the project is on pandas 3, so Feast never loads here: ingest runs
``feature_repo/build_training_set.py`` with the Feast environment's interpreter
(``feature_store.python``) and reads back two files, the joined table (Parquet) and what the join
kept and dropped (JSON). The threshold on dropped rows is checked here, where it can be tested
without Feast.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pandas as pd

from conveyor import io
from conveyor.artifacts import FeatureStoreJoin
from conveyor.config import FeatureStoreConfig
from conveyor.errors import ConfigError, DataError

# The script lives beside the Feast environment it runs in (the project's feature_repo/), whatever
# feature repository it is pointed at.
BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "feature_repo" / "build_training_set.py"
# Feast reads no environment for telemetry today; this keeps any future usage reporting off.
FEAST_ENV = {"FEAST_USAGE": "False"}


def build_training_set(cfg: FeatureStoreConfig, *, timeout: float = 600) -> tuple[pd.DataFrame, FeatureStoreJoin]:
    """The training table joined point-in-time from ``cfg.repo``, and the join's summary.

    Raises :class:`ConfigError` for a repository, interpreter or entity table that is not there
    and :class:`DataError` when the Feast process fails (its last lines in the message).
    """
    _require(cfg.repo, "feature_store.repo", "a Feast repository folder", folder=True)
    _require(cfg.entity_rows, "feature_store.entity_rows", "a Parquet entity table")
    _require(cfg.python, "feature_store.python", "the Feast environment's interpreter (run `make feast-env`)")
    with tempfile.TemporaryDirectory(prefix="conveyor-feast-") as tmp:
        table_path, summary_path = Path(tmp) / "training.parquet", Path(tmp) / "join.json"
        command = [
            cfg.python,
            str(BUILD_SCRIPT),
            "--repo",
            cfg.repo,
            "--entity-rows",
            cfg.entity_rows,
            "--feature-service",
            cfg.feature_service,
            "--out",
            str(table_path),
            "--summary",
            str(summary_path),
        ]
        if cfg.apply:
            command.append("--apply")
        result = subprocess.run(
            command, env=os.environ | FEAST_ENV, capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            tail = " | ".join(result.stderr.strip().splitlines()[-3:])
            raise DataError(f"feature store {cfg.repo}: building the training set failed: {tail}")
        summary = io.read_artifact(summary_path, FeatureStoreJoin)
        return io.read_source(str(table_path)), summary


def check_dropped(summary: FeatureStoreJoin, *, max_share: float) -> None:
    """Raise :class:`DataError` when the join dropped more than ``max_share`` of the entity rows.

    The message names the feature views that dropped rows, and the first entity and timestamp.
    """
    if summary.entity_rows == 0 or summary.dropped / summary.entity_rows <= max_share:
        return
    views = ", ".join(f"{name} ({count})" for name, count in sorted(summary.dropped_by_view.items()) if count)
    first = summary.dropped_examples[0] if summary.dropped_examples else None
    example = ""
    if first is not None:
        key = ", ".join(f"{k}={v!r}" for k, v in first.entity.items())
        ttl = ", ".join(f"{view} TTL {days:g} days" for view, days in first.ttl_days.items())
        example = (
            f"; e.g. entity {key} at {first.event_timestamp} has no row in feature view "
            f"{', '.join(first.feature_views)} within its TTL ({ttl})"
        )
    raise DataError(
        f"feature store: the point-in-time join dropped {summary.dropped} of {summary.entity_rows} entity rows "
        f"({summary.dropped / summary.entity_rows:.1%}), above feature_store.max_dropped_share {max_share:g}; "
        f"dropped by feature view: {views or 'unknown'}{example}"
    )


def _require(path: str, key: str, what: str, *, folder: bool = False) -> None:
    target = Path(path)
    if not (target.is_dir() if folder else target.is_file()):
        raise ConfigError(f"{key}: {path} is not there; expected {what}")
