"""ingest: read ``data.source`` into the raw Parquet table and record what was read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from conveyor import io
from conveyor.config import Config, DataConfig


def ingest(cfg: DataConfig) -> pd.DataFrame:
    """The raw table from ``data.source`` (and ``data.query`` for SQL), unchanged."""
    return io.read_source(cfg.source, query=cfg.query, sql=cfg.is_sql)


def summarize(df: pd.DataFrame) -> dict[str, Any]:
    """Row count, columns with their dtypes, and the content hash of ``df``."""
    return {
        "rows": len(df),
        "columns": {str(name): str(dtype) for name, dtype in df.dtypes.items()},
        "hash": io.table_hash(df),
    }


def run(cfg: Config, *, out: Path, report: Path) -> dict[str, Any]:
    """Read the source, write it to ``out`` as Parquet and its summary to ``report``."""
    df = ingest(cfg.data)
    io.write_table(df, out)
    summary = {"source": io.redact_url(cfg.data.source), **summarize(df)}
    io.write_json(summary, report)
    return summary
