"""The window a monitor judges: served records from BentoML's prediction logs, and their labels.

A window comes from the service's prediction logs (BentoML's ``bentoml.monitor`` JSON-lines
files) or from any CSV/Parquet export, locally or at an fsspec URL (``s3://…``). Labels name a
record by its request id (the ``X-Request-ID`` the client got) and its position in the request,
or by an ``id`` column of the contract that the client sent with the record.
"""

from __future__ import annotations

import json
import os
import random
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from conveyor import io
from conveyor.config import CsvFormat
from conveyor.contract import key_text
from conveyor.errors import MonitorError
from conveyor.serving.prediction_log import MODEL_TAG

__all__ = [
    "MAX_LINE_BYTES",
    "READ_BYTES",
    "RECORD",
    "REQUEST_ID",
    "LogWindow",
    "attach_labels",
    "read_labels",
    "read_logs",
]

REQUEST_ID = "request_id"
# Position of a record within its request: one request may carry many records under one id.
RECORD = "record"
# BentoML's default monitor exporter: <log_path>/<monitor name>/data/data.<worker>.log, rotated daily
# into data.<worker>.log.<date>.
LOG_PATTERN = "**/data/data.*.log*"
# The longest line read as one record: a record is a few hundred bytes; a file without newlines
# (a copy of /dev/zero) must not be read whole into memory.
MAX_LINE_BYTES = 1 << 20
# How much of a log file is read at once.
READ_BYTES = 1 << 16
SAMPLE_SEED = 0


@dataclass(frozen=True)
class LogWindow:
    """The records read from the prediction logs, and what was left out of them.

    ``frame`` holds at most ``max_rows`` records of the monitored model (a seeded uniform sample
    when it logged more: ``records`` says how many); ``torn_lines`` counts last lines a crash
    left half-written, ``other_model_records`` records another model (``model_tag``) answered.
    """

    frame: pd.DataFrame
    records: int
    torn_lines: int
    other_model_records: int


