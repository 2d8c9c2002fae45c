"""The Dask engine's ingest: SQL by ranges of data.range_column, and data.limits and data.source_env as pandas applies them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy
import yaml

from conveyor import io
from conveyor.config import Config, CsvFormat, DataConfig, parse_config
from conveyor.engine import ingest as dask_ingest
from conveyor.engine import tables
from conveyor.errors import ConfigError, ConveyorError, DataError
from conveyor.stages import ingest
from tests.conftest import ROOT
from tests.stages.conftest import running_postgres

PENGUINS = ROOT / "data" / "penguins.csv"
QUERY = "SELECT * FROM penguins ORDER BY id"
SOURCE_ENV = "CONVEYOR_TEST_DASK_SOURCE_URL"


def dask_params(**data: Any) -> Config:
    """The repository's params with engine: dask, xgboost and ``data`` keys replaced."""
    raw: dict[str, Any] = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    raw["data"] |= data
    raw["engine"] = "dask"
    raw["model"] = {"estimator": "xgboost", "params": {}}
    raw["tune"] = {"enabled": False}
    return parse_config(raw)


def keyed_penguins() -> pd.DataFrame:
    """The penguins with an ``id`` key, and columns whose type only the whole table settles.

    ``later`` and ``later_text`` have values only past row 300, ``gappy`` whole numbers but one missing
    value at row 50: one range alone would give them another type than the table as one.
    """
    df = io.read_source(str(PENGUINS))
    df.insert(0, "id", range(1, len(df) + 1))
    late = df["id"] > 300
    df["later"] = pd.Series(1.5, index=df.index, dtype=object).where(late, None)
    df["later_text"] = pd.Series("x", index=df.index, dtype=object).where(late, None)
    df["gappy"] = df["id"].astype(object).where(df["id"] != 50, None)
    return df


@pytest.fixture
def database(tmp_path: Path) -> str:
    """A SQLite file holding :func:`keyed_penguins` as table ``penguins``."""
    url = f"sqlite:///{tmp_path / 'penguins.db'}"
    engine = sqlalchemy.create_engine(url)
    try:
        keyed_penguins().to_sql("penguins", engine, index=False)
    finally:
        engine.dispose()
    return url


@contextmanager
def statements() -> Iterator[list[str]]:
    """Every SQL statement any engine executes inside the block."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    sqlalchemy.event.listen(sqlalchemy.engine.Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sqlalchemy.event.remove(sqlalchemy.engine.Engine, "before_cursor_execute", record)


def pandas_ingest(data: DataConfig, path: Path, environ: dict[str, str] | None = None) -> pd.DataFrame:
    """What the pandas engine's ingest writes for ``data``, read back."""
    io.write_table(ingest.ingest(data, environ=environ), path)
    return io.read_table(path)


def test_sql_is_read_by_ranges_into_the_table_pandas_reads(database: str, tmp_path: Path) -> None:
    cfg = dask_params(source=database, query=QUERY, range_column="id")
    with statements() as seen:
        rows = dask_ingest.write_sql_ranges(cfg.data, tmp_path / "raw.parquet", rows_per_partition=100)
    files = sorted((tmp_path / "raw.parquet").glob("*.parquet"))
    # 344 rows, ids 1..344, at most 100 a range: 4 range queries, each bounded, one file each.
    assert rows == 344
    assert len(files) == 4
    assert [pq.read_metadata(f).num_rows for f in files] == [86, 86, 86, 86]
    ranged = [s for s in seen if "ORDER BY" in s and "COUNT" not in s and "1 = 0" not in s]
    assert len(ranged) == 4
    assert all("WHERE" in s for s in ranged)
    assert not any(s.strip() == QUERY for s in seen), "the query itself, unbounded, was never run"
    expected = pandas_ingest(cfg.data, tmp_path / "pandas.parquet")
    pd.testing.assert_frame_equal(io.read_table(tmp_path / "raw.parquet"), expected)
    assert tables.read_table(tmp_path / "raw.parquet").npartitions == 4


