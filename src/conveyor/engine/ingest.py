"""ingest with ``engine: dask``: ``data.source`` read in blocks and written as a partitioned Parquet folder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import dask.dataframe as dd
import pandas as pd
from distributed import Client

from conveyor import io
from conveyor.artifacts import IngestReport
from conveyor.config import Config
from conveyor.engine import cluster, tables
from conveyor.urls import redact_url

__all__ = ["run", "summarize", "table_hash"]


def _partition_digest(part: pd.DataFrame) -> pd.Series:
    digest = hashlib.sha256(pd.util.hash_pandas_object(part, index=False).to_numpy().tobytes()).hexdigest()
    return pd.Series([digest, len(part)], index=["digest", "rows"], dtype=object)


def table_hash(client: Client, df: dd.DataFrame) -> tuple[str, int]:
    """A content hash of a partitioned table (the digests of its partitions, in order) and its row count.

    Same values, dtypes and partitions give the same hash; it differs from the pandas engine's
    :func:`conveyor.io.table_hash` of the same rows (that one hashes the table as one block).
    """
    per_partition = df.map_partitions(_partition_digest, meta=pd.Series(dtype=object)).to_delayed()
    (parts,) = cluster.compute(client, per_partition)
    digest = hashlib.sha256(json.dumps([[str(c), str(t)] for c, t in df.dtypes.items()]).encode())
    rows = 0
    for part in parts:
        digest.update(str(part["digest"]).encode())
        rows += int(part["rows"])
    return digest.hexdigest(), rows


def summarize(client: Client, df: dd.DataFrame, *, source: str) -> IngestReport:
    """Row count, columns with their dtypes, and the partitioned content hash; ``source`` without secrets."""
    digest, rows = table_hash(client, df)
    return IngestReport(
        source=redact_url(source),
        rows=rows,
        columns={str(name): str(dtype) for name, dtype in df.dtypes.items()},
        hash=digest,
        feature_store=None,
    )


def run(cfg: Config, *, out: Path, report: Path) -> IngestReport:
    """Read ``data.source`` partition by partition, write it to ``out`` (a Parquet folder) and its summary to ``report``."""
    with cluster.connect(cfg.dask, stage="ingest") as client:
        df = tables.read_source(cfg.data)
        tables.write_table(client, df, out)
        summary = summarize(client, tables.read_table(out), source=cfg.data.source)
    io.write_artifact(summary, report)
    return summary
