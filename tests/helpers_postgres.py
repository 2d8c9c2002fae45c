"""A throwaway PostgreSQL server for tests: Debian's binaries, a temporary cluster, 127.0.0.1, a free port.

PostgreSQL refuses to run as root, so under root the server runs as the ``postgres`` system user
(created by Debian's package) through ``runuser``. Where no server binaries exist the caller skips
with a plain message; CI installs them (``.ci/run``: ``apt-get install postgresql``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers_process import free_port

SERVER_USER = "postgres"
DATABASE_USER = "conveyor"


def server_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``pg_ctl``, or the one on PATH."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if found:
        return found[-1].parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


@contextmanager
def running_postgres(password: str) -> Iterator[str]:
    """Start a fresh server; yield its ``postgresql+psycopg://`` URL; stop it and delete its files."""
    binaries = server_bin()
    if binaries is None:
        pytest.fail(
            "PostgreSQL is not installed (no pg_ctl in /usr/lib/postgresql/*/bin or on PATH): `make setup` installs it "
            "with apt-get as root or with sudo; elsewhere install PostgreSQL's server"
        )
    as_user: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="conveyor-pg-"))
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam(SERVER_USER)
        except KeyError:
            shutil.rmtree(base)
            pytest.fail(
                f"PostgreSQL will not run as root and there is no {SERVER_USER!r} user to run it as: "
                "Debian's postgresql package creates it (`make setup`)"
            )
        os.chown(base, account.pw_uid, account.pw_gid)
        # runuser lives in /usr/sbin, which a non-login PATH may lack.
        runuser = shutil.which("runuser", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
        if runuser is None:
            shutil.rmtree(base)
            pytest.fail(
                f"PostgreSQL will not run as root and there is no runuser to run it as {SERVER_USER!r} (util-linux)"
            )
        as_user = [runuser, "-u", SERVER_USER, "--"]

    def server_command(*args: str) -> None:
        subprocess.run([*as_user, *args], cwd=base, check=True, capture_output=True, text=True, timeout=120)

    data, port = base / "data", free_port()
    try:
        (base / "password").write_text(password, encoding="utf-8")
        if as_user:
            os.chown(base / "password", pwd.getpwnam(SERVER_USER).pw_uid, -1)
        server_command(
            str(binaries / "initdb"),
            f"--pgdata={data}",
            f"--username={DATABASE_USER}",
            f"--pwfile={base / 'password'}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--no-sync",
        )
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off"
        server_command(
            str(binaries / "pg_ctl"), "start", f"--pgdata={data}", "--wait", f"--log={base / 'log'}", f"-o {options}"
        )
        try:
            yield f"postgresql+psycopg://{DATABASE_USER}:{password}@127.0.0.1:{port}/postgres"
        finally:
            server_command(str(binaries / "pg_ctl"), "stop", f"--pgdata={data}", "--mode=fast", "--wait")
    except subprocess.CalledProcessError as exc:
        log = (base / "log").read_text(encoding="utf-8") if (base / "log").exists() else ""
        pytest.fail(f"{' '.join(map(str, exc.cmd))} failed:\n{exc.stdout}\n{exc.stderr}\n{log}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