def test_float_ranges_cover_every_row_once(database: str, tmp_path: Path) -> None:
    cfg = dask_params(
        source=database,
        query="SELECT * FROM penguins WHERE bill_depth_mm IS NOT NULL ORDER BY bill_depth_mm, id",
        range_column="bill_depth_mm",
    )
    rows = dask_ingest.write_sql_ranges(cfg.data, tmp_path / "raw.parquet", rows_per_partition=50)
    got = io.read_table(tmp_path / "raw.parquet")
    assert rows == len(got) == 342
    assert len(list((tmp_path / "raw.parquet").glob("*.parquet"))) >= 5
    assert sorted(got["id"]) == sorted(pandas_ingest(cfg.data, tmp_path / "pandas.parquet")["id"])


def test_a_dask_sql_source_needs_a_range_column(database: str) -> None:
    with pytest.raises(ConfigError, match=r"data\.range_column: required with engine: dask and a SQL data\.source"):
        dask_params(source=database, query=QUERY)
    with pytest.raises(ConfigError, match=r"data\.range_column: only used with a SQLAlchemy URL"):
        dask_params(source=str(PENGUINS), range_column="id")


@pytest.mark.parametrize(
    ("column", "query", "message"),
    [
        (
            "ident",
            QUERY,
            r"data\.range_column: 'ident' is not a column of data\.query's result \(sqlite:///.*\); it has \['id', ",
        ),
        (
            "species",
            QUERY,
            r"data\.range_column: 'species' holds str values \('Adelie' … 'Gentoo'\) .*expected numbers",
        ),
        (
            "body_mass_g",
            QUERY,
            r"data\.range_column: 'body_mass_g' has 2 missing value\(s\) .*no range would read those rows",
        ),
    ],
)
def test_a_range_column_that_cannot_split_the_query_is_named(
    database: str, tmp_path: Path, column: str, query: str, message: str
) -> None:
    cfg = dask_params(source=database, query=query, range_column=column)
    with pytest.raises(DataError, match=message):
        dask_ingest.write_sql_ranges(cfg.data, tmp_path / "raw.parquet")
    assert not (tmp_path / "raw.parquet").exists()


@pytest.mark.parametrize(
    "limits",
    [{"max_rows": 100}, {"max_columns": 5}],
    ids=["max_rows", "max_columns"],
)
def test_sql_limits_stop_both_engines_with_one_message(database: str, tmp_path: Path, limits: dict[str, int]) -> None:
    cfg = dask_params(source=database, query=QUERY, range_column="id", limits=limits)
    with pytest.raises(DataError) as pandas_error:
        ingest.ingest(cfg.data)
    with pytest.raises(DataError) as dask_error:
        dask_ingest.write_sql_ranges(cfg.data, tmp_path / "raw.parquet", rows_per_partition=100)
    assert str(dask_error.value) == str(pandas_error.value)
    assert f"(data.limits.{next(iter(limits))})" in str(dask_error.value)


def test_sql_through_source_env(database: str, tmp_path: Path) -> None:
    cfg = dask_params(source=database, query=QUERY, range_column="id", source_env=SOURCE_ENV)
    with pytest.raises(ConfigError, match=f"data.source_env: the environment variable {SOURCE_ENV} is not set"):
        dask_ingest.write_sql_ranges(cfg.data, tmp_path / "raw.parquet", environ={})
    elsewhere = database.replace("penguins.db", "other.db")
    with pytest.raises(ConfigError, match=f"data.source_env: {SOURCE_ENV} points to sqlite:///.*other.db"):
        dask_ingest.write_sql_ranges(cfg.data, tmp_path / "raw.parquet", environ={SOURCE_ENV: elsewhere})
    dask_ingest.write_sql_ranges(cfg.data, tmp_path / "raw.parquet", environ={SOURCE_ENV: database})
    expected = pandas_ingest(cfg.data, tmp_path / "pandas.parquet", environ={SOURCE_ENV: database})
    pd.testing.assert_frame_equal(io.read_table(tmp_path / "raw.parquet"), expected)


def test_sql_errors_hide_the_password_from_source_env(tmp_path: Path) -> None:
    cfg = dask_params(
        source="postgresql+psycopg://reader@127.0.0.1:9/shop", query=QUERY, range_column="id", source_env=SOURCE_ENV
    )
    environ = {SOURCE_ENV: "postgresql+psycopg://reader:s3cret-p4ss@127.0.0.1:9/shop"}
    with pytest.raises(DataError) as pandas_error:
        ingest.ingest(cfg.data, environ=environ)
    with pytest.raises(DataError) as dask_error:
        dask_ingest.write_sql_ranges(cfg.data, tmp_path / "raw.parquet", environ=environ)
    assert str(dask_error.value).startswith("postgresql+psycopg://reader@127.0.0.1:9/shop: ")
    assert "s3cret-p4ss" not in str(dask_error.value)
    assert str(dask_error.value) == str(pandas_error.value)


