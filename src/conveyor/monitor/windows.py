"""The window a monitor judges: served records from BentoML's prediction logs, and their labels.

A window comes from the service's prediction logs (BentoML's ``bentoml.monitor`` JSON-lines
files) or from any CSV/Parquet export, locally or at an fsspec URL (``s3://…``). Labels name a
record by its request id (the ``X-Request-ID`` the client got) and its position in the request,
or by an ``id`` column of the contract that the client sent with the record.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from conveyor import io
from conveyor.contract import key_text
from conveyor.errors import MonitorError

__all__ = ["RECORD", "REQUEST_ID", "attach_labels", "read_labels", "read_logs"]

REQUEST_ID = "request_id"
# Position of a record within its request: one request may carry many records under one id.
RECORD = "record"
# BentoML's default monitor exporter: <log_path>/<monitor name>/data/data.<worker>.log, rotated daily
# into data.<worker>.log.<date>.
LOG_PATTERN = "**/data/data.*.log*"


def read_logs(location: str) -> pd.DataFrame:
    """Every record in the BentoML monitor logs under ``location`` (a folder or an fsspec URL).

    Each line of ``data.<worker>.log*`` is one JSON object: the columns the service logs (see
    :class:`conveyor.serving.prediction_log.BentoMonitorExporter`) plus BentoML's ``timestamp``,
    ``request_id`` (the ``X-Request-ID`` the client got) and ``trace_id``. A ``record`` column
    numbers the records of each request in the order they were logged, so labels can name one
    record of a batch.
    """
    import fsspec

    fs, root = fsspec.core.url_to_fs(location)
    files = sorted(fs.glob(f"{root.rstrip('/')}/{LOG_PATTERN}"))
    if not files:
        raise MonitorError(f"{location}: no BentoML monitor logs (expected {LOG_PATTERN} under it)")
    records: list[dict[str, Any]] = []
    for name in files:
        with fs.open(name, "rt", encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise MonitorError(f"{name}: line {number} is not JSON: {exc}") from None
                if not isinstance(record, dict):
                    raise MonitorError(f"{name}: line {number} is not a JSON object")
                records.append(record)
    window = pd.DataFrame.from_records(records)
    if REQUEST_ID in window.columns:
        window[REQUEST_ID] = window[REQUEST_ID].map(_request_id).astype("object")
        window[RECORD] = window.groupby(REQUEST_ID, dropna=False).cumcount()
    return window


def _request_id(logged: object) -> str | None:
    """A request id as text, the service's ``X-Request-ID``; none where BentoML logged ``None``."""
    text = "" if logged is None else str(logged)
    return None if text in {"None", "nan", ""} else text


def read_labels(source: str, *, target: str, keys: Sequence[str] = ()) -> pd.DataFrame:
    """A labels table (CSV/Parquet, path or URL): the target and what names each record.

    A record is named by ``request_id`` (the ``X-Request-ID`` the client got) and, optionally,
    its position ``record`` in the request; or, without a ``request_id`` column, by the first of
    ``keys`` (the contract's ``id`` columns) the table has, matched with the id the client sent
    with the record (the service logs it). Returns ``request_id``, ``record`` and the target, or
    the key (as text, :func:`conveyor.contract.key_text`) and the target.
    """
    # Request ids and keys as text: "00000000000003e9" would otherwise be read as the number 3e9.
    as_text = dict.fromkeys((REQUEST_ID, *keys), str)
    if Path(source.split("?", 1)[0]).suffix.lower() == ".csv":
        labels = pd.read_csv(source, dtype=as_text)
    else:
        labels = io.read_source(source)
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
