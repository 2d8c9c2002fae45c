"""Partitioned tables: ``data.source`` read in blocks, and the stages' Parquet folders written whole.

A stage's table (``data/raw/data.parquet`` and the others dvc.yaml names) is a folder of Parquet
files with ``engine: dask``, one per partition; pandas reads the folder as one table, so the
stages that stay on pandas (tune, gate, package) read it unchanged.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import dask.dataframe as dd
import fsspec
import pandas as pd
import pyarrow as pa
from dask import delayed
from dask.delayed import Delayed
from distributed import Client

from conveyor import io
from conveyor.config import DataConfig, DataLimits
from conveyor.engine.cluster import compute
from conveyor.errors import ArtifactError, DataError
from conveyor.urls import redact_url, scrub, secrets_of

__all__ = [
    "BLOCK_SIZE",
    "COMPRESSED",
    "CsvBlocks",
    "csv_blocks",
    "part_name",
    "read_source",
    "read_table",
    "replacing",
    "source_format",
    "write_table",
]

# Suffixes of compressed files: a stream that has to be read from its start, never by blocks.
COMPRESSED = frozenset({".gz", ".bz2", ".xz", ".zst", ".zip"})
# Bytes of CSV per partition: about a million penguin-like rows.
BLOCK_SIZE = 64 * 2**20


def source_format(cfg: DataConfig) -> str:
    """``"parquet"`` or ``"csv"``: how the Dask engine reads the file ``data.source``; another kind is a :class:`DataError`."""
    suffix = Path(cfg.source.split("?", 1)[0]).suffix.lower()
    if suffix in {".parquet", ".pq"} or Path(cfg.source).is_dir():
        return "parquet"
    if suffix in io.CSV_SUFFIXES - COMPRESSED or not suffix:
        return "csv"
    if suffix in COMPRESSED:
        raise DataError(
            f"{redact_url(cfg.source)}: a compressed file cannot be cut into blocks, so engine: dask cannot read it; "
            "decompress it, or save it as Parquet (engine: pandas reads .csv.gz as it is)"
        )
    raise DataError(
        f"{redact_url(cfg.source)}: unknown format {suffix!r} for engine: dask; expected .csv or .parquet, "
        "or a SQLAlchemy URL"
    )


def read_source(cfg: DataConfig, *, url: str | None = None) -> dd.DataFrame:
    """A Parquet ``data.source`` as a Dask frame, by row group (CSV: :func:`csv_blocks`; SQL: :mod:`conveyor.engine.ingest`).

    ``url`` is what is opened (``data.source_env``'s, with credentials); messages name the source
    without them. ``data.limits`` are checked as the pandas engine checks them, with its messages:
    the footers first (columns, bytes, rows), then each partition's values as it is read.
    """
    target, options = io.storage_options(url or cfg.source)
    with _reading(cfg, url):
        io.check_parquet(_footers(target, options), cfg.limits)
        df = dd.read_parquet(target, storage_options=options)
        return df.map_partitions(_within_fields, cfg.limits, meta=df._meta)


class CsvBlocks(NamedTuple):
    """A CSV ``data.source`` cut into blocks of about :data:`BLOCK_SIZE` bytes, not yet read."""

    header: bytes
    # Each a task reading its bytes; the first starts with the header line, the others need it in
    # front to be parsed.
    blocks: list[Delayed]


def csv_blocks(cfg: DataConfig, *, url: str | None = None) -> CsvBlocks:
    """The blocks of a CSV ``data.source``, once it has passed the pandas engine's ``data.limits`` guard.

    The file is first read through the guard (bytes, header fields, field length), with its
    messages, in 1 MiB of memory; that read also finds where the blocks start, after line ends
    outside quotes (so a text field's line breaks stay in one block). Its rows are counted by
    ingest once the blocks are written.
    """
    opened = url or cfg.source
    target, options = io.storage_options(opened)
    with _reading(cfg, url):
        ranges = io.scan_csv(opened, cfg.limits, cfg.csv, block_bytes=BLOCK_SIZE)
        # The file system and an absolute path: a worker of an external cluster runs in a folder of its own.
        filesystem, path = fsspec.core.url_to_fs(target, **options)
        with filesystem.open(path, "rb") as file:
            header = file.readline()
    read = delayed(_read_range, pure=True)
    return CsvBlocks(header, [read(filesystem, path, start, end) for start, end in ranges])


def _read_range(filesystem: fsspec.AbstractFileSystem, path: str, start: int, end: int) -> bytes:
    # On a worker: one block's bytes.
    data: bytes = filesystem.read_block(path, start, end - start)
    return data


@contextmanager
def _reading(cfg: DataConfig, url: str | None) -> Iterator[None]:
    # What opening or checking data.source can meet, as one line naming it without credentials.
    shown = redact_url(cfg.source)
    try:
        yield
    except io.LimitExceeded as exc:
        raise DataError(f"{shown}: {exc}") from None
    except FileNotFoundError:
        raise DataError(f"{shown}: file not found (data.source in params.yaml)") from None
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise DataError(scrub(f"{shown}: cannot be read: {exc}", secrets_of(url or cfg.source))) from None


def _footers(target: str, options: dict[str, Any]) -> Iterator[Any]:
    # Local files by path (their size is checked first); a remote one open at a time.
    local = io.local_path(target)
    if local is not None:
        folder = Path(local)
        yield from (sorted(str(p) for p in folder.glob("*.parquet")) if folder.is_dir() else [local])
        return
    with fsspec.open(target, "rb", **options) as file:
        yield file


def _within_fields(part: pd.DataFrame, limits: DataLimits) -> pd.DataFrame:
    io.check_fields(part, limits)
    return part


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
    with replacing(path) as temporary:
        # Object columns hold text (conveyor.contract.conform): Dask cannot infer their type from its meta.
        text = {name: "str" for name, dtype in df.dtypes.items() if pd.api.types.is_object_dtype(dtype)}
        schema = pa.Schema.from_pandas(df._meta.astype(text), preserve_index=False)
        compute(
            client,
            df.to_parquet(str(temporary), write_index=False, schema=schema, name_function=part_name, compute=False),
        )


def part_name(index: int) -> str:
    """The file name of a table's ``index``-th partition.

    Zero-padded, so that the order of the names is the order of the partitions for every reader:
    pandas and pyarrow list a folder by name (``part.10`` before ``part.2``), Dask by number.
    """
    return f"part.{index:06d}.parquet"


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary folder beside ``path`` to write a table's files into, put in place of ``path`` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        yield temporary
        _remove(target)
        os.replace(temporary, target)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