def test_run_reads_sql_by_ranges(database: str, tmp_path: Path, on_test_client: None) -> None:
    cfg = dask_params(source=database, query=QUERY, range_column="id")
    summary = dask_ingest.run(cfg, out=tmp_path / "raw.parquet", report=tmp_path / "ingest.json")
    assert summary.rows == 344
    pd.testing.assert_frame_equal(
        io.read_table(tmp_path / "raw.parquet"), pandas_ingest(cfg.data, tmp_path / "pandas.parquet")
    )


def wide_csv(path: Path) -> Path:
    """The penguins as CSV with one 200-byte island name."""
    df = io.read_source(str(PENGUINS))
    df.loc[10, "island"] = "x" * 200
    df.to_csv(path, index=False)
    return path


FILE_LIMITS = [
    ("csv", {"max_bytes": 4096}),
    ("csv", {"max_columns": 5}),
    ("csv", {"max_field_bytes": 100}),
    ("csv", {"max_rows": 300}),
    ("parquet", {"max_bytes": 4096}),
    ("parquet", {"max_columns": 5}),
    ("parquet", {"max_field_bytes": 100}),
    ("parquet", {"max_rows": 300}),
]


@pytest.mark.parametrize(("kind", "limits"), FILE_LIMITS, ids=[f"{k}-{next(iter(v))}" for k, v in FILE_LIMITS])
def test_file_limits_stop_both_engines_with_one_message(
    tmp_path: Path, on_test_client: None, kind: str, limits: dict[str, int]
) -> None:
    source = wide_csv(tmp_path / "penguins.csv")
    if kind == "parquet":
        io.read_source(str(source)).to_parquet(tmp_path / "penguins.parquet", index=False)
        source = tmp_path / "penguins.parquet"
    cfg = dask_params(source=str(source), limits=limits)
    with pytest.raises(DataError) as pandas_error:
        ingest.ingest(cfg.data)
    with pytest.raises(DataError) as dask_error:
        dask_ingest.run(cfg, out=tmp_path / "raw.parquet", report=tmp_path / "ingest.json")
    assert str(dask_error.value) == str(pandas_error.value)
    assert f"(data.limits.{next(iter(limits))})" in str(dask_error.value)
    assert not (tmp_path / "ingest.json").exists()


def test_files_within_the_limits_are_read_by_both(tmp_path: Path, on_test_client: None) -> None:
    source = wide_csv(tmp_path / "penguins.csv")
    cfg = dask_params(source=str(source))
    summary = dask_ingest.run(cfg, out=tmp_path / "raw.parquet", report=tmp_path / "ingest.json")
    assert summary.rows == 344
    pd.testing.assert_frame_equal(
        io.read_table(tmp_path / "raw.parquet"), pandas_ingest(cfg.data, tmp_path / "pandas.parquet")
    )


