"""The one module that reads and writes datasets, models, contracts and reports.

Models are stored with skops, which loads only the types the estimator registry trusts
(:func:`conveyor.model.registry.trusted_types`) and refuses anything else, instead of pickle,
which would run whatever code a tampered file carries.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io as bytes_io
import json
import math
import os
import re
import secrets
import stat
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, TypeVar, cast
from urllib.parse import unquote

import yaml
from pydantic import BaseModel, ValidationError

from conveyor.config import CsvFormat, DataLimits
from conveyor.contract import Contract, contract_to_dict, parse_contract
from conveyor.errors import ArtifactError, ContractError, DataError, describe_errors, yaml_problem
from conveyor.model.registry import trusted_types
from conveyor.urls import redact_url, scrub, secrets_of

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import sqlalchemy
    from numpy.typing import NDArray
    from sklearn.pipeline import Pipeline

__all__ = [
    "DISK_ERRNOS",
    "PLOT_PLACEHOLDER",
    "LimitExceeded",
    "atomic_path",
    "check_fields",
    "check_model_archive",
    "check_parquet",
    "check_shape",
    "disk_error",
    "draw_order",
    "file_digest",
    "file_sha256",
    "header_problem",
    "load_model",
    "local_path",
    "model_bytes",
    "model_from_bytes",
    "move_into_place",
    "not_encoded",
    "parse_csv",
    "parse_json",
    "positions_in",
    "read_artifact",
    "read_bytes",
    "read_contract",
    "read_json",
    "read_sample",
    "read_source",
    "read_table",
    "remove_others",
    "sample_positions",
    "save_model",
    "scan_csv",
    "sniff_csv",
    "sql_connection",
    "storage_options",
    "table_hash",
    "url_version",
    "write_artifact",
    "write_bytes",
    "write_contract",
    "write_json",
    "write_plot_placeholder",
    "write_table",
    "write_text",
]

ArtifactT = TypeVar("ArtifactT", bound=BaseModel)
# Said wherever a file a stage wrote for another is missing or corrupt.
REBUILD = "run `dvc repro` to rebuild it"


# --- datasets -------------------------------------------------------------------------------


def read_source(
    source: str,
    *,
    query: str | None = None,
    sql: bool = False,
    limits: DataLimits | None = None,
    csv_format: CsvFormat | None = None,
    text_columns: Sequence[str] = (),
    url: str | None = None,
    named_by: str = "data.source in params.yaml",
) -> pd.DataFrame:
    """Read the raw table from a local CSV/Parquet path, an http(s) or fsspec URL, or a SQL database.

    ``url`` is what is opened when it differs from ``source``: the same place with credentials
    (``data.source_env``); messages only ever name ``source``, without credentials. Reading stops
    at ``limits`` (:class:`~conveyor.config.DataLimits`), so memory stays bounded whatever the
    source holds. A CSV is read as ``csv_format`` says (``data.csv``; default: comma, decimal
    point, UTF-8), with ``text_columns`` kept as text where present (ids such as ``007``). Unreadable input (empty, malformed, not UTF-8, unknown format, nested columns,
    over a limit) raises :class:`DataError` naming the source and the problem; a missing, folder or
    special file also names ``named_by``, where the path came from (a key or a command-line flag).
    """
    import pandas as pd
    import pyarrow as pa

    limits = limits or DataLimits()
    csv_format = csv_format or CsvFormat()
    shown = redact_url(source)
    opened = url or source
    hidden = secrets_of(opened)
    if sql:
        return _read_sql(source, opened, query or "", limits)
    local = local_path(source)
    if local is not None:
        require_regular_file(local, shown=shown, named_by=named_by)
        opened = local
    suffix = Path(source.split("?", 1)[0]).suffix.lower()
    try:
        if suffix in {".parquet", ".pq"}:
            return _read_parquet(opened, limits)
        if suffix in CSV_SUFFIXES or not suffix:
            return _read_csv(opened, limits, csv_format, gzipped=suffix == ".gz", shown=shown, text=text_columns)
    except LimitExceeded as exc:
        raise DataError(f"{shown}: {exc}") from None
    except FileNotFoundError:
        raise DataError(f"{shown}: file not found") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{shown}: the file is empty (no header, no rows)") from None
    except pd.errors.ParserError as exc:
        raise DataError(scrub(f"{shown}: malformed CSV: {exc}".strip(), hidden)) from None
    except UnicodeDecodeError:
        bad = _first_bad_byte(local, limits, csv_format.encoding) if local is not None and suffix != ".gz" else ""
        raise DataError(not_encoded(shown, csv_format.encoding, bad)) from None
    except csv.Error as exc:
        raise DataError(scrub(f"{shown}: malformed CSV: {exc}", hidden)) from None
    except MemoryError:
        raise DataError(
            f"{shown}: ran out of memory while reading; lower data.limits.max_bytes (now {limits.max_bytes})"
        ) from None
    except (OSError, ValueError, EOFError, pa.ArrowException) as exc:
        # Anything else a reader or a server says (HTTP 404, a corrupt gzip or Parquet file,
        # botocore's access denied): one line, credentials scrubbed from it.
        raise DataError(scrub(f"{shown}: cannot be read: {_one_line(exc)}", hidden)) from None
    raise DataError(f"{shown}: unknown format {suffix!r}; expected .csv or .parquet, or a SQLAlchemy URL")


def file_digest(path: str) -> tuple[int, str]:
    """The size and SHA-256 of a regular file (anything else is refused first), read in chunks."""
    info = require_regular_file(path)
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return info.st_size, digest.hexdigest()


# What a server or store says identifies a version of an object, as fsspec or HTTP names it.
VERSION_KEYS = ("etag", "last-modified", "lastmodified", "last_modified", "size", "content-length", "version_id")


def url_version(url: str, *, shown: str, timeout_s: float = 60.0) -> dict[str, str]:
    """The validators of a URL's current content (``ETag``, ``Last-Modified``, size), without reading it.

    http(s) asks with ``HEAD``; any other URL asks fsspec for the object's ``info``. Failures are
    a :class:`DataError` naming ``shown``, with any credential of ``url`` scrubbed.
    """
    hidden = secrets_of(url)
    scheme, _, rest = url.partition("://")
    user_info, at, address = rest.rpartition("@")
    try:
        if scheme in {"http", "https"}:
            import base64
            import urllib.request

            request = urllib.request.Request(f"{scheme}://{address}", method="HEAD")
            if at:
                user, _, password = user_info.partition(":")
                token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()
                request.add_unredirected_header("Authorization", f"Basic {token}")
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                info: Mapping[str, Any] = {key.lower(): value for key, value in response.headers.items()}
        else:
            import fsspec

            target, options = storage_options(url)
            fs, path = fsspec.core.url_to_fs(target, **options)
            info = {str(key).lower(): value for key, value in fs.info(path).items()}
    except (OSError, ValueError) as exc:
        raise DataError(scrub(f"{shown}: cannot be read: {_one_line(exc)}", hidden)) from None
    return {key: str(info[key]) for key in VERSION_KEYS if info.get(key) not in (None, "")}


class LimitExceeded(Exception):
    """Reading crossed one of ``data.limits``; the message names the key and its value."""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def local_path(source: str) -> str | None:
    """``source`` as a local path (a ``file://`` URL included), or None for a remote URL."""
    if source.startswith("file://"):
        return source.removeprefix("file://") or "/"
    return None if "://" in source else source


def require_regular_file(
    path: str, *, shown: str | None = None, named_by: str = "data.source in params.yaml"
) -> os.stat_result:
    """The ``stat`` of ``path``, a regular file (symlinks followed); anything else is a :class:`DataError`.

    A FIFO, device or socket would block a reader (and a hash of it) forever with no message.
    ``named_by`` is where the path came from (a key or a command-line flag).
    """
    shown = shown or path
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise DataError(f"{shown}: file not found ({named_by})") from None
    except OSError as exc:
        raise DataError(f"{shown}: cannot be read: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise DataError(f"{shown}: is a folder; {named_by} must name a CSV or Parquet file, or a URL")
    if not stat.S_ISREG(info.st_mode):
        raise DataError(f"{shown}: not a regular file (a pipe, device or socket); {named_by} must name a file or a URL")
    return info


@contextmanager
def open_source(url: str, *, timeout_s: float = 60.0) -> Iterator[BinaryIO]:
    """A binary stream of a local file, an http(s) URL or any fsspec URL (``s3://…``).

    An http(s) URL's user info becomes a basic-auth header that is not sent on to another host
    when the server redirects; an ``s3://KEY:SECRET@bucket/…`` URL's key and secret become
    s3fs options. Neither stays in the URL, so neither can reach a message.
    """
    local = local_path(url)
    if local is not None:
        with open(local, "rb") as file:
            yield file
        return
    scheme, _, rest = url.partition("://")
    user_info, at, address = rest.rpartition("@")
    user, _, password = user_info.partition(":")
    if scheme in {"http", "https"}:
        import base64
        import urllib.request

        request = urllib.request.Request(f"{scheme}://{address}")
        if at:
            token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()
            request.add_unredirected_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            yield response
        return
    import fsspec

    target, options = storage_options(url)
    with fsspec.open(target, "rb", **options) as file:
        yield file


def storage_options(url: str) -> tuple[str, dict[str, Any]]:
    """An fsspec URL without its user info, and the options that carry it: an s3 key and secret,
    or an http(s) user and password as basic auth (for readers that take fsspec options, as Dask's do)."""
    scheme, _, rest = url.partition("://")
    user_info, at, address = rest.rpartition("@")
    if not at:
        return url, {}
    user, _, password = user_info.partition(":")
    if scheme in {"s3", "s3a"}:
        return f"{scheme}://{address}", {"key": unquote(user), "secret": unquote(password)}
    if scheme in {"http", "https"}:
        import aiohttp

        return f"{scheme}://{address}", {"client_kwargs": {"auth": aiohttp.BasicAuth(unquote(user), unquote(password))}}
    return f"{scheme}://{address}", {}


class _Guard(bytes_io.RawIOBase):
    """A byte stream that stops at ``max_bytes``; for CSV, it also reads its structure as it goes.

    It tracks quoting (``"``, doubled to escape) to count the header's fields and the length of
    every field, so a million-column header or a 2 GiB field stops after reading just past the
    limit, before pandas has allocated anything for it. Given ``block_bytes``, it also records in
    ``cuts`` where blocks of about that many bytes may start: after a line end outside quotes, so
    that no block starts inside a quoted field that holds a line break.
    """

    def __init__(
        self,
        inner: BinaryIO,
        limits: DataLimits,
        *,
        csv_structure: bool,
        delimiter: str = ",",
        block_bytes: int | None = None,
    ) -> None:
        self._inner = inner
        # One ASCII byte (data.csv.delimiter is validated so), the same in every encoding data.csv allows.
        self._delimiter = delimiter.encode("ascii")
        self._field_ends = re.compile(b"[" + re.escape(self._delimiter) + b"\n]")
        self._limits = limits
        self._csv = csv_structure
        self._read = 0
        self._quoted = False
        self._field = 0
        self._header_fields = 1
        self._in_header = True
        self._block_bytes = block_bytes
        self.cuts: list[int] = []

    def readable(self) -> bool:
        return True

    @property
    def bytes_read(self) -> int:
        """The bytes read so far."""
        return self._read

    def readinto(self, buffer: Any) -> int:
        chunk = self._inner.read(min(len(buffer), 1 << 20))
        self._read += len(chunk)
        if self._read > self._limits.max_bytes:
            raise LimitExceeded(f"more than {self._limits.max_bytes} bytes (data.limits.max_bytes)")
        if self._csv:
            self._scan(chunk)
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def _scan(self, chunk: bytes) -> None:
        limits = self._limits
        offset = self._read - len(chunk)
        for index, part in enumerate(chunk.split(b'"')):
            if index:
                self._quoted = not self._quoted
                self._field += 1
                offset += 1
            if self._quoted:
                self._field += len(part)
            else:
                self._scan_unquoted(part)
                if self._block_bytes is not None:
                    self._cut(part, offset, self._block_bytes)
            offset += len(part)
            if self._field > limits.max_field_bytes:
                raise LimitExceeded(f"a field longer than {limits.max_field_bytes} bytes (data.limits.max_field_bytes)")

    def _cut(self, part: bytes, offset: int, block_bytes: int) -> None:
        # Each cut: just after the first line end outside quotes at least block_bytes past the last.
        while (target := (self.cuts[-1] if self.cuts else 0) + block_bytes) < offset + len(part):
            end = part.find(b"\n", max(0, target - offset))
            if end < 0:
                return
            self.cuts.append(offset + end + 1)

    def _scan_unquoted(self, part: bytes) -> None:
        limits = self._limits
        if self._in_header:
            header, newline, _ = part.partition(b"\n")
            self._header_fields += header.count(self._delimiter)
            if self._header_fields > limits.max_columns:
                raise LimitExceeded(f"more than {limits.max_columns} columns (data.limits.max_columns)")
            self._in_header = not newline
        last = max(part.rfind(self._delimiter), part.rfind(b"\n"))
        if last < 0:
            self._field += len(part)
            return
        first = min(i for i in (part.find(self._delimiter), part.find(b"\n")) if i >= 0)
        longest = self._field + first
        if last - first > limits.max_field_bytes:  # only then can a field in between be too long
            longest = max(longest, *map(len, self._field_ends.split(part[first + 1 : last])))
        if longest > limits.max_field_bytes:
            raise LimitExceeded(f"a field longer than {limits.max_field_bytes} bytes (data.limits.max_field_bytes)")
        self._field = len(part) - last - 1


# The suffixes read as delimited text (data.csv says how); a source without a suffix is too.
CSV_SUFFIXES = frozenset({".csv", ".tsv", ".tab", ".txt", ".gz"})
# Delimiters a one-column header may reveal when data.csv.delimiter is another one.
OTHER_DELIMITERS = (";", "\t", "|", ",")


def parse_csv(data: BinaryIO, csv_format: CsvFormat, **options: Any) -> pd.DataFrame:
    """How every engine parses a CSV source (the Dask engine block by block): one parse, one set of types.

    ``options`` go to ``pandas.read_csv`` (``nrows``, ``dtype``). A row with more fields than the
    header is a :class:`pandas.errors.ParserError`: pandas would otherwise take the first
    fields of every row as an index, shifting each value into the next column's name, or with
    ``index_col=False`` drop the fields past the header. An empty field after the last column
    (a delimiter ending each row, as some exports write) is dropped.
    """
    import warnings

    import pandas as pd

    written_as: dict[str, Any] = {
        "sep": csv_format.delimiter,
        "decimal": csv_format.decimal,
        "encoding": csv_format.encoding,
        "na_values": list(csv_format.missing) or None,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        try:
            df: pd.DataFrame = pd.read_csv(
                data, **written_as, encoding_errors="strict", on_bad_lines="error", index_col=False, **options
            )
        except pd.errors.ParserWarning:
            raise pd.errors.ParserError(
                "some rows have more fields than the header names columns; a value past the last column "
                "would be lost (name every column in the header)"
            ) from None
    return df


def header_problem(header: bytes, csv_format: CsvFormat) -> str:
    """What is wrong with a CSV's ``header`` line that pandas would read without a word; empty when nothing is.

    - One column whose name holds another delimiter: read with the wrong delimiter, a ``;``- or
      tab-separated file is one column named after its whole header line, and every later message
      (rows with more fields than the header where its numbers have decimal commas, a missing
      target, columns the contract lacks) would point away from the cause.
    - A name given twice: pandas renames the second ``a`` to ``a.1``, which the contract, the
      service's fields and the monitor would then know it by.

    Checked before the rows are parsed, by both engines.
    """
    try:
        line = header.split(b"\n", 1)[0].decode(csv_format.encoding).removeprefix("\ufeff").rstrip("\r")
    except UnicodeDecodeError:  # parsing the file says where
        return ""
    names = next(csv.reader([line], delimiter=csv_format.delimiter), [])
    found = next((d for d in OTHER_DELIMITERS if d != csv_format.delimiter and d in names[0]), None) if names else None
    if len(names) == 1 and found is not None:
        return (
            f"one column, {_shorten(names[0])!r}, whose name holds {found!r}: its fields look separated by {found!r}; "
            f"set data.csv.delimiter: {json.dumps(found)} in params.yaml (conveyor init detects it)"
        )
    repeated = sorted({name for name in names if name and names.count(name) > 1})
    if repeated:
        return f"the header names column(s) {repeated} more than once; give each column its own name"
    return ""


def not_encoded(shown: str, encoding: str, where: str = "") -> str:
    """The message for a CSV source that is not text in ``encoding`` (``where``: the first bad byte, when known)."""
    import codecs

    name = "UTF-8" if codecs.lookup(encoding).name == "utf-8" else encoding
    return (
        f"{shown}: not {name} text{where}; re-save it as {name}, or name its encoding in data.csv.encoding "
        "(a Windows export in a Western language is often cp1252)"
    )


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def sniff_csv(url: str, *, encoding: str = "utf-8", sample_bytes: int = 1 << 16) -> CsvFormat:
    """The delimiter and decimal mark of a CSV source, from its first ``sample_bytes`` (whole lines).

    The delimiter is the candidate (``,``, ``;``, tab, ``|``) found outside quotes the same number
    of times, at least once, on every sampled line, the most frequent first (Python's
    ``csv.Sniffer`` guesses letters and spaces on real tables). The decimal mark is a comma when
    the delimiter is not one and numbers in the sample are written ``1,5`` but never ``1.5``.
    Anything else, or a file that is not text, gives the defaults, so reading it reports the problem.
    """
    with open_source(url) as raw:
        head = raw.read(sample_bytes)
    if url.split("?", 1)[0].lower().endswith(".gz"):
        import zlib

        # The start of the stream decompresses alone (GzipFile would refuse a stream cut short).
        with suppress(zlib.error):
            head = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16).decompress(head, sample_bytes)
    text = head.decode(encoding, errors="replace")
    if len(head) == sample_bytes and "\n" in text:
        text = text[: text.rfind("\n")]  # the last line may be cut
    # Quoted fields hold anything, line breaks included: out of the count (doubled quotes too).
    lines = [line for line in re.sub(r'"[^"]*"', "", text).splitlines() if line.strip()][:200]
    delimiter = ","
    for candidate in sorted(OTHER_DELIMITERS, key=lambda d: -sum(line.count(d) for line in lines)):
        if lines and len({line.count(candidate) for line in lines}) == 1 and lines[0].count(candidate):
            delimiter = candidate
            break
    decimal: Literal[".", ","] = "."
    if delimiter != ",":
        fields = [field.strip() for line in lines[1:] for field in line.split(delimiter)]
        comma = any(re.fullmatch(r"[+-]?\d*,\d+", field) for field in fields)
        point = any(re.fullmatch(r"[+-]?\d*\.\d+", field) for field in fields)
        decimal = "," if comma and not point else "."
    return CsvFormat(delimiter=delimiter, decimal=decimal, encoding=encoding)


def scan_csv(url: str, limits: DataLimits, csv_format: CsvFormat, *, block_bytes: int) -> list[tuple[int, int]]:
    """Read a CSV source through the guard :func:`read_source` reads it through; the byte ranges of its blocks.

    For readers that split the file into blocks (Dask): the same ``data.limits`` checks (bytes,
    header fields, field length) with the same messages, raised as :class:`LimitExceeded`, in
    1 MiB of memory, before any block is parsed. The blocks (start, end) are about ``block_bytes``
    each and start after a line end outside quotes, so a quoted field's line breaks never split a
    row; the first holds the header.
    """
    with open_source(url) as raw:
        guard = _Guard(raw, limits, csv_structure=True, delimiter=csv_format.delimiter, block_bytes=block_bytes)
        buffer = bytearray(1 << 20)
        while guard.readinto(buffer):
            pass
    ends = [cut for cut in guard.cuts if cut < guard.bytes_read]
    return list(zip([0, *ends], [*ends, guard.bytes_read], strict=True))


def _read_csv(
    url: str, limits: DataLimits, csv_format: CsvFormat, *, gzipped: bool, shown: str, text: Sequence[str]
) -> pd.DataFrame:
    import gzip

    with open_source(url) as raw:
        stream: BinaryIO = raw
        if gzipped:
            stream = cast(BinaryIO, gzip.GzipFile(fileobj=raw, mode="rb"))
        guard = _Guard(stream, limits, csv_structure=True, delimiter=csv_format.delimiter)
        guarded = bytes_io.BufferedReader(guard, buffer_size=1 << 20)
        if problem := header_problem(guarded.peek(1 << 20), csv_format):
            raise DataError(f"{shown}: {problem}")
        df = parse_csv(guarded, csv_format, nrows=limits.max_rows + 1, dtype=dict.fromkeys(text, str) or None)
    check_shape(df, rows=len(df), limits=limits)
    return df


def _read_parquet(url: str, limits: DataLimits) -> pd.DataFrame:
    import pandas as pd

    local = local_path(url)
    if local is not None:
        data: str | bytes_io.BytesIO = local
    else:
        with open_source(url) as raw:
            data = bytes_io.BytesIO(_Guard(raw, limits, csv_structure=False).readall())
    check_parquet([data], limits)
    if isinstance(data, bytes_io.BytesIO):
        data.seek(0)
    df = pd.read_parquet(data)
    check_fields(df, limits)
    return df


def check_parquet(files: Iterable[str | BinaryIO], limits: DataLimits) -> None:
    """Check the footers of the Parquet files of one table against ``data.limits``; :class:`LimitExceeded` if over.

    A local file (a path) is first refused when the files' sizes add up to more than
    ``max_bytes``; then each file's columns (and nested columns), then the bytes unpacked and the
    rows of all of them together. Only the footers are read.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    unpacked = rows = size = 0
    for data in files:
        if isinstance(data, str):
            size += os.stat(data).st_size
            if size > limits.max_bytes:
                raise LimitExceeded(f"more than {limits.max_bytes} bytes (data.limits.max_bytes)")
        # The footer is read before anything else: a schema of a million columns is refused by the
        # Thrift reader's own container limit rather than parsed.
        parquet = pq.ParquetFile(data, thrift_container_size_limit=limits.max_columns * 4 + 1000)
        schema = parquet.schema_arrow
        if len(schema) > limits.max_columns:
            raise LimitExceeded(f"{len(schema)} columns, more than {limits.max_columns} (data.limits.max_columns)")
        nested = [f"{field.name!r} ({field.type})" for field in schema if pa.types.is_nested(field.type)]
        if nested:
            raise LimitExceeded(
                f"nested column(s) {', '.join(nested)}; ingest takes flat columns only (flatten them first)"
            )
        metadata = parquet.metadata
        unpacked += sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
        rows += metadata.num_rows
    if unpacked > limits.max_bytes:
        raise LimitExceeded(f"{unpacked} bytes unpacked, more than {limits.max_bytes} (data.limits.max_bytes)")
    check_shape(None, rows=rows, limits=limits)


def check_fields(df: pd.DataFrame, limits: DataLimits) -> None:
    """:class:`LimitExceeded` when a text or bytes value of ``df`` is longer than ``data.limits.max_field_bytes``."""
    import numpy as np
    import pandas as pd

    for name in df.columns:
        column = df[name]
        if column.dtype == object or pd.api.types.is_string_dtype(column.dtype):
            longest = column.map(_size, na_action="ignore").max()
            # A numpy integer when no value is missing, a float (NaN for none at all) when some are.
            if isinstance(longest, int | float | np.number) and longest > limits.max_field_bytes:
                raise LimitExceeded(
                    f"column {name!r} holds a value longer than {limits.max_field_bytes} bytes (data.limits.max_field_bytes)"
                )


def _size(value: object) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8", errors="replace"))
    if isinstance(value, bytes):
        return len(value)
    return 0


def check_shape(df: pd.DataFrame | None, *, rows: int, limits: DataLimits) -> None:
    """:class:`LimitExceeded` when ``rows`` or the columns of ``df`` (when given) are over ``data.limits``."""
    if rows > limits.max_rows:
        raise LimitExceeded(f"more than {limits.max_rows} rows (data.limits.max_rows)")
    if df is not None and len(df.columns) > limits.max_columns:
        raise LimitExceeded(f"more than {limits.max_columns} columns (data.limits.max_columns)")


def _first_bad_byte(path: str, limits: DataLimits, encoding: str) -> str:
    # The decoder's offset is relative to the parser's chunk; the line number is what people need.
    with open(path, "rb") as file:
        data = file.read(limits.max_bytes)
    try:
        data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return f" (byte {data[exc.start]:#04x} on line {line})"
    return ""


def _read_sql(source: str, url: str, query: str, limits: DataLimits) -> pd.DataFrame:
    import pandas as pd
    import sqlalchemy

    with sql_connection(source, url=url) as connection:
        # In chunks, so that a query returning more than data.limits allow stops early.
        chunks: list[pd.DataFrame] = []
        rows = 0
        for chunk in pd.read_sql_query(sqlalchemy.text(query), connection, chunksize=SQL_CHUNK_ROWS):
            rows += len(chunk)
            check_shape(chunk, rows=rows, limits=limits)
            chunks.append(chunk)
        if not chunks:
            return pd.read_sql_query(sqlalchemy.text(query), connection)
        return chunks[0] if len(chunks) == 1 else pd.concat(chunks, ignore_index=True)


@contextmanager
def sql_connection(source: str, *, url: str | None = None) -> Iterator[sqlalchemy.Connection]:
    """A connection to the database at ``url`` (default ``source``), for reading ``data.query``.

    What goes wrong in the block is one :class:`DataError` naming ``source`` without credentials:
    an unusable URL or driver, a failed query (the database's own first line), a
    :class:`LimitExceeded`; any secret of ``url`` is scrubbed from it.
    """
    import pandas as pd
    import sqlalchemy

    shown = redact_url(source)
    hidden = secrets_of(url or source)
    try:
        engine = sqlalchemy.create_engine(url or source)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError) as exc:
        # A malformed URL or a database driver that is not installed.
        raise DataError(scrub(f"{shown}: cannot use this SQLAlchemy URL: {_one_line(exc)}", hidden)) from None
    try:
        with engine.connect() as connection:
            yield connection
    except LimitExceeded as exc:
        raise DataError(f"{shown}: {exc}") from None
    except (sqlalchemy.exc.SQLAlchemyError, pd.errors.DatabaseError) as exc:
        # pandas wraps errors of the query itself; SQLAlchemy's (and the driver's) say what went wrong.
        cause = exc.__cause__ if isinstance(exc.__cause__, sqlalchemy.exc.SQLAlchemyError) else exc
        reason = cause.orig if isinstance(cause, sqlalchemy.exc.DBAPIError) else cause
        first_line = (str(reason).strip().splitlines() or [""])[0]
        raise DataError(scrub(f"{shown}: query failed: {type(reason).__name__}: {first_line}", hidden)) from None
    finally:
        engine.dispose()


SQL_CHUNK_ROWS = 100_000


# --- writing: every output appears whole or not at all ----------------------------------------


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed onto ``path`` only if the block succeeds.

    A stage killed mid-write (``kill -9``, a full disk) then leaves the previous file or none,
    never a torn one that the next stage would read. The temporary name is hidden and unique to
    this write (process id and a random part), so concurrent writers of one file never touch each
    other's; a leftover whose process has died is removed by the next write of the same file.
    A file system that refuses the write (full, read-only, over quota) is an :class:`ArtifactError`
    naming ``path``, and the previous file stays.
    """

    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise disk_error(target.parent, exc) from None
    _remove_dead_writers_temporaries(target)
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        yield temporary
        os.replace(temporary, target)
    except OSError as exc:
        if exc.errno not in DISK_ERRNOS:
            raise
        raise disk_error(target, exc) from None
    finally:
        with suppress(OSError):
            temporary.unlink(missing_ok=True)


# What a file system says when it cannot take a write: full, over quota, too large, read-only,
# not permitted, or failing.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO})


def disk_error(path: str | Path, exc: OSError) -> ArtifactError:
    """One line for a write the file system refused: the path, the reason, and that nothing was replaced."""
    reason = exc.strerror or type(exc).__name__
    return ArtifactError(f"{path}: cannot write: {reason}; the previous file, if any, is unchanged")


def _remove_dead_writers_temporaries(target: Path) -> None:
    # Only a temporary whose writer has exited is stale: a live one belongs to a concurrent write.
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        pid = stale.name.rpartition(".tmp-")[2].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            with suppress(OSError):
                stale.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_others(folder: Path, *, keep: set[Path]) -> None:
    """Delete every file under ``folder`` that is not in ``keep``, then the folders left empty.

    For an output folder that persists between runs: called once the new files are in place,
    so a failed run leaves the previous folder whole and a good one leaves no stale file.
    """
    for path in sorted(folder.rglob("*"), reverse=True):
        try:
            if path.is_file() and path not in keep:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        except OSError as exc:
            raise disk_error(path, exc) from None


def write_bytes(data: bytes, path: str | Path) -> None:
    """Write a file whole (see :func:`atomic_path`), creating parent folders."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def move_into_place(source: Path, target: Path) -> None:
    """Rename a finished file onto ``target`` (same file system: atomic), creating its folder."""
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)


def write_text(text: str, path: str | Path) -> None:
    """Write a UTF-8 text file whole (see :func:`atomic_path`)."""
    write_bytes(text.encode("utf-8"), path)


# The file a declared plot folder holds when its stage has no plot for it (the other task's plots,
# tuning switched off). `dvc plots show/diff` reports a declared folder that is missing as an
# error, and git (hence a baseline revision) keeps no empty folder; `.dvcignore` hides this file
# from DVC, so the folder exists and shows nothing: no empty figure, no error. No plot file can
# take this name: plot names never start with a dot.
PLOT_PLACEHOLDER = ".no-plot"


def write_plot_placeholder(folder: Path, reason: str) -> None:
    """Mark ``folder`` as a declared plot folder with nothing to show, saying why in the file."""
    write_text(f"{reason}\n", folder / PLOT_PLACEHOLDER)


def read_bytes(path: str | Path) -> bytes:
    """A file's bytes; a missing file or a folder in its place is an :class:`ArtifactError` naming it."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{path}: not found; {REBUILD}") from None
    except IsADirectoryError:
        raise ArtifactError(f"{path}: is a folder where a file should be; remove it, then {REBUILD}") from None


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes: which exact model or table a report is about.

    A folder (a partitioned table, ``engine: dask``) hashes its files' names and bytes, in name order.
    """
    folder = Path(path)
    if not folder.is_dir():
        return hashlib.sha256(read_bytes(path)).hexdigest()
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(folder).as_posix()}\0{file_sha256(file)}\0".encode())
    return digest.hexdigest()


# --- tables written by the stages ------------------------------------------------------------


def read_table(path: str | Path, *, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a Parquet file written by :func:`write_table` (only ``columns``, when given)."""
    import pandas as pd
    import pyarrow as pa

    try:
        return pd.read_parquet(path, columns=None if columns is None else list(columns))
    except FileNotFoundError:
        raise ArtifactError(f"{path}: not found; {REBUILD}") from None
    except IsADirectoryError:
        raise ArtifactError(f"{path}: is a folder where a file should be; remove it, then {REBUILD}") from None
    except (pa.ArrowException, OSError) as exc:
        raise ArtifactError(f"{path}: not a readable Parquet file ({exc}); {REBUILD}") from None


def read_sample(path: str | Path, *, columns: Sequence[str] | None, rows: int, seed: int) -> tuple[pd.DataFrame, int]:
    """``read_table(path, columns=columns).sample(n=rows, random_state=seed)`` and the table's row count, read in batches.

    ``columns``: None reads every column.

    The same rows in the same order as pandas' sample (the whole table when it has at most ``rows``),
    so a bundle sampled this way is byte-identical, but the table is never held whole: a 10-million-row
    split stays on disk while its seeded sample is picked out batch by batch.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.dataset as ds

    try:
        dataset = ds.dataset(path, format="parquet")
        total = dataset.count_rows()
    except FileNotFoundError:
        raise ArtifactError(f"{path}: not found; {REBUILD}") from None
    except (pa.ArrowException, OSError) as exc:
        raise ArtifactError(f"{path}: not a readable Parquet file ({exc}); {REBUILD}") from None
    if total <= rows:
        return read_table(path, columns=columns), total
    picked = sample_positions(total, rows=rows, seed=seed)
    order = np.argsort(picked, kind="stable")
    wanted = picked[order]
    pieces, start = [], 0
    # One batch at a time: Arrow's default read-ahead decodes several files' batches at once,
    # which measured 220 MiB more than this for a 10k-row sample of 7.5M rows (and no faster).
    batches = dataset.to_batches(
        columns=None if columns is None else list(columns), batch_readahead=0, fragment_readahead=0
    )
    for batch in batches:
        local = positions_in(wanted, start=start, rows=batch.num_rows)
        if len(local):
            pieces.append(pa.Table.from_batches([batch.take(pa.array(local))]))
        start += batch.num_rows
    return pa.concat_tables(pieces).take(pa.array(draw_order(order))).to_pandas(), total


def positions_in(wanted: NDArray[np.intp], *, start: int, rows: int) -> NDArray[np.intp]:
    """Of the sorted table positions ``wanted``, those in the chunk of ``rows`` rows from ``start``, counted within it."""
    import numpy as np

    low, high = np.searchsorted(wanted, [start, start + rows])
    return wanted[low:high] - start


def draw_order(order: NDArray[np.intp]) -> NDArray[np.intp]:
    """Where each row picked in table order goes back to in the draw, ``order`` being the draw's ``argsort``."""
    import numpy as np

    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    return back


def sample_positions(total: int, *, rows: int, seed: int) -> NDArray[np.intp]:
    """The positions of the rows ``DataFrame.sample(n=rows, random_state=seed)`` draws from ``total``, in its order.

    All of them, in table order, when ``total <= rows``: where a sample is only drawn from a larger table.
    """
    import numpy as np

    if total <= rows:
        return np.arange(total)
    # pandas draws RandomState(seed).choice(total, rows, replace=False): the first rows of one permutation.
    return np.asarray(np.random.RandomState(seed).permutation(total)[:rows], dtype=np.intp)


def write_table(df: pd.DataFrame, path: str | Path) -> None:
    """Write ``df`` as Parquet, whole or not at all."""

    with atomic_path(path) as temporary:
        df.to_parquet(temporary, index=False)


def table_hash(df: pd.DataFrame) -> str:
    """A content hash of a table: same values, columns and dtypes give the same hash.

    It does not depend on the file format, so a CSV and a Parquet copy of the same data agree.
    """
    import pandas as pd

    digest = hashlib.sha256()
    digest.update(json.dumps([[str(c), str(t)] for c, t in df.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return digest.hexdigest()


# --- contracts ------------------------------------------------------------------------------


def read_contract(path: str | Path) -> Contract:
    """Load a data contract from YAML."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: data contract not found (data.schema in params.yaml)") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder; data.schema in params.yaml must name the contract file") from None
    except yaml.YAMLError as exc:
        raise ContractError(f"{path}: {yaml_problem(exc)}") from None
    return parse_contract(raw, source=str(path))


def write_contract(contract: Contract, path: str | Path) -> None:
    """Write a data contract as YAML."""
    write_text(yaml.safe_dump(contract_to_dict(contract), sort_keys=False, allow_unicode=True), path)


# --- models ---------------------------------------------------------------------------------


def save_model(model: Pipeline, path: str | Path) -> None:
    """Save a fitted pipeline with skops, byte for byte the same for the same model (see :func:`model_bytes`)."""
    write_bytes(model_bytes(model), path)


def model_bytes(model: Pipeline) -> bytes:
    """``model`` as a skops archive whose bytes depend on the model alone.

    skops names array files and object references after Python object ids and stamps each zip
    entry with the current time, so two identical trainings would differ. Here ids become their
    order of first appearance in the schema, and every entry gets the same fixed time and mode.
    """
    import skops.io as sio  # here, not at the top: stages that never touch a model skip its 1-2 s import

    archive = zipfile.ZipFile(bytes_io.BytesIO(sio.dumps(model)))
    schema = json.loads(archive.read("schema.json"))
    numbering: dict[str, str] = {}

    def renumber(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: _renumbered(key, value, numbering, renumber) for key, value in node.items()}
        if isinstance(node, list):
            return [renumber(item) for item in node]
        return node

    normalized = renumber(schema)
    renamed = {original: new for original, new in numbering.items() if original in archive.namelist()}
    buffer = bytes_io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as out:
        _add_entry(out, "schema.json", json.dumps(normalized, indent=2).encode())
        for original, new in renamed.items():
            _add_entry(out, new, archive.read(original))
    return buffer.getvalue()


def _renumbered(key: str, value: Any, numbering: dict[str, str], renumber: Any) -> Any:
    # ``__id__`` values are object ids; ``file`` names are ids (arrays) or random UUIDs (xgboost's
    # booster): both become their order of first appearance, the file keeping its extension.
    if key == "__id__" and isinstance(value, int):
        return int(numbering.setdefault(str(value), str(len(numbering))))
    if key == "file" and isinstance(value, str):
        suffix = Path(value).suffix
        return numbering.setdefault(value, f"{len(numbering)}{suffix}")
    return renumber(value)


def _add_entry(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    entry.external_attr = 0o644 << 16
    archive.writestr(entry, data)


def check_model_archive(path: str | Path) -> None:
    """Refuse a file that is not a whole skops archive (a zip holding its schema, every entry intact).

    Cheaper than :func:`load_model` (no skops import, about a second): for a stage that must only
    know the file is not truncated or corrupt, such as the gate after evaluate loaded the same bytes.
    """
    try:
        with zipfile.ZipFile(bytes_io.BytesIO(read_bytes(path))) as archive:
            json.loads(archive.read("schema.json"))
            damaged = archive.testzip()
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise _unreadable_model(str(path), f"{type(exc).__name__}: {exc}") from None
    if damaged is not None:
        raise _unreadable_model(str(path), f"entry {damaged} is damaged")


def _unreadable_model(source: str, why: str) -> ArtifactError:
    return ArtifactError(f"{source}: not a readable skops model ({why}); {REBUILD}")


def load_model(path: str | Path) -> Pipeline:
    """Load a pipeline saved by :func:`save_model`, refusing any type the registry does not trust."""
    return model_from_bytes(read_bytes(path), source=str(path))


def model_from_bytes(data: bytes, *, source: str = "model") -> Pipeline:
    """Load a skops-serialized pipeline from memory, refusing untrusted types and corrupt archives."""
    import skops.io as sio
    from sklearn.pipeline import Pipeline

    try:
        untrusted = set(sio.get_untrusted_types(data=data))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise _unreadable_model(source, f"{type(exc).__name__}: {exc}") from None
    refused = sorted(untrusted - trusted_types())
    if refused:
        raise DataError(f"{source}: refusing to load types that are not trusted: {refused}")
    model = sio.loads(data, trusted=sorted(untrusted))
    if not isinstance(model, Pipeline):
        raise DataError(f"{source}: expected a scikit-learn Pipeline, found {type(model).__name__}")
    return model


# --- reports and artifacts ------------------------------------------------------------------


def write_json(data: Mapping[str, Any], path: str | Path) -> None:
    """Write a report as indented JSON; NaN and infinities become ``null`` (JSON has neither)."""
    write_text(json.dumps(_finite(data), indent=2, sort_keys=False) + "\n", path)


def read_json(path: str | Path) -> Any:
    """Read a JSON report; a missing or malformed file is an :class:`ArtifactError` naming it."""
    text = read_bytes(path).decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc}); {REBUILD}") from None


def write_artifact(artifact: BaseModel, path: str | Path) -> None:
    """Write one of :mod:`conveyor.artifacts`' models as indented JSON, whole or not at all."""
    write_json(artifact.model_dump(mode="json"), path)


def read_artifact(path: str | Path, kind: type[ArtifactT]) -> ArtifactT:
    """Read and validate an artifact; a missing, malformed or outdated file names itself and the fix."""
    raw = read_json(path)
    try:
        return kind.model_validate(raw)
    except ValidationError as exc:
        problems = describe_errors(exc, source=str(path), root=kind)
        problems = problems.replace("invalid settings:\n  ", "invalid fields: ").replace("\n  ", "; ")
        raise ArtifactError(f"{problems} (not a {kind.__name__}; {REBUILD})") from None


def parse_json(text: str) -> Any:
    """Parse JSON that a tool printed; ``Infinity`` and ``NaN`` (which DVC emits) become ``None``."""
    return _finite(json.loads(text))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