def read_logs(location: str, *, max_rows: int, model_tag: str | None = None) -> LogWindow:
    """The records in the BentoML monitor logs under ``location`` (a folder or an fsspec URL).

    Each line of ``data.<worker>.log*`` is one JSON object: the columns the service logs (see
    :class:`conveyor.serving.prediction_log.BentoMonitorExporter`) plus BentoML's ``timestamp``,
    ``request_id`` (the ``X-Request-ID`` the client got) and ``trace_id``. A ``record`` column
    numbers the records of each request in the order they were logged, so labels can name one
    record of a batch. Records another ``model_tag`` answered are left out and counted.

    The files are streamed: memory holds at most ``max_rows`` records (``monitor.max_window_rows``,
    a seeded reservoir sample beyond it) and one line of at most :data:`MAX_LINE_BYTES`. Anything
    else is a :class:`MonitorError` naming the file: one that is not a regular file (a FIFO, a
    device), a line that is not a JSON object or not UTF-8, except a file's last line, which a
    crash can leave half-written and is skipped and counted.
    """
    import fsspec

    fs, root = fsspec.core.url_to_fs(location)
    files = sorted(fs.glob(f"{root.rstrip('/')}/{LOG_PATTERN}"))
    if not files:
        raise MonitorError(f"{location}: no BentoML monitor logs (expected {LOG_PATTERN} under it)")
    sample = _Reservoir(max_rows)
    torn = other = 0
    for name in files:
        _require_file(fs, name)
        with fs.open(name, "rb") as stream:
            previous: object = None
            position = 0
            for number, line, last in _lines(stream, name):
                try:
                    record = json.loads(line.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                    if last:
                        torn += 1
                        continue
                    what = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else f"not JSON: {exc}"
                    raise MonitorError(f"{name}: line {number} is {what}; not a BentoML monitor log") from None
                if not isinstance(record, dict):
                    if last:
                        torn += 1
                        continue
                    raise MonitorError(f"{name}: line {number} is not a JSON object")
                if model_tag is not None and record.get(MODEL_TAG, model_tag) != model_tag:
                    other += 1
                    continue
                request = _request_id(record.get(REQUEST_ID))
                position = position + 1 if request is not None and request == previous else 0
                previous = request
                # The line, not the parsed record: a tenth of the memory until the sample is complete.
                sample.add((line, position))
    kept = sample.items()
    window = pd.DataFrame.from_records([json.loads(line) for line, _ in kept])
    if REQUEST_ID in window.columns:
        window[REQUEST_ID] = window[REQUEST_ID].map(_request_id).astype("object")
        window[RECORD] = pd.Series([position for _, position in kept], index=window.index, dtype="int64")
    return LogWindow(window, sample.seen, torn, other)


def _require_file(fs: Any, name: str) -> None:
    """Refuse anything but a regular file: a FIFO would block the read forever, a device never end."""
    from fsspec.implementations.local import LocalFileSystem

    if isinstance(fs, LocalFileSystem):
        try:
            mode = os.stat(name).st_mode
        except OSError as error:
            raise MonitorError(f"{name}: cannot be read ({error.strerror})") from None
        regular = stat.S_ISREG(mode)
    else:
        regular = fs.info(name).get("type") == "file"
    if not regular:
        raise MonitorError(f"{name}: not a regular file (a FIFO, device or folder); the monitor reads only log files")


def _lines(stream: Any, name: str) -> Iterator[tuple[int, bytes, bool]]:
    """``(number, line, is the last line)`` for each non-blank line, none longer than :data:`MAX_LINE_BYTES`.

    Read in blocks (fsspec's remote files take no size in ``readline``), holding at most one
    unfinished line and one block at a time.
    """
    number, buffer = 0, b""
    held: tuple[int, bytes] | None = None
    while True:
        block = stream.read(READ_BYTES)
        lines = (buffer + block).split(b"\n")
        # Until the end, the part after the last newline is a line still arriving.
        buffer = lines.pop() if block else b""
        for line in (*lines, buffer):
            if len(line) > MAX_LINE_BYTES:
                raise MonitorError(
                    f"{name}: line {number + 1} is longer than {MAX_LINE_BYTES} bytes; not a BentoML monitor record"
                )
        for line in lines:
            number += 1
            if line.strip():
                if held is not None:
                    yield held[0], held[1], False
                held = (number, line)
        if not block:
            if held is not None:
                yield held[0], held[1], True
            return


class _Reservoir:
    """A uniform sample of at most ``size`` items from a stream of unknown length (Algorithm R), seeded."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.seen = 0
        self.kept: list[tuple[int, Any]] = []
        self.random = random.Random(SAMPLE_SEED)

    def add(self, item: Any) -> None:
        if len(self.kept) < self.size:
            self.kept.append((self.seen, item))
        else:
            slot = self.random.randrange(self.seen + 1)
            if slot < self.size:
                self.kept[slot] = (self.seen, item)
        self.seen += 1

    def items(self) -> list[Any]:
        """The kept items in the order they came."""
        return [item for _, item in sorted(self.kept, key=lambda kept: kept[0])]


def _request_id(logged: object) -> str | None:
    """A request id as text, the service's ``X-Request-ID``; none where BentoML logged ``None``."""
    text = "" if logged is None else str(logged)
    return None if text in {"None", "nan", ""} else text


def read_labels(
    source: str, *, target: str, keys: Sequence[str] = (), csv_format: CsvFormat | None = None
) -> pd.DataFrame:
    """A labels table (CSV/Parquet, path or URL; a CSV written as ``csv_format``, ``data.csv``): the target and what names each record.

    A record is named by ``request_id`` (the ``X-Request-ID`` the client got) and, optionally,
    its position ``record`` in the request; or, without a ``request_id`` column, by the first of
    ``keys`` (the contract's ``id`` columns) the table has, matched with the id the client sent
    with the record (the service logs it). Returns ``request_id``, ``record`` and the target, or
    the key (as text, :func:`conveyor.contract.key_text`) and the target.
    """
    # Request ids and keys as text: "00000000000003e9" would otherwise be read as the number 3e9.
    labels = io.read_source(source, csv_format=csv_format, text_columns=(REQUEST_ID, *keys), named_by="--labels")
    if REQUEST_ID not in labels.columns:
        key = next((name for name in keys if name in labels.columns), None)
        if key is None or target not in labels.columns:
            ids = f" or an id column of the contract ({', '.join(keys)})" if keys else ""
            raise MonitorError(
                f"{source}: the labels table needs {target} and {REQUEST_ID}{ids} to join on; it has {list(labels.columns)}"
            )
        labels = labels[[key, target]].assign(**{key: labels[key].map(key_text).astype("object")})
        duplicated = labels.duplicated([key])
        if duplicated.any():
            raise MonitorError(f"{source}: {key} {labels.loc[duplicated, key].iloc[0]!r} is labelled twice")
        return labels
    labels[REQUEST_ID] = labels[REQUEST_ID].map(_request_id)
    missing = [name for name in (REQUEST_ID, target) if name not in labels.columns]
    if missing:
        raise MonitorError(f"{source}: the labels table lacks column(s) {missing}; expected {REQUEST_ID} and {target}")
    if RECORD not in labels.columns:
        labels[RECORD] = 0
    labels = labels[[REQUEST_ID, RECORD, target]].astype({REQUEST_ID: "object", RECORD: "int64"})
    duplicated = labels.duplicated([REQUEST_ID, RECORD])
    if duplicated.any():
        first = labels.loc[duplicated, REQUEST_ID].iloc[0]
        raise MonitorError(f"{source}: request {first!r} is labelled twice; add a {RECORD} column (0, 1, …)")
    return labels


def attach_labels(window: pd.DataFrame, labels: pd.DataFrame, *, target: str) -> pd.Series:
    """The true label of each window record (missing where none was given), in window order.

    Joined on ``request_id`` and ``record``, or on the id column :func:`read_labels` found.
    """
    if REQUEST_ID not in labels.columns:
        key = str(labels.columns[0])
        if key not in window.columns:
            raise MonitorError(f"labels name records by {key}, but this window has no {key} column to join on")
        keys = window[[key]].assign(**{key: window[key].map(key_text).astype("object")})
        joined = keys.merge(labels, on=key, how="left", validate="many_to_one")
        return pd.Series(joined[target].to_numpy(), index=window.index, name=target)
    if REQUEST_ID not in window.columns:
        raise MonitorError(f"labels need a {REQUEST_ID} column in the window to join on; this window has none")
    keys = window[[REQUEST_ID]].astype("object").assign(**{RECORD: _record_numbers(window)})
    joined = keys.merge(labels, on=[REQUEST_ID, RECORD], how="left", validate="many_to_one")
    return pd.Series(joined[target].to_numpy(), index=window.index, name=target)


def _record_numbers(window: pd.DataFrame) -> pd.Series:
    if RECORD in window.columns:
        return window[RECORD].astype("int64")
    return pd.Series(0, index=window.index, dtype="int64")