def test_a_file_source_env_is_looked_up_by_the_dask_engine(
    tmp_path: Path, on_test_client: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = dask_params(source=str(PENGUINS), source_env=SOURCE_ENV)
    monkeypatch.delenv(SOURCE_ENV, raising=False)
    with pytest.raises(ConveyorError, match=f"data.source_env: the environment variable {SOURCE_ENV} is not set"):
        dask_ingest.run(cfg, out=tmp_path / "raw.parquet", report=tmp_path / "ingest.json")
    monkeypatch.setenv(SOURCE_ENV, str(PENGUINS))
    assert dask_ingest.run(cfg, out=tmp_path / "raw.parquet", report=tmp_path / "ingest.json").rows == 344


@pytest.mark.slow
def test_sql_by_ranges_on_postgresql_is_the_table_pandas_reads(tmp_path: Path) -> None:
    # A real server: the subquery's alias and the range queries' parameters as PostgreSQL takes them.
    with running_postgres("ranges-pass") as url:
        engine = sqlalchemy.create_engine(url)
        try:
            keyed_penguins().to_sql("penguins", engine, index=False)
        finally:
            engine.dispose()
        shown = url.replace(":ranges-pass@", "@")  # the password stays in the environment
        cfg = dask_params(source=shown, query=QUERY, range_column="id", source_env=SOURCE_ENV)
        environ = {SOURCE_ENV: url}
        written = dask_ingest.write_sql_ranges(
            cfg.data, tmp_path / "raw.parquet", environ=environ, rows_per_partition=100
        )
        assert written == 344
        expected = pandas_ingest(cfg.data, tmp_path / "pandas.parquet", environ)
    assert len(list((tmp_path / "raw.parquet").glob("*.parquet"))) == 4
    pd.testing.assert_frame_equal(io.read_table(tmp_path / "raw.parquet"), expected)


def late_typed_csv(path: Path) -> Path:
    """The penguins as CSV with columns whose type only the file's last rows settle.

    ``fraction`` is whole numbers until a 2.5 in the last row; ``blank`` whole numbers until one
    missing value there; ``code`` zero-padded digits until a letter code (pandas keeps it as text,
    so ``007`` stays ``007``); ``flag`` true/false, missing in the last 100 rows; ``flag_or_number``
    true/false until a 1 (text to pandas); ``late_text`` empty until text in the last rows.
    """
    df = io.read_source(str(PENGUINS))
    rows = len(df)
    last = pd.Series(range(rows)) >= rows - 3
    df["fraction"] = pd.Series(range(rows), dtype=object).where(~last, 2.5)
    df["blank"] = pd.Series(range(rows), dtype=object).where(~last, None)
    df["code"] = pd.Series([f"{i:03d}" for i in range(rows)], dtype=object).where(~last, "A12")
    df["flag"] = (pd.Series(range(rows)) % 2 == 0).astype(object).where(pd.Series(range(rows)) < rows - 100, None)
    df["flag_or_number"] = (pd.Series(range(rows)) % 2 == 0).astype(object).where(~last, 1)
    df["late_text"] = pd.Series("x", index=df.index, dtype=object).where(last, None)
    df.to_csv(path, index=False)
    return path


def test_a_csv_read_in_blocks_gets_the_types_of_the_whole_file(
    tmp_path: Path, on_test_client: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Blocks of 2 KiB: the 344 rows are about 15 blocks, so the first ones alone would type every
    # late-typed column otherwise, and there are more than ten files to order.
    monkeypatch.setattr(tables, "BLOCK_SIZE", 2048)
    cfg = dask_params(source=str(late_typed_csv(tmp_path / "late.csv")))
    summary = dask_ingest.run(cfg, out=tmp_path / "raw.parquet", report=tmp_path / "ingest.json")
    files = sorted(p.name for p in (tmp_path / "raw.parquet").iterdir())
    assert len(files) > 10
    assert summary.rows == 344
    expected = pandas_ingest(cfg.data, tmp_path / "pandas.parquet")
    assert expected["code"].iloc[7] == "007"
    assert str(expected["fraction"].dtype) == str(expected["blank"].dtype) == "float64"
    pd.testing.assert_frame_equal(io.read_table(tmp_path / "raw.parquet"), expected)
    pd.testing.assert_frame_equal(
        tables.read_table(tmp_path / "raw.parquet").compute().reset_index(drop=True), expected
    )


def test_partition_files_are_named_in_partition_order() -> None:
    names = [tables.part_name(index) for index in range(120)]
    assert sorted(names) == names


def noted_csv(path: Path) -> Path:
    """The penguins as CSV with a free-text ``note``: every third quoted, holding line breaks, commas and quotes."""
    df = io.read_source(str(PENGUINS))
    df["note"] = [f'seen {i}\nat dusk, "near" the rocks\n' if i % 3 == 0 else f"seen {i}" for i in range(len(df))]
    df.to_csv(path, index=False)
    return path


def test_line_breaks_inside_quoted_fields_never_start_a_block(
    tmp_path: Path, on_test_client: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = noted_csv(tmp_path / "noted.csv")
    data = source.read_bytes()
    ranges = io.scan_csv(str(source), dask_params(source=str(source)).data.limits, CsvFormat(), block_bytes=2048)
    assert len(ranges) > 10
    assert [start for start, _ in ranges[1:]] == [end for _, end in ranges[:-1]]
    assert (ranges[0][0], ranges[-1][1]) == (0, len(data))
    # Every block is whole rows: pandas reads each (header in front) with no row cut in two.
    header = data[: data.index(b"\n") + 1]
    rows = [len(pd.read_csv(BytesIO(data[a:b] if a == 0 else header + data[a:b]))) for a, b in ranges]
    assert sum(rows) == 344
    # Cut, as Dask cuts, at the first line end past each multiple of 2 KiB, a block would start inside a note.
    naive = [data.index(b"\n", k * 2048) + 1 for k in range(1, len(data) // 2048)]
    assert any(data.count(b'"', 0, cut) % 2 for cut in naive)
    monkeypatch.setattr(tables, "BLOCK_SIZE", 2048)
    cfg = dask_params(source=str(source))
    dask_ingest.run(cfg, out=tmp_path / "raw.parquet", report=tmp_path / "ingest.json")
    pd.testing.assert_frame_equal(
        io.read_table(tmp_path / "raw.parquet"), pandas_ingest(cfg.data, tmp_path / "p.parquet")
    )


@pytest.mark.slow
def test_a_csv_on_s3_is_read_in_blocks_as_pandas_reads_it(
    tmp_path: Path,
    on_test_client: None,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import fsspec

    source = noted_csv(tmp_path / "noted.csv")
    fsspec.filesystem("s3", skip_instance_cache=True).put(str(source), f"{s3_bucket}/noted.csv")
    monkeypatch.setattr(tables, "BLOCK_SIZE", 2048)
    cfg = dask_params(source=f"s3://{s3_bucket}/noted.csv")
    summary = dask_ingest.run(cfg, out=tmp_path / "raw.parquet", report=tmp_path / "ingest.json")
    assert len(list((tmp_path / "raw.parquet").iterdir())) > 10
    assert summary.rows == 344
    local = pandas_ingest(dask_params(source=str(source)).data, tmp_path / "p.parquet")
    pd.testing.assert_frame_equal(io.read_table(tmp_path / "raw.parquet"), local)


def test_a_compressed_csv_is_refused_by_the_dask_engine_with_what_to_do(tmp_path: Path, on_test_client: None) -> None:
    source = tmp_path / "penguins.csv.gz"
    io.read_source(str(PENGUINS)).to_csv(source, index=False)
    cfg = dask_params(source=str(source))
    assert len(ingest.ingest(cfg.data)) == 344
    with pytest.raises(DataError, match=r"penguins\.csv\.gz: a compressed file cannot be cut into blocks.*Parquet"):
        dask_ingest.run(cfg, out=tmp_path / "raw.parquet", report=tmp_path / "ingest.json")
    assert not (tmp_path / "ingest.json").exists()


def european_csv(path: Path) -> Path:
    """The penguins as a spreadsheet in much of Europe saves them: ``;`` between fields, ``1,5`` for
    1.5, cp1252 text (an island named ``Biscoe-Süd``), a quoted note holding ``;`` and a line break,
    and ``?`` for a body mass not measured."""
    df = io.read_source(str(PENGUINS))
    # As text, so the `?` fits in (to_csv writes an object column's floats with a point: whole grams here).
    df["body_mass_g"] = df["body_mass_g"].map(lambda grams: "" if pd.isna(grams) else f"{grams:.0f}")
    df.loc[df.index % 25 == 1, "body_mass_g"] = "?"
    df.loc[df["island"] == "Biscoe", "island"] = "Biscoe-Süd"
    df["note"] = pd.Series("plain", index=df.index, dtype=object).where(df.index % 40 != 0, "seen; twice\nat dusk")
    df.to_csv(path, index=False, sep=";", decimal=",", encoding="cp1252")
    return path


EUROPEAN = {"delimiter": ";", "decimal": ",", "encoding": "cp1252", "missing": ["?"]}


def read_with(engine: str, cfg: Config, tmp_path: Path) -> None:
    """Ingest ``cfg``'s source with ``engine``: the pandas engine's read, or the Dask stage into ``tmp_path``."""
    if engine == "pandas":
        ingest.ingest(cfg.data)
    else:
        dask_ingest.run(cfg, out=tmp_path / "raw.parquet", report=tmp_path / "ingest.json")


def test_a_european_csv_is_read_by_both_engines_as_data_csv_says(
    tmp_path: Path, on_test_client: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tables, "BLOCK_SIZE", 2048)
    source = european_csv(tmp_path / "penguins.csv")
    cfg = dask_params(source=str(source), csv=EUROPEAN)
    expected = pandas_ingest(cfg.data, tmp_path / "pandas.parquet")
    assert str(expected["bill_length_mm"].dtype) == "float64"
    assert expected["bill_length_mm"].iloc[0] == 39.1
    assert "Biscoe-Süd" in set(expected["island"])
    assert expected["note"].iloc[40] == "seen; twice\nat dusk"
    assert str(expected["body_mass_g"].dtype) == "float64"
    assert expected["body_mass_g"].iloc[1::25].isna().all()
    dask_ingest.run(cfg, out=tmp_path / "raw.parquet", report=tmp_path / "ingest.json")
    assert len(list((tmp_path / "raw.parquet").iterdir())) > 5, "read in blocks"
    pd.testing.assert_frame_equal(io.read_table(tmp_path / "raw.parquet"), expected)


@pytest.mark.parametrize("engine", ["pandas", "dask"])
def test_a_csv_read_with_another_delimiter_names_the_one_to_set(
    engine: str, tmp_path: Path, on_test_client: None
) -> None:
    source = european_csv(tmp_path / "penguins.csv")
    cfg = dask_params(source=str(source), csv={"encoding": "cp1252"})
    expected = r'penguins\.csv: one column, .* whose name holds \';\'.* set data\.csv\.delimiter: ";" in params\.yaml'
    with pytest.raises(DataError, match=expected):
        read_with(engine, cfg, tmp_path)
    assert not (tmp_path / "ingest.json").exists()


@pytest.mark.parametrize("engine", ["pandas", "dask"])
def test_a_csv_in_another_encoding_names_data_csv_encoding(engine: str, tmp_path: Path, on_test_client: None) -> None:
    source = european_csv(tmp_path / "penguins.csv")
    cfg = dask_params(source=str(source), csv={"delimiter": ";", "decimal": ","})
    expected = r"penguins\.csv: not UTF-8 text.*name its encoding in data\.csv\.encoding"
    with pytest.raises(DataError, match=expected):
        read_with(engine, cfg, tmp_path)


@pytest.mark.parametrize("engine", ["pandas", "dask"])
def test_a_row_with_more_fields_than_the_header_stops_ingest(engine: str, tmp_path: Path, on_test_client: None) -> None:
    # Left to pandas, every row one field longer than the header makes the first field an index:
    # each value moves one column to the right under another name, and the first column is lost.
    source = tmp_path / "shifted.csv"
    source.write_text("id,mass,island\n" + "".join(f"{i},7,{i * 10},Dream\n" for i in range(50)), encoding="utf-8")
    cfg = dask_params(source=str(source))
    with pytest.raises(DataError, match=r"shifted\.csv: .*more fields than the header names columns"):
        read_with(engine, cfg, tmp_path)


def test_a_delimiter_ending_each_row_is_read_as_the_columns_of_the_header(
    tmp_path: Path, on_test_client: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tables, "BLOCK_SIZE", 256)
    source = tmp_path / "trailing.csv"
    source.write_text("id,mass,island\n" + "".join(f"{i},{i * 10},Dream,\n" for i in range(50)), encoding="utf-8")
    cfg = dask_params(source=str(source))
    expected = pandas_ingest(cfg.data, tmp_path / "pandas.parquet")
    assert list(expected.columns) == ["id", "mass", "island"]
    assert expected["id"].tolist() == list(range(50))
    assert expected["mass"].tolist() == [i * 10 for i in range(50)]
    dask_ingest.run(cfg, out=tmp_path / "raw.parquet", report=tmp_path / "ingest.json")
    assert len(list((tmp_path / "raw.parquet").iterdir())) > 1, "read in blocks"
    pd.testing.assert_frame_equal(io.read_table(tmp_path / "raw.parquet"), expected)


@pytest.mark.parametrize("engine", ["pandas", "dask"])
def test_a_header_naming_a_column_twice_stops_ingest(engine: str, tmp_path: Path, on_test_client: None) -> None:
    # pandas would rename the second `mass` to `mass.1`, a name the team never gave it.
    source = tmp_path / "twice.csv"
    source.write_text(
        "id,mass,mass,island,\n" + "".join(f"{i},{i},{i + 1},Dream,\n" for i in range(20)), encoding="utf-8"
    )
    cfg = dask_params(source=str(source))
    with pytest.raises(DataError, match=r"twice\.csv: the header names column\(s\) \['mass'\] more than once"):
        read_with(engine, cfg, tmp_path)
