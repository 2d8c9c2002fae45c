"""No credential of a source reaches any output: DVC's and Conveyor's, reports, dvc.lock, logs, any file.

Each case runs ``dvc repro ingest`` (the source stage, then ingest) in a copy of the repository
with the credentials where they belong (``data.source_env``, AWS's variables) or where they do
not (``data.source``, refused), against a server that checks them: http on 127.0.0.1, S3 through
moto, SQLite and PostgreSQL. Then every byte the run printed and every file in the copy (the DVC
cache and DVC's own temporary files included, git's objects aside) is searched for each secret.
"""

from __future__ import annotations

import base64
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from conveyor import io
from tests.conftest import ROOT, copy_repo, run
from tests.stages.conftest import running_postgres
from tests.test_remote import BUCKET, s3  # noqa: F401 (a fixture)

USER, PASSWORD, TOKEN = "reader", "pw-Kq8zX2vLm", "tok-9fJ3hQwR7s"
S3_KEY_ID, S3_SECRET = "AKIAEDGESTEST0001", "s3-secret-Vb7Nn2Lp"
ENV = "CONVEYOR_SOURCE_URL"
SECRETS = (PASSWORD, TOKEN, S3_SECRET, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())
PENGUINS = ROOT / "data" / "penguins.csv"


class CheckingHandler(SimpleHTTPRequestHandler):
    """Serves a folder only to a request with the basic-auth password and the ``?token=``; 401 otherwise."""

    def log_message(self, format: str, *args: Any) -> None:
        """Drop the access log."""

    def _authorized(self) -> bool:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        return self.headers.get("Authorization") == expected and query.get("token") == [TOKEN]

    def do_GET(self) -> None:
        """GET, if authorized."""
        if self._authorized():
            super().do_GET()
        else:
            self.send_error(401)

    def do_HEAD(self) -> None:
        """HEAD, if authorized."""
        if self._authorized():
            super().do_HEAD()
        else:
            self.send_error(401)


