"""Hostile sources end ingest with one line naming the limit or the problem, within a memory cap.

Each case runs ``conveyor ingest`` as its own process with its address space capped
(``RLIMIT_AS``), as an attacker's or a careless operator's source would meet it: a source that
got past a limit would be killed or raise ``MemoryError`` with a traceback instead.
"""

from __future__ import annotations

import gzip
import os
import resource
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import BIN, ROOT, copy_repo, run

# The cap each ingest runs under: a penguins ingest peaks at about 1.4 GiB of address space.
MEMORY_CAP = 2560 * 1024 * 1024
TIMEOUT_S = 120
CHUNK = 16 * 1024 * 1024


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def gzip_members(first: bytes, repeated: bytes, total: int) -> bytes:
    """A gzip stream of ``first`` then ``repeated`` until ``total`` bytes, as concatenated members.

    Each member is compressed once and repeated: a few MB on disk that decompress to ``total``.
    """
    member = gzip.compress(repeated, compresslevel=9, mtime=0)
    return gzip.compress(first, mtime=0) + member * (total // len(repeated))


def wide_header(folder: Path) -> str:
    path = folder / "wide.csv"
    path.write_text(",".join(f"c{i}" for i in range(1_000_000)) + "\n" + "1," * 999_999 + "1\n", encoding="utf-8")
    return str(path)


def gzip_bomb(folder: Path) -> str:
    path = folder / "bomb.csv.gz"
    row = b"x" * 200 + b",1\n"
    path.write_bytes(gzip_members(b"a,b\n", row * (CHUNK // len(row)), 4 * 1024**3))
    return str(path)


def huge_field(folder: Path) -> str:
    path = folder / "field.csv.gz"
    path.write_bytes(gzip_members(b"a,b\n1,", b"x" * CHUNK, 2 * 1024**3))
    return str(path)


def many_rows(folder: Path) -> str:
    path = folder / "rows.csv"
    path.write_text("a,b\n" + "1,2\n" * 1000, encoding="utf-8")
    return str(path)


def struct_column(folder: Path) -> str:
    path = folder / "struct.parquet"
    points = pa.array([{"x": 1, "y": 2}, {"x": 3, "y": 4}])
    pq.write_table(pa.table({"id": [1, 2], "point": points}), path)
    return str(path)


def list_column(folder: Path) -> str:
    path = folder / "list.parquet"
    pq.write_table(pa.table({"id": [1, 2], "tags": pa.array([["a"], ["b", "c"]])}), path)
    return str(path)


def dev_zero_url(folder: Path) -> str:
    return "file:///dev/zero"


Case = tuple[Callable[[Path], str], dict[str, int], str]
CASES: dict[str, Case] = {
    "wide_header": (wide_header, {}, "more than 10000 columns (data.limits.max_columns)"),
    "gzip_bomb": (gzip_bomb, {"max_bytes": 64 * 1024 * 1024}, "more than 67108864 bytes (data.limits.max_bytes)"),
    "huge_field": (huge_field, {}, "a field longer than 1048576 bytes (data.limits.max_field_bytes)"),
    "many_rows": (many_rows, {"max_rows": 100}, "more than 100 rows (data.limits.max_rows)"),
    "struct_column": (struct_column, {}, "nested column(s) 'point' (struct<x: int64, y: int64>)"),
    "list_column": (list_column, {}, "nested column(s) 'tags' (list<element: string>)"),
    "dev_zero_url": (dev_zero_url, {}, "not a regular file (a pipe, device or socket)"),
}


def params_file(folder: Path, source: str, limits: dict[str, int]) -> Path:
    """The repository's params with ``data.source`` and ``data.limits`` changed, written into ``folder``."""
    raw: dict[str, Any] = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    raw["data"]["source"] = source
    if limits:
        raw["data"].setdefault("limits", {}).update(limits)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


@pytest.mark.parametrize("name", list(CASES))
def test_a_hostile_source_stops_ingest_in_one_line_within_the_memory_cap(tmp_path: Path, name: str) -> None:
    make, limits, expected = CASES[name]
    source = make(tmp_path)
    params = params_file(tmp_path, source, limits)
    result = subprocess.run(
        [
            BIN / "conveyor",
            "ingest",
            "--params",
            params,
            "--out",
            tmp_path / "raw.parquet",
            "--report",
            tmp_path / "r.json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        preexec_fn=_cap_memory,
        check=False,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("conveyor ingest: error: "), lines[0]
    assert expected in lines[0]
    assert not (tmp_path / "raw.parquet").exists()


def test_within_the_cap_the_default_source_ingests(tmp_path: Path) -> None:
    # The cap itself leaves room for an ordinary ingest: the cases above fail for their source.
    params = params_file(tmp_path, str(ROOT / "data" / "penguins.csv"), {})
    result = subprocess.run(
        [
            BIN / "conveyor",
            "ingest",
            "--params",
            params,
            "--out",
            tmp_path / "raw.parquet",
            "--report",
            tmp_path / "r.json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        preexec_fn=_cap_memory,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "344 rows" in result.stdout


def fifo(folder: Path) -> Path:
    path = folder / "data.csv"
    os.mkfifo(path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fifo", "dev_zero"])
def test_dvc_repro_on_a_fifo_or_device_ends_with_one_line(tmp_path: Path, kind: str) -> None:
    # DVC used to hash data.source before any command ran: it read the FIFO or /dev/zero forever.
    repo = copy_repo(tmp_path / "repo")
    source = str(fifo(tmp_path)) if kind == "fifo" else "/dev/zero"
    raw: dict[str, Any] = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
    raw["data"]["source"] = source
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    try:
        result = run(repo, BIN / "dvc", "repro", check=False, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"dvc repro with data.source {source} did not end within 60 s")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("conveyor ")]
    assert errors == [
        f"conveyor source: error: {source}: not a regular file (a pipe, device or socket); "
        "data.source in params.yaml must name a file or a URL"
    ], result.stderr
    assert "Traceback" not in result.stdout + result.stderr
