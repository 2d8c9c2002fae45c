"""ingest: read ``data.source`` (or the feature store) into the raw Parquet table and record what was read."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from conveyor import io
from conveyor.artifacts import FeatureStoreJoin, IngestReport
from conveyor.config import Config, DataConfig, FeatureStoreConfig
from conveyor.errors import DataError
from conveyor.urls import redact_url

__all__ = ["ingest", "run", "summarize"]


def ingest(cfg: DataConfig, *, environ: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The raw table from ``data.source`` (and ``data.query`` for SQL), unchanged, within ``data.limits``.

    With ``data.source_env`` set, the URL opened is that variable's (the same place, with
    credentials): ``environ`` (default ``os.environ``) is where it is looked up.
    """
    return io.read_source(
        cfg.source, query=cfg.query, sql=cfg.is_sql, limits=cfg.limits, csv_format=cfg.csv, url=cfg.url(environ=environ)
    )


def ingest_feature_store(cfg: FeatureStoreConfig) -> tuple[pd.DataFrame, FeatureStoreJoin]:
    """The training table joined point-in-time from the feature store, and what the join dropped.

    Stops (:class:`DataError`) when the join dropped more than ``max_dropped_share`` of the entity
    rows. The label comes from the entity table; validate checks it like any other column.
    """
    from conveyor import feature_store

    df, join = feature_store.build_training_set(cfg)
    feature_store.check_dropped(join, max_share=cfg.max_dropped_share)
    return df, join


def summarize(df: pd.DataFrame, *, source: str, join: FeatureStoreJoin | None = None) -> IngestReport:
    """Row count, columns with their dtypes, and the content hash of ``df``; ``source`` without secrets."""
    return IngestReport(
        source=redact_url(source),
        rows=len(df),
        columns={str(name): str(dtype) for name, dtype in df.dtypes.items()},
        hash=io.table_hash(df),
        feature_store=join,
    )


def run(cfg: Config, *, out: Path, report: Path) -> IngestReport:
    """Read the source, write it to ``out`` as Parquet and its summary to ``report``."""
    import pyarrow as pa

    store = cfg.feature_store
    if cfg.engine == "dask" and not store.enabled:
        from conveyor.engine import ingest as dask_ingest

        return dask_ingest.run(cfg, out=out, report=report)
    try:
        if store.enabled:
            df, join = ingest_feature_store(store)
            summary = summarize(df, source=f"feast:{store.repo} ({store.feature_service})", join=join)
        else:
            df = ingest(cfg.data)
            summary = summarize(df, source=cfg.data.source)
        io.write_table(df, out)
    except pa.ArrowException as exc:
        # Values Parquet cannot hold (a string over 2 GiB where data.limits allow one): the
        # source's problem, named, not a traceback.
        raise DataError(f"{redact_url(cfg.data.source)}: cannot be stored as Parquet: {exc}") from None
    io.write_artifact(summary, report)
    return summary
