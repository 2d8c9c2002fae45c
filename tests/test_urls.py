"""redact_url: no password, user info or token survives into a report, whatever characters it holds."""

from __future__ import annotations

import pytest

from conveyor import io
from conveyor.errors import DataError
from conveyor.urls import credentials_in, redact_url, scrub, secrets_of

SECRET = "s3cr3t"


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        # SQLAlchemy URLs: SQLAlchemy's rendering, password hidden, query values hidden.
        ("postgresql://ana:s3cr3t@db.example:5432/sales", "postgresql://ana:***@db.example:5432/sales"),
        ("postgresql+psycopg://ana:s3/cr3t@db/sales", "postgresql+psycopg://ana:***@db/sales"),
        ("mysql://ana:s3#cr3t@db/sales", "mysql://ana:***@db/sales"),
        ("mssql://ana:s3?cr3t@db/sales", "mssql://ana:***@db/sales"),
        ("postgresql://ana:a/b#c?s3cr3t@db/sales?sslmode=require", "postgresql://ana:***@db/sales?sslmode=***"),
        ("postgresql://ana@db/sales?password=s3cr3t", "postgresql://ana@db/sales?password=***"),
        ("postgresql://db/sales?token=s3cr3t&token=s3cr3t2", "postgresql://db/sales?token=***"),
        ("sqlite:///data/sales.db", "sqlite:///data/sales.db"),
        # Other URLs: user info, query string and fragment are dropped.
        ("https://ana:s3cr3t@files.example/sales.csv", "https://files.example/sales.csv"),
        ("https://ana:s3/cr3t@files.example/sales.csv", "https://files.example/sales.csv"),
        ("https://ana:s3#cr3t@files.example/sales.csv", "https://files.example/sales.csv"),
        ("https://ana:s3?cr3t@files.example/sales.csv", "https://files.example/sales.csv"),
        ("https://files.example/sales.csv?token=s3cr3t", "https://files.example/sales.csv"),
        ("https://files.example/sales.csv?password=s3cr3t#part", "https://files.example/sales.csv"),
        ("s3://bucket/sales.parquet", "s3://bucket/sales.parquet"),
        # Not a URL: a path is shown as it is.
        ("data/penguins.csv", "data/penguins.csv"),
    ],
)
def test_redact_url_hides_credentials(source: str, shown: str) -> None:
    assert redact_url(source) == shown
    assert SECRET not in redact_url(source)


def test_a_sqlalchemy_scheme_that_sqlalchemy_cannot_parse_is_stripped_like_any_url() -> None:
    # A port that is not a number: SQLAlchemy refuses the URL, the generic rule still applies.
    assert redact_url("postgresql://ana:s3cr3t@db:port/sales?token=s3cr3t") == "postgresql://db:port/sales"


def test_a_failing_sql_source_is_named_without_its_password() -> None:
    with pytest.raises(DataError) as raised:
        io.read_source("postgresql+psycopg://ana:s3cr3t@127.0.0.1:1/sales", query="SELECT 1", sql=True)
    assert "s3cr3t" not in str(raised.value)
    assert str(raised.value).startswith("postgresql+psycopg://ana:***@127.0.0.1:1/sales: query failed")


def test_scrub_hides_every_secret_of_a_url_in_any_text() -> None:
    url = "https://ana:pa%2Fss-w0rd@files.example/x.csv?token=tok-123456&format=csv"
    secrets = secrets_of(url)
    text = f"GET {url} failed; token tok-123456; auth ana:pa%2Fss-w0rd; decoded pa/ss-w0rd"
    scrubbed = scrub(text, secrets)
    for secret in ("tok-123456", "pa%2Fss-w0rd", "pa/ss-w0rd"):
        assert secret not in scrubbed
    assert "files.example/x.csv" in scrubbed


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("https://files.example/x.csv?format=csv", ""),
        ("postgresql+psycopg://reader@db/sales?sslmode=require", ""),
        ("s3://KEY:SECRET@bucket/x.csv", "user info"),
        ("https://files.example/x.csv?X-Amz-Signature=abc", "['X-Amz-Signature']"),
        ("sqlite:///data/sales.db", ""),
        ("data/penguins.csv", ""),
    ],
)
def test_credentials_in_names_what_a_tracked_url_may_not_hold(source: str, found: str) -> None:
    assert found in credentials_in(source)
    assert bool(credentials_in(source)) == bool(found)
    assert "SECRET" not in credentials_in(source)
