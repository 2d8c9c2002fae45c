"""URLs fit to show: reports that name a data source are committed and posted on pull requests.

A password may hold ``/``, ``#`` or ``?`` unescaped (SQLAlchemy accepts that), and a token often
travels as a query parameter, so splitting by the URL grammar alone leaks them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlsplit

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

__all__ = [
    "SQL_SCHEMES",
    "credentials_in",
    "is_parquet",
    "is_sql_url",
    "known_secrets",
    "location",
    "redact_url",
    "remember_secrets",
    "scrub",
    "secrets_of",
]

HIDDEN = "***"
# The database dialects a SQLAlchemy URL may name (``postgresql+psycopg://…``): read with SQL, not fsspec.
SQL_SCHEMES = frozenset({"sqlite", "postgresql", "postgres", "mysql", "mariadb", "mssql", "oracle"})
# Query parameters that carry a credential: tokens, keys, passwords, signatures (presigned S3 and
# GCS URLs, Azure SAS), sessions. A tracked URL may hold none of them.
_CREDENTIAL_NAME = re.compile(
    r"token|key|secret|pass|pwd|sig|credential|auth|session|cookie|jwt|bearer|^x-amz-|^x-goog-", re.IGNORECASE
)


def redact_url(source: str) -> str:
    """``source`` without credentials; a local path comes back unchanged.

    A SQLAlchemy URL is rendered by SQLAlchemy with the password hidden, and each query
    parameter keeps its name but not its value (``?password=``, ``?token=``, ``?sslkey=``…).
    Any other URL loses its user info, query string and fragment: ``s3://bucket/data.csv``.
    """
    scheme, separator, rest = source.partition("://")
    if not separator:
        return source
    if is_sql_url(source):
        rendered = _render_sqlalchemy(source)
        if rendered is not None:
            return rendered
    return f"{scheme}://{_without_user_info_and_query(rest)}"


def _render_sqlalchemy(source: str) -> str | None:
    url = _sqlalchemy_url(source)
    if url is None:  # not its grammar, or a port that is not a number
        return None
    rendered = url.set(query={}).render_as_string(hide_password=True)
    if not url.query:
        return rendered
    return rendered + "?" + "&".join(f"{name}={HIDDEN}" for name in sorted(url.query))


def _without_user_info_and_query(rest: str) -> str:
    # User info ends at the last '@': a raw '/', '#' or '?' in a password must not end it early.
    # A path holding an '@' then loses its first part too: better too little shown than a secret.
    address = rest.rpartition("@")[2]
    for end in "?#":
        address = address.split(end, 1)[0]
    return address


def is_sql_url(source: str) -> bool:
    """True for a SQLAlchemy URL (``sqlite:///x.db``, ``postgresql+psycopg://…``)."""
    scheme, separator, _ = source.partition("://")
    return bool(separator) and scheme.split("+", 1)[0] in SQL_SCHEMES


def is_parquet(source: str) -> bool:
    """True for a path or URL naming a Parquet file (``.parquet``, ``.pq``), whatever its query string."""
    return PurePosixPath(source.split("?", 1)[0]).suffix.lower() in {".parquet", ".pq"}


def credentials_in(source: str) -> str:
    """What in ``source`` is a credential, described without its value; empty when there is none.

    A SQLAlchemy URL may name its user but not a password; any other URL may have no user info
    at all (a token often travels as the user name). Query parameters named like a credential
    (``token``, ``api_key``, ``X-Amz-Signature``…) are refused in both.
    """
    _, separator, rest = source.partition("://")
    if not separator:
        return ""
    found = []
    if is_sql_url(source):
        url = _sqlalchemy_url(source)
        if url is not None and url.password is not None:
            found.append(f"a password ({redact_url(source)})")
        names = sorted(url.query) if url is not None else []
    else:
        if "@" in rest.split("?", 1)[0].split("#", 1)[0]:
            found.append(f"user info before an '@' ({redact_url(source)})")
        names = sorted({name for name, _ in parse_qsl(urlsplit(f"x://{rest.rpartition('@')[2]}").query)})
    credential_names = [name for name in names if _CREDENTIAL_NAME.search(name)]
    if credential_names:
        found.append(f"query parameter(s) {credential_names}")
    return " and ".join(found)


def location(source: str) -> tuple[str, ...]:
    """Where a URL points, credentials and query left out: scheme, host, port, path (or database)."""
    if is_sql_url(source):
        url = _sqlalchemy_url(source)
        if url is not None:
            return (url.drivername, url.host or "", str(url.port or ""), url.database or "")
    scheme, _, rest = source.partition("://")
    return (scheme, _without_user_info_and_query(rest))


def secrets_of(source: str) -> list[str]:
    """The secret parts of a URL (password, user name of a non-SQL URL, query values), for :func:`scrub`."""
    _, separator, rest = source.partition("://")
    if not separator:
        return []
    found: list[str] = []
    if is_sql_url(source):
        url = _sqlalchemy_url(source)
        if url is not None:
            found += [url.password] if url.password else []
            found += [value for values in url.query.values() for value in _as_tuple(values)]
    else:
        user_info, at, address = rest.rpartition("@")
        if at:
            found += [part for part in user_info.split(":", 1) if part]
            found.append(user_info)
        found += [value for _, value in parse_qsl(urlsplit(f"x://{address}").query)]
    # Longest first, so that a secret containing another is hidden whole; tiny values are too
    # common in text to replace (a query value "1") and too short to be a credential.
    found += [unquote(value) for value in found]  # as sent, decoded (a basic-auth header, a driver)
    return sorted({value for value in found if len(value) >= 4}, key=len, reverse=True)


_KNOWN: set[str] = set()


def remember_secrets(url: str) -> None:
    """Note the secrets of a URL this process opens, so that :func:`known_secrets` can hide them anywhere."""
    _KNOWN.update(secrets_of(url))


def known_secrets() -> list[str]:
    """Every secret :func:`remember_secrets` noted, longest first: what the CLI scrubs from any output."""
    return sorted(_KNOWN, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret (as is, or URL-quoted) replaced by ``***``."""
    from urllib.parse import quote

    for secret in secrets:
        for form in {secret, quote(secret, safe=""), quote(secret)}:
            text = text.replace(form, HIDDEN)
    return text


def _as_tuple(values: str | tuple[str, ...]) -> tuple[str, ...]:
    return (values,) if isinstance(values, str) else tuple(values)


def _sqlalchemy_url(source: str) -> URL | None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(source)
    except (ArgumentError, ValueError):
        return None
