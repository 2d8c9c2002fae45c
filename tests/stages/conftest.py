"""Corrupted variants of the default data (``data/penguins.csv``), shared by the fast and slow tests.

Each variant is the bytes of a CSV file that a user could plausibly hand the pipeline, with the
stage that must stop it and the words its message must contain (column, problem, values).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Literal

import pandas as pd
import pytest

from tests.conftest import ROOT, free_port

PENGUINS = ROOT / "data" / "penguins.csv"


def clean_text() -> str:
    """The default data exactly as committed."""
    return PENGUINS.read_text(encoding="utf-8")


def clean_frame() -> pd.DataFrame:
    """The default data as a frame, every value kept as the text it is in the file."""
    return pd.read_csv(StringIO(clean_text()), dtype=str, keep_default_na=False)


def _csv(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False).encode("utf-8")


def _edit(change: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[], bytes]:
    return lambda: _csv(change(clean_frame()))


def _set(column: str, rows: slice | list[int], value: str) -> Callable[[], bytes]:
    def change(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[df.index[rows], column] = value
        return df

    return _edit(change)


def _lines(change: Callable[[list[str]], list[str]]) -> Callable[[], bytes]:
    return lambda: "\n".join(change(clean_text().splitlines())).encode("utf-8")


def _leak(df: pd.DataFrame) -> pd.DataFrame:
    # A relabelling of the species that still passes every column check: island names.
    df["island"] = df["species"].map({"Adelie": "Torgersen", "Chinstrap": "Dream", "Gentoo": "Biscoe"})
    return df


def _latin1() -> bytes:
    text = clean_text()
    return text.replace("Biscoe", "Bisc\u00f6e", 1).encode("latin-1")


@dataclass(frozen=True)
class Corruption:
    """A broken source file, the stage that must stop it, and what its message must say."""

    name: str
    make: Callable[[], bytes]
    stage: Literal["ingest", "validate"]
    expected: tuple[str, ...]

    def write(self, path: Path) -> Path:
        """Write the corrupted file to ``path``."""
        path.write_bytes(self.make())
        return path


CORRUPTIONS: tuple[Corruption, ...] = (
    Corruption(
        "text_in_float_column",
        _set("bill_length_mm", [10, 11], "forty"),
        "validate",
        ("bill_length_mm", "not numbers", "forty"),
    ),
    Corruption(
        "fraction_in_int_column",
        _set("flipper_length_mm", [3], "181.5"),
        "validate",
        ("flipper_length_mm", "whole numbers", "181.5"),
    ),
    Corruption(
        "missing_column",
        _edit(lambda df: df.drop(columns=["bill_depth_mm"])),
        "validate",
        ("bill_depth_mm", "missing from the data"),
    ),
    Corruption(
        "all_null_column",
        _set("body_mass_g", slice(None), ""),
        "validate",
        ("body_mass_g", "every value is missing"),
    ),
    Corruption(
        "above_max",
        _set("bill_length_mm", [0, 5], "999"),
        "validate",
        ("bill_length_mm", "above the contract's max 80.0", "999.0"),
    ),
    Corruption(
        "below_min",
        _set("body_mass_g", [7], "-3750"),
        "validate",
        ("body_mass_g", "below the contract's min 1500", "-3750.0"),
    ),
    Corruption(
        "unseen_category",
        _set("island", [1, 2], "Atlantis"),
        "validate",
        ("island", "outside the contract's allowed set", "Atlantis"),
    ),
    Corruption(
        "too_many_missing",
        _set("sex", slice(0, 60), ""),
        "validate",
        ("sex", "missing; the contract allows at most 10.0%"),
    ),
    Corruption(
        "duplicated_rows",
        _edit(lambda df: pd.concat([df, df.head(20)], ignore_index=True)),
        "validate",
        ("duplicate_rows", "20 duplicated row(s)", "344"),
    ),
    Corruption("empty_file", lambda: b"", "ingest", ("empty",)),
    Corruption(
        "header_only",
        _lines(lambda lines: lines[:1]),
        "validate",
        ("min_rows", "0 rows", "at least 100"),
    ),
    Corruption(
        "extra_field_in_row",
        _lines(lambda lines: [*lines[:5], lines[5] + ",oops", *lines[6:]]),
        "ingest",
        ("malformed CSV", "Expected 8 fields in line 6, saw 9"),
    ),
    Corruption(
        "unclosed_quote",
        _lines(lambda lines: [*lines[:5], lines[5].replace("Adelie,", 'Adelie,"', 1), *lines[6:]]),
        "ingest",
        ("malformed CSV", "EOF inside string"),
    ),
    Corruption(
        "target_column_absent",
        _edit(lambda df: df.drop(columns=["species"])),
        "validate",
        ("target_present", "species", "missing from the data"),
    ),
    Corruption(
        "target_labels_missing",
        _set("species", [0, 100, 200], ""),
        "validate",
        ("species", "3 row(s) have no label"),
    ),
    Corruption(
        "single_class",
        _edit(lambda df: df[df["species"] == "Adelie"]),
        "validate",
        ("species", "at least two classes, found 1", "Adelie"),
    ),
    Corruption(
        "leakage_column",
        _edit(_leak),
        "validate",
        ("label_leakage", "island", "reproduces the target 'species'"),
    ),
    Corruption("latin1_encoding", _latin1, "ingest", ("not UTF-8", "byte 0xf6 on line 22")),
)


def corruption(name: str) -> Corruption:
    """The variant called ``name``."""
    return next(c for c in CORRUPTIONS if c.name == name)


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
