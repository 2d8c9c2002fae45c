"""ingest with ``engine: dask``: ``data.source`` read in blocks and written as a partitioned Parquet folder.

A SQL source is read by ranges of ``data.range_column``: one bounded query per partition, each
written as one Parquet file before the next is read, so the stage holds one range at a time.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections.abc import Mapping
from decimal import Decimal
from io import BytesIO
from pathlib import Path
from typing import Any, NamedTuple

import dask.dataframe as dd
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy
from dask import delayed
from distributed import Client

from conveyor import io
from conveyor.artifacts import IngestReport
from conveyor.config import Config, CsvFormat, DataConfig
from conveyor.engine import cluster, tables
from conveyor.errors import DataError
from conveyor.urls import redact_url, scrub, secrets_of

__all__ = [
    "SQL_PARTITION_ROWS",
    "BlockColumn",
    "Range",
    "plan_ranges",
    "run",
    "summarize",
    "table_hash",
    "write_csv_blocks",
    "write_sql_ranges",
]

# Rows a range query returns on average: about the rows of one 64 MiB CSV block.
SQL_PARTITION_ROWS = 1_000_000
# A range: its lower bound (inclusive) and upper bound (exclusive); None is unbounded.
Range = tuple[int | float | None, int | float | None]
# The query's result, named in the queries wrapped around it.
_SOURCE = "conveyor_source"


def _wrapped(cfg: DataConfig) -> str:
    # data.query as a subquery the range queries filter (a trailing semicolon would end the statement).
    # The alias without AS: Oracle refuses AS before a table alias, and the others accept its absence.
    return f"({str(cfg.query).strip().rstrip(';')}) {_SOURCE}"


def _numeric(value: object) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def plan_ranges(
    connection: sqlalchemy.Connection, cfg: DataConfig, *, rows_per_partition: int = SQL_PARTITION_ROWS
) -> tuple[int, list[Range]]:
    """The rows of ``data.query`` and the ranges of ``data.range_column`` to read it in, about ``rows_per_partition`` rows each.

    The ranges split the column's span evenly and together cover every value (the first has no
    lower bound, the last no upper one). Stops with a :class:`DataError` naming ``data.range_column``
    when it is not a column of the result, has missing values (no range would read those rows) or
    is not numeric, and with the pandas engine's ``data.limits`` message when the result has too
    many rows or columns.
    """
    column = str(cfg.range_column)
    shown = redact_url(cfg.source)
    quoted = connection.dialect.identifier_preparer.quote(column)
    inner = _wrapped(cfg)
    columns = pd.read_sql_query(sqlalchemy.text(f"SELECT * FROM {inner} WHERE 1 = 0"), connection)
    io.check_shape(columns, rows=0, limits=cfg.limits)
    if column not in columns.columns:
        raise DataError(
            f"data.range_column: {column!r} is not a column of data.query's result ({shown}); "
            f"it has {[str(c) for c in columns.columns[:20]]}"
        )
    statistics = sqlalchemy.text(f"SELECT COUNT(*), COUNT({quoted}), MIN({quoted}), MAX({quoted}) FROM {inner}")
    total, present, low, high = connection.execute(statistics).one()
    io.check_shape(None, rows=int(total), limits=cfg.limits)
    if present < total:
        raise DataError(
            f"data.range_column: {column!r} has {total - present} missing value(s) in data.query's result "
            f"({shown}); no range would read those rows: name a column without missing values"
        )
    if total == 0:
        return 0, [(None, None)]
    if not (_numeric(low) and _numeric(high)):
        raise DataError(
            f"data.range_column: {column!r} holds {type(low).__name__} values ({low!r} … {high!r}) in data.query's "
            f"result ({shown}); expected numbers (an integer key, say) to read it by ranges"
        )
    parts = max(1, math.ceil(total / rows_per_partition))
    cuts: list[int | float]
    if isinstance(low, int) and isinstance(high, int):
        parts = min(parts, high - low + 1)
        cuts = [low + (high - low + 1) * i // parts for i in range(1, parts)]
    else:
        span = float(high) - float(low)
        cuts = sorted({float(low) + span * i / parts for i in range(1, parts)})
    return int(total), list(zip([None, *cuts], [*cuts, None], strict=True))


def _range_query(cfg: DataConfig, quoted: str, bounds: Range) -> tuple[sqlalchemy.TextClause, dict[str, Any]]:
    low, high = bounds
    conditions = [f"{quoted} >= :low"] if low is not None else []
    conditions += [f"{quoted} < :high"] if high is not None else []
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    inner = _wrapped(cfg)
    # Ordered by the column, so the rows' order does not depend on the database's plan.
    text = sqlalchemy.text(f"SELECT * FROM {inner}{where} ORDER BY {quoted}")
    return text, {name: value for name, value in (("low", low), ("high", high)) if value is not None}


def write_sql_ranges(
    cfg: DataConfig,
    out: Path,
    *,
    environ: Mapping[str, str] | None = None,
    rows_per_partition: int = SQL_PARTITION_ROWS,
) -> int:
    """Read ``data.query`` range by range (:func:`plan_ranges`) into the Parquet folder ``out``; the rows written.

    Each non-empty range becomes one file, written before the next range is read. Once all are
    written, files whose column types differ are cast to the types the whole table has (a column
    with no value in one range, whole numbers in one and fractions in another), as the pandas
    engine's one read gives them.
    """
    url = cfg.url(environ=environ)
    with io.sql_connection(cfg.source, url=url) as connection, tables.replacing(out) as folder:
        total, ranges = plan_ranges(connection, cfg, rows_per_partition=rows_per_partition)
        quoted = connection.dialect.identifier_preparer.quote(str(cfg.range_column))
        folder.mkdir()
        files: list[Path] = []
        rows = 0
        for bounds in ranges:
            text, params = _range_query(cfg, quoted, bounds)
            chunk = pd.read_sql_query(text, connection, params=params)
            if len(chunk) == 0 and (files or total):
                continue
            rows += len(chunk)
            io.check_shape(chunk, rows=rows, limits=cfg.limits)
            files.append(folder / tables.part_name(len(files)))
            chunk.to_parquet(files[-1], index=False)
            del chunk
        if rows != total:
            raise DataError(
                f"{redact_url(cfg.source)}: data.query returned {total} rows when counted and {rows} when read by "
                "ranges of data.range_column: the data changed while ingest read it; run ingest again"
            )
        _unify(files)
    return rows


# What a column holds in a block, as the pandas engine's one read of the file would settle it.
_NUMBER, _BOOL, _TEXT = "number", "bool", "text"
# What a block is read again with, for a column the whole file types otherwise: text as text; a
# column with no value in this block as objects (Arrow's null type, which takes any other type).
_AGAIN_AS = {_TEXT: "str", _BOOL: "object"}


class BlockColumn(NamedTuple):
    """One column of one CSV block as pandas read it: number, bool or text, and whether every value is missing."""

    kind: str
    empty: bool


def _kind(arrow_type: pa.DataType) -> str:
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type):
        return _NUMBER
    if pa.types.is_boolean(arrow_type):
        return _BOOL
    return _TEXT


def _write_block(
    block: bytes, header: bytes, path: str, csv_format: CsvFormat, dtypes: dict[str, str]
) -> dict[str, BlockColumn]:
    # On a worker: parse one block as the pandas engine parses the whole file, and write it.
    df = io.parse_csv(BytesIO(header + block), csv_format, dtype=dtypes or None)
    table = pa.Table.from_pandas(df, preserve_index=False)
    pq.write_table(table, path)
    return {
        str(name): BlockColumn(_kind(field.type), table.column(index).null_count == len(table))
        for index, (name, field) in enumerate(zip(table.column_names, table.schema, strict=True))
    }


def _read_again(blocks: list[dict[str, BlockColumn]]) -> dict[int, dict[str, str]]:
    """The blocks to read again, with the dtype of each column their first read typed otherwise than the whole file.

    A column is text when any block holds text in it, or numbers in one block and true/false in
    another (pandas keeps such a file's column as text); else it is what its non-empty blocks hold.
    """
    kinds: dict[str, set[str]] = {}
    for columns in blocks:
        for name, column in columns.items():
            kinds.setdefault(name, set()).update(() if column.empty else (column.kind,))
    whole = {
        name: _TEXT if _TEXT in seen or len(seen) > 1 else next(iter(seen), _NUMBER) for name, seen in kinds.items()
    }
    again: dict[int, dict[str, str]] = {}
    for index, columns in enumerate(blocks):
        dtypes = {
            name: _AGAIN_AS[whole[name]]
            for name, column in columns.items()
            if column.kind != whole[name] and whole[name] in _AGAIN_AS
        }
        if dtypes:
            again[index] = dtypes
    return again


def write_csv_blocks(client: Client, cfg: DataConfig, out: Path, *, url: str | None = None) -> None:
    """Read a CSV ``data.source`` block by block on the workers into the Parquet folder ``out``, with the types pandas gives the whole file.

    Each block is parsed with the pandas engine's options and written as one file. A column whose
    type only the whole file settles is then given that type: where it is text anywhere, the blocks
    that took it for numbers are read again with it as text (so ``007`` stays ``007``), and where one
    block has fractions or missing values, whole numbers are cast to float64 (:func:`_unify`).
    """
    source = tables.csv_blocks(cfg, url=url)
    if problem := io.header_problem(source.header, cfg.csv):
        raise DataError(f"{redact_url(cfg.source)}: {problem}")
    write = delayed(_write_block, pure=False)
    headers = [b"" if index == 0 else source.header for index in range(len(source.blocks))]
    with tables.replacing(out) as folder:
        folder.mkdir()
        # Absolute: a worker of an external cluster runs in a folder of its own.
        paths = [str((folder / tables.part_name(index)).absolute()) for index in range(len(source.blocks))]
        first = [write(*block, cfg.csv, {}) for block in zip(source.blocks, headers, paths, strict=True)]
        (blocks,) = cluster.compute(client, first)
        if again := _read_again(blocks):
            cluster.compute(
                client, [write(source.blocks[i], headers[i], paths[i], cfg.csv, d) for i, d in again.items()]
            )
        _unify([Path(path) for path in paths])


def _unify(files: list[Path]) -> None:
    schemas = [pq.read_schema(path).remove_metadata() for path in files]
    # The types pandas gives a column holding both kinds of values (float64 for int64 and float64;
    # the other type for a column with no value in a range) are Arrow's permissive promotion.
    common = pa.unify_schemas(schemas, promote_options="permissive")
    for path, schema in zip(files, schemas, strict=True):
        if not schema.equals(common):
            temporary = path.with_suffix(".tmp")
            pq.write_table(pq.read_table(path).cast(common), temporary)
            shutil.move(temporary, path)


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
    data = cfg.data
    shown = redact_url(data.source)
    with cluster.connect(cfg.dask, stage="ingest") as client:
        if data.is_sql:
            write_sql_ranges(data, out)
        else:
            url = data.url()
            try:
                if tables.source_format(data) == "csv":
                    write_csv_blocks(client, data, out, url=url)
                else:
                    tables.write_table(client, tables.read_source(data, url=url), out)
            except io.LimitExceeded as exc:
                raise DataError(f"{shown}: {exc}") from None
            except UnicodeDecodeError:
                raise DataError(io.not_encoded(shown, data.csv.encoding)) from None
            except (OSError, ValueError, pa.ArrowException) as exc:
                # What a worker met reading a block (a malformed line, a server's refusal): one line, no credentials.
                message = " ".join(str(exc).split()) or type(exc).__name__
                raise DataError(scrub(f"{shown}: cannot be read: {message}", secrets_of(url))) from None
        summary = summarize(client, tables.read_table(out), source=data.source)
    try:
        # A CSV's rows are known once its blocks are read.
        io.check_shape(None, rows=summary.rows, limits=data.limits)
    except io.LimitExceeded as exc:
        shutil.rmtree(out, ignore_errors=True)
        raise DataError(f"{shown}: {exc}") from None
    io.write_artifact(summary, report)
    return summary
