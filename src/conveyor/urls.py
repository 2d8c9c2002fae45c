"""URLs fit to show: reports that name a data source are committed and posted on pull requests.

A password may hold ``/``, ``#`` or ``?`` unescaped (SQLAlchemy accepts that), and a token often
travels as a query parameter, so splitting by the URL grammar alone leaks them.
"""

from __future__ import annotations

__all__ = ["SQL_SCHEMES", "redact_url"]

# The database dialects a SQLAlchemy URL may name (``postgresql+psycopg://…``): read with SQL, not fsspec.
SQL_SCHEMES = frozenset({"sqlite", "postgresql", "postgres", "mysql", "mariadb", "mssql", "oracle"})

HIDDEN = "***"


def redact_url(source: str) -> str:
    """``source`` without credentials; a local path comes back unchanged.

    A SQLAlchemy URL is rendered by SQLAlchemy with the password hidden, and each query
    parameter keeps its name but not its value (``?password=``, ``?token=``, ``?sslkey=``…).
    Any other URL loses its user info, query string and fragment: ``s3://bucket/data.csv``.
    """
    scheme, separator, rest = source.partition("://")
    if not separator:
        return source
    if scheme.split("+", 1)[0] in SQL_SCHEMES:
        rendered = _render_sqlalchemy(source)
        if rendered is not None:
            return rendered
    return f"{scheme}://{_without_user_info_and_query(rest)}"


def _render_sqlalchemy(source: str) -> str | None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(source)
    except (ArgumentError, ValueError):  # not its grammar, or a port that is not a number
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
