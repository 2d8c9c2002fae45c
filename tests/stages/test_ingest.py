"""ingest reads every kind of source params.yaml allows: CSV, Parquet, SQLite, http(s), PostgreSQL.

Each source holds the penguins table; after ingest, validate accepts it and the conformed table
is the same as from the committed CSV, so the source kind never changes what the model sees.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy
import yaml

from conveyor import io
from conveyor.artifacts import IngestReport
from conveyor.config import Config, parse_config
from conveyor.contract import Contract, conform
from conveyor.errors import DataError
from conveyor.stages import ingest
from conveyor.stages.validate import validate
from tests.conftest import ROOT
from tests.stages import conftest as postgres
from tests.stages.conftest import running_postgres

PENGUINS = ROOT / "data" / "penguins.csv"
QUERY = "SELECT * FROM penguins"
PASSWORD = "s3cret-p4ss"


SOURCE_ENV = "CONVEYOR_TEST_SOURCE_URL"


def params_for(source: str, query: str | None = None, *, source_env: str | None = None) -> Config:
    """The repository's params with ``data.source`` (and ``data.query``, ``data.source_env``) replaced."""
    raw: dict[str, Any] = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    raw["data"] |= {"source": source, "query": query, "source_env": source_env}
    return parse_config(raw)


def without_password(url: str) -> str:
    """A SQLAlchemy URL as data.source holds it: the user named, the password left to data.source_env."""
    return url.replace(f":{PASSWORD}@", "@")


def ingest_and_check(
    source: str, out: Path, contract: Contract, query: str | None = None, *, source_env: str | None = None
) -> IngestReport:
    """Ingest ``source`` into ``out``; check validate accepts it and it matches the committed CSV."""
    cfg = params_for(source, query, source_env=source_env)
    summary = ingest.run(cfg, out=out / "raw.parquet", report=out / "ingest.json")
    raw = io.read_table(out / "raw.parquet")
    assert validate(raw, contract, target="species", task="classification").passed
    expected = conform(io.read_source(str(PENGUINS)), contract)
    pd.testing.assert_frame_equal(conform(raw, contract), expected)
    assert io.read_artifact(out / "ingest.json", IngestReport) == summary
    assert summary.rows == 344
    assert list(summary.columns) == list(expected.columns)
    return summary


def load_penguins(url: str) -> None:
    """Create the ``penguins`` table at the SQLAlchemy ``url`` from the committed CSV."""
    engine = sqlalchemy.create_engine(url)
    try:
        io.read_source(str(PENGUINS)).to_sql("penguins", engine, index=False)
    finally:
        engine.dispose()


def test_csv(tmp_path: Path, contract: Contract) -> None:
    summary = ingest_and_check(str(PENGUINS), tmp_path, contract)
    assert summary.source == str(PENGUINS)


def test_parquet_hashes_like_the_csv(tmp_path: Path, contract: Contract) -> None:
    io.read_source(str(PENGUINS)).to_parquet(tmp_path / "penguins.parquet", index=False)
    from_parquet = ingest_and_check(str(tmp_path / "penguins.parquet"), tmp_path, contract)
    assert from_parquet.hash == io.table_hash(io.read_source(str(PENGUINS)))


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    (tmp_path / "penguins.xlsx").write_bytes(b"PK")
    with pytest.raises(DataError, match=r"penguins\.xlsx: unknown format '\.xlsx'; expected \.csv or \.parquet"):
        ingest.ingest(params_for(str(tmp_path / "penguins.xlsx")).data)


def test_a_corrupt_parquet_file_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "penguins.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"penguins\.parquet: cannot be read: "):
        ingest.ingest(params_for(str(tmp_path / "penguins.parquet")).data)


def test_sqlite(tmp_path: Path, contract: Contract) -> None:
    url = f"sqlite:///{tmp_path / 'penguins.db'}"
    load_penguins(url)
    summary = ingest_and_check(url, tmp_path, contract, QUERY)
    assert summary.source == url


def test_sqlite_query_error_names_the_problem(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'penguins.db'}"
    load_penguins(url)
    with pytest.raises(DataError, match="query failed: OperationalError: no such table: pengiuns"):
        ingest.ingest(params_for(url, "SELECT * FROM pengiuns").data)


def test_missing_database_driver_is_a_data_error() -> None:
    cfg = params_for("mysql://reader@127.0.0.1/shop", QUERY, source_env=SOURCE_ENV)
    with pytest.raises(DataError) as caught:
        ingest.ingest(cfg.data, environ={SOURCE_ENV: f"mysql://reader:{PASSWORD}@127.0.0.1/shop"})
    assert str(caught.value).startswith("mysql://reader@127.0.0.1/shop: cannot use this SQLAlchemy URL: ")
    assert PASSWORD not in str(caught.value)


class QuietHandler(SimpleHTTPRequestHandler):
    """Serves a folder without logging each request to stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        """Drop the access log."""


@pytest.fixture
def http_folder(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A folder served over http on 127.0.0.1 (a free port) for the test's duration: (base URL, folder)."""
    folder = tmp_path / "served"
    folder.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_http(http_folder: tuple[str, Path], tmp_path: Path, contract: Contract, suffix: str) -> None:
    base, folder = http_folder
    df = io.read_source(str(PENGUINS))
    if suffix == ".csv":
        df.to_csv(folder / "penguins.csv", index=False)
    else:
        df.to_parquet(folder / "penguins.parquet", index=False)
    summary = ingest_and_check(f"{base}/penguins{suffix}", tmp_path, contract)
    assert summary.source == f"{base}/penguins{suffix}"


def test_http_not_found_is_a_data_error(http_folder: tuple[str, Path]) -> None:
    base, _ = http_folder
    with pytest.raises(DataError, match=r"/nope\.csv: cannot be read: HTTP Error 404"):
        ingest.ingest(params_for(f"{base}/nope.csv").data)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server for this module, with the penguins table loaded."""
    with running_postgres(PASSWORD) as url:
        load_penguins(url)
        yield url


@pytest.mark.slow
def test_postgresql(postgres_url: str, tmp_path: Path, contract: Contract, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SOURCE_ENV, postgres_url)
    summary = ingest_and_check(without_password(postgres_url), tmp_path, contract, QUERY, source_env=SOURCE_ENV)
    report = (tmp_path / "ingest.json").read_text(encoding="utf-8")
    assert PASSWORD not in report
    assert summary.source == without_password(postgres_url)


@pytest.mark.slow
def test_postgresql_wrong_password_is_reported_without_it(postgres_url: str) -> None:
    wrong = postgres_url.replace(PASSWORD, "wrong-password")
    cfg = params_for(without_password(postgres_url), QUERY, source_env=SOURCE_ENV)
    with pytest.raises(DataError) as caught:
        ingest.ingest(cfg.data, environ={SOURCE_ENV: wrong})
    message = str(caught.value)
    assert "query failed: OperationalError" in message
    assert "password authentication failed" in message
    assert "wrong-password" not in message


def test_without_postgresql_the_test_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres, "server_bin", lambda: None)
    # A failure that says how to get it, never a silent skip.
    not_installed = pytest.raises(
        pytest.fail.Exception, match=r"PostgreSQL is not installed .*`make setup` installs it"
    )
    with not_installed, running_postgres(PASSWORD):
        raise AssertionError("the server cannot have started")
