"""ingest: read ``data.source`` into the raw Parquet table and record what was read."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from conveyor import io
from conveyor.artifacts import IngestReport
from conveyor.config import Config, DataConfig
from conveyor.urls import redact_url

__all__ = ["ingest", "run", "summarize"]


def ingest(cfg: DataConfig) -> pd.DataFrame:
    """The raw table from ``data.source`` (and ``data.query`` for SQL), unchanged."""
    return io.read_source(cfg.source, query=cfg.query, sql=cfg.is_sql)


def summarize(df: pd.DataFrame, *, source: str) -> IngestReport:
    """Row count, columns with their dtypes, and the content hash of ``df``; ``source`` without secrets."""
    return IngestReport(
        source=redact_url(source),
        rows=len(df),
        columns={str(name): str(dtype) for name, dtype in df.dtypes.items()},
        hash=io.table_hash(df),
    )


def run(cfg: Config, *, out: Path, report: Path) -> IngestReport:
    """Read the source, write it to ``out`` as Parquet and its summary to ``report``."""
    df = ingest(cfg.data)
    io.write_table(df, out)
    summary = summarize(df, source=cfg.data.source)
    io.write_artifact(summary, report)
    return summary