@pytest.fixture
def http_base(tmp_path: Path) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` serving penguins.csv to the right credentials, for the test's duration."""
    folder = tmp_path / "served"
    folder.mkdir()
    (folder / "penguins.csv").write_bytes(PENGUINS.read_bytes())
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(CheckingHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@dataclass(frozen=True)
class Case:
    """One run: ``data.source`` (and query), what ``data.source_env``'s variable holds, and the outcome."""

    source: str
    env: str | None = None
    query: str | None = None
    ok: bool = True
    error: str = ""


def repro_and_search(repo: Path, case: Case, extra_env: dict[str, str] | None = None) -> str:
    """Run ``dvc repro --force ingest`` for ``case``; assert its outcome and that no secret is anywhere. Returns stderr."""
    raw: dict[str, Any] = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
    raw["data"] |= {"source": case.source, "query": case.query, "source_env": ENV if case.env else None}
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    env = (extra_env or {}) | ({ENV: case.env} if case.env else {})
    # --force: a database's new credentials (or rows) are invisible to DVC; make retrain forces it too.
    result = run(repo, "dvc", "repro", "--verbose", "--force", "ingest", check=False, timeout=300, env=env)
    printed = result.stdout + result.stderr
    assert (result.returncode == 0) == case.ok, printed[-4000:]
    if case.ok:
        assert io.read_json(repo / "reports" / "ingest.json")["rows"] == 344
    else:
        assert case.error in result.stderr, printed[-4000:]
        errors = [line for line in result.stderr.splitlines() if line.startswith("conveyor ")]
        assert len(errors) == 1, printed[-4000:]
    # --verbose makes DVC print its own traceback of a failed stage; none may come from Conveyor.
    assert "conveyor/" not in "".join(line for line in printed.splitlines() if '.py", line ' in line), printed[-4000:]
    for secret in SECRETS:
        assert secret not in printed, f"{secret} printed:\n{printed[-4000:]}"
        for path in repo.rglob("*"):
            # params.yaml is the input: a refused case wrote the secret there itself.
            if path.is_file() and ".git" not in path.relative_to(repo).parts and path.name != "params.yaml":
                assert secret.encode() not in path.read_bytes(), f"{secret} in {path.relative_to(repo)}"
    return result.stderr


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of the repository to run the front of the pipeline in."""
    return copy_repo(tmp_path / "repo")


@pytest.mark.slow
def test_http_credentials_reach_no_output(repo: Path, http_base: str) -> None:
    public = f"{http_base}/penguins.csv"
    address = http_base.removeprefix("http://")
    with_credentials = f"http://{USER}:{PASSWORD}@{address}/penguins.csv?token={TOKEN}"
    repro_and_search(repo, Case(public, env=with_credentials))
    assert yaml.safe_load((repo / "data" / "source.json").read_text())["version"], "the server's validators"
    repro_and_search(
        repo,
        Case(
            public,
            env=f"http://{USER}:wrong-{PASSWORD}@{address}/penguins.csv?token={TOKEN}",
            ok=False,
            error="HTTP Error 401",
        ),
    )
    repro_and_search(
        repo,
        Case(
            f"{http_base}/nope.csv", env=with_credentials.replace("penguins", "nope"), ok=False, error="HTTP Error 404"
        ),
    )
    repro_and_search(repo, Case(with_credentials, ok=False, error="data.source: holds user info before an '@'"))
    repro_and_search(
        repo, Case(f"{public}?token={TOKEN}", ok=False, error="data.source: holds query parameter(s) ['token']")
    )
    repro_and_search(
        repo,
        Case(
            public,
            env=f"http://{USER}:{PASSWORD}@elsewhere.invalid/penguins.csv",
            ok=False,
            error="it may only add credentials",
        ),
    )


@pytest.mark.slow
def test_s3_credentials_reach_no_output(repo: Path, s3: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    body = PENGUINS.read_bytes()
    urllib.request.urlopen(
        urllib.request.Request(
            # urllib's default form content type would make moto store an empty object.
            f"{s3}/{BUCKET}/penguins.csv",
            data=body,
            method="PUT",
            headers={"Content-Type": "text/csv"},
        ),
        timeout=10,
    ).close()
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    public = f"s3://{BUCKET}/penguins.csv"
    repro_and_search(repo, Case(public))
    repro_and_search(repo, Case(public, env=f"s3://{S3_KEY_ID}:{S3_SECRET}@{BUCKET}/penguins.csv"))
    repro_and_search(repo, Case(f"s3://{BUCKET}/missing.csv", ok=False, error="missing.csv: cannot be read"))
    repro_and_search(
        repo,
        Case(f"s3://{S3_KEY_ID}:{S3_SECRET}@{BUCKET}/penguins.csv", ok=False, error="data.source: holds user info"),
    )


@pytest.mark.slow
def test_sql_credentials_reach_no_output(repo: Path, tmp_path: Path) -> None:
    database = tmp_path / "penguins.db"
    url = f"sqlite:///{database}"
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    io.read_source(str(PENGUINS)).to_sql("penguins", engine, index=False)
    engine.dispose()
    repro_and_search(repo, Case(url, query="SELECT * FROM penguins"))
    repro_and_search(repo, Case(url, query="SELECT * FROM pengiuns", ok=False, error="no such table: pengiuns"))
    shop = "mysql://reader@127.0.0.1/shop"
    repro_and_search(
        repo,
        Case(
            shop,
            env=f"mysql://reader:{PASSWORD}@127.0.0.1/shop",
            query="SELECT 1",
            ok=False,
            error="cannot use this SQLAlchemy URL",
        ),
    )
    repro_and_search(
        repo,
        Case(
            f"mysql://reader:{PASSWORD}@127.0.0.1/shop",
            query="SELECT 1",
            ok=False,
            error="data.source: holds a password",
        ),
    )
    with running_postgres(PASSWORD) as postgres:
        engine = sqlalchemy.create_engine(postgres)
        io.read_source(str(PENGUINS)).to_sql("penguins", engine, index=False)
        engine.dispose()
        public = postgres.replace(f":{PASSWORD}@", "@")
        repro_and_search(repo, Case(public, env=postgres, query="SELECT * FROM penguins"))
        wrong = postgres.replace(PASSWORD, f"wrong-{PASSWORD}")
        repro_and_search(
            repo,
            Case(public, env=wrong, query="SELECT * FROM penguins", ok=False, error="password authentication failed"),
        )
