"""Partitioned tables: ``data.source`` read in blocks, and the stages' Parquet folders written whole.

A stage's table (``data/raw/data.parquet`` and the others dvc.yaml names) is a folder of Parquet
files with ``engine: dask``, one per partition; pandas reads the folder as one table, so the
stages that stay on pandas (tune, gate, package) read it unchanged.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dask.dataframe as dd
import pandas as pd
import pyarrow as pa
from distributed import Client

from conveyor import io
from conveyor.config import DataConfig
from conveyor.engine.cluster import compute
from conveyor.errors import ArtifactError, DataError

__all__ = ["BLOCK_SIZE", "read_source", "read_table", "write_table"]

# Bytes of CSV per partition: about a million penguin-like rows.
BLOCK_SIZE = "64MiB"


def read_source(cfg: DataConfig) -> dd.DataFrame:
    """``data.source`` as a Dask frame: CSV in blocks, Parquet by row group; SQL is read whole, then partitioned."""
    if cfg.is_sql:
        return dd.from_pandas(io.read_source(cfg.source, query=cfg.query, sql=True), chunksize=1_000_000)
    source = cfg.source
    suffix = Path(source.split("?", 1)[0]).suffix.lower()
    try:
        if suffix in {".parquet", ".pq"} or Path(source).is_dir():
            return dd.read_parquet(source)
        if suffix in {".csv", ".txt"} or not suffix:
            return dd.read_csv(source, blocksize=BLOCK_SIZE, encoding="utf-8", on_bad_lines="error")
    except FileNotFoundError:
        raise DataError(f"{source}: file not found (data.source in params.yaml)") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{source}: cannot be read: {exc}") from None
    raise DataError(
        f"{source}: unknown format {suffix!r} for engine: dask; expected .csv or .parquet, or a SQLAlchemy URL"
    )


def read_table(path: str | Path) -> dd.DataFrame:
    """A table a stage wrote (a Parquet file or folder), one partition per file or row group."""
    try:
        return dd.read_parquet(str(path))
    except FileNotFoundError:
        raise ArtifactError(f"{path}: not found; {io.REBUILD}") from None
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: not a readable Parquet table ({exc}); {io.REBUILD}") from None


def write_table(client: Client, df: dd.DataFrame, path: str | Path) -> None:
    """Write ``df`` as a folder of Parquet files at ``path``, replacing what was there only once all are written."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        # Object columns hold text (conveyor.contract.conform): Dask cannot infer their type from its meta.
        text = {name: "str" for name, dtype in df.dtypes.items() if pd.api.types.is_object_dtype(dtype)}
        schema = pa.Schema.from_pandas(df._meta.astype(text), preserve_index=False)
        compute(client, df.to_parquet(str(temporary), write_index=False, schema=schema, compute=False))
        _remove(target)
        os.replace(temporary, target)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
