"""io: whole-or-nothing writes, byte-stable models, and files that cannot be read named with the fix."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from conveyor import io
from conveyor.artifacts import GateVerdict
from conveyor.config import Config, CsvFormat, DataLimits
from conveyor.contract import Contract
from conveyor.errors import ArtifactError, DataError
from conveyor.stages.train import train
from tests.conftest import ROOT


def test_training_twice_gives_the_same_model_bytes(
    params: Config, contract: Contract, penguins: pd.DataFrame, trained_model_file: Path
) -> None:
    # skops alone names arrays after object ids and stamps zip entries with the time.
    again = io.model_bytes(train(penguins, params, contract))
    assert again == trained_model_file.read_bytes()
    assert io.model_from_bytes(again).predict(penguins.drop(columns="species").head()).shape == (5,)


@pytest.mark.parametrize("estimator", ["random_forest", "hist_gradient_boosting"])
def test_randomised_estimators_are_seeded(
    params: Config, contract: Contract, penguins: pd.DataFrame, estimator: str
) -> None:
    cfg = params.model_copy(update={"model": params.model.model_copy(update={"estimator": estimator, "params": {}})})
    first, second = (io.model_bytes(train(penguins, cfg, contract)) for _ in range(2))
    assert first == second


def test_a_write_killed_midway_leaves_no_torn_file(tmp_path: Path) -> None:
    target = tmp_path / "model.skops"
    target.write_bytes(b"the previous, whole model")
    writer = textwrap.dedent(
        f"""
        import sys, time
        from conveyor import io
        with io.atomic_path({str(target)!r}) as temporary:
            with temporary.open("wb") as file:
                file.write(b"half of a new mod")
                file.flush()
                print("writing", flush=True)
                time.sleep(60)
        """
    )
    with subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "writing"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    assert target.read_bytes() == b"the previous, whole model"
    leftovers = list(tmp_path.glob(".model.skops.tmp-*"))
    assert len(leftovers) == 1, "the killed writer's temporary file is the only trace"
    io.write_bytes(b"next", target)
    assert target.read_bytes() == b"next"
    assert list(tmp_path.iterdir()) == [target], "the next write removes the leftover"


def test_concurrent_writers_of_one_file_never_break_each_other(tmp_path: Path) -> None:
    # Each write used to delete every other temporary of the target, a live one included.
    target = tmp_path / "report.json"
    writer = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from conveyor import io
        deadline = time.monotonic() + 60
        while not Path({str(tmp_path / "go")!r}).exists() and time.monotonic() < deadline:
            time.sleep(0.01)  # start together: the writes must overlap
        for i in range(100):
            io.write_bytes(f"writer {{sys.argv[1]}} write {{i}} ".encode() * 20000, {str(target)!r})
        """
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", writer, str(n)], stderr=subprocess.PIPE, text=True) for n in range(3)
    ]
    time.sleep(2)  # each imports conveyor first
    (tmp_path / "go").touch()
    errors = [process.communicate(timeout=120)[1] for process in processes]
    (tmp_path / "go").unlink()
    assert [process.returncode for process in processes] == [0, 0, 0], errors
    content = target.read_bytes()
    assert content in {f"writer {n} write 99 ".encode() * 20000 for n in range(3)}, "one writer's last write, whole"
    assert list(tmp_path.iterdir()) == [target], "no temporary left behind"


def test_a_fifo_as_data_source_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "data.csv"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match=r"data\.csv: not a regular file \(a pipe, device or socket\)"):
        io.read_source(str(fifo))
    with pytest.raises(DataError, match=r"is a folder"):
        io.read_source(str(tmp_path))


def test_a_model_archive_check_catches_what_loading_would(tmp_path: Path, trained_model_file: Path) -> None:
    io.check_model_archive(trained_model_file)
    data = trained_model_file.read_bytes()
    truncated = tmp_path / "truncated.skops"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match=r"truncated\.skops: not a readable skops model \(BadZipFile"):
        io.check_model_archive(truncated)
    # One flipped byte inside an entry (stored uncompressed): the zip's directory is whole, its CRC is not.
    with zipfile.ZipFile(trained_model_file) as archive:
        entry = next(info for info in archive.infolist() if info.filename != "schema.json")
    at = entry.header_offset + 30 + len(entry.filename) + len(entry.extra) + entry.compress_size // 2
    damaged = tmp_path / "damaged.skops"
    damaged.write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :])
    with pytest.raises(
        ArtifactError, match=rf"damaged\.skops: not a readable skops model \(entry {entry.filename} is damaged"
    ):
        io.check_model_archive(damaged)
    with pytest.raises(ArtifactError, match=r"damaged\.skops: not a readable skops model"):
        io.load_model(damaged)


def test_corrupt_and_misplaced_files_name_themselves(tmp_path: Path) -> None:
    (tmp_path / "model.skops").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ArtifactError, match=r"model\.skops: not a readable skops model \(BadZipFile"):
        io.load_model(tmp_path / "model.skops")
    (tmp_path / "gate.json").write_text("{ half", encoding="utf-8")
    with pytest.raises(ArtifactError, match=r"gate\.json: not valid JSON .*run `dvc repro` to rebuild it"):
        io.read_artifact(tmp_path / "gate.json", GateVerdict)
    (tmp_path / "folder.json").mkdir()
    with pytest.raises(ArtifactError, match=r"folder\.json: is a folder where a file should be"):
        io.read_json(tmp_path / "folder.json")
    (tmp_path / "table.parquet").write_bytes(b"not parquet")
    with pytest.raises(ArtifactError, match=r"table\.parquet: not a readable Parquet file"):
        io.read_table(tmp_path / "table.parquet")
    with pytest.raises(ArtifactError, match=r"missing\.parquet: not found; run `dvc repro`"):
        io.read_table(tmp_path / "missing.parquet")


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_expected_failures_are_one_line_and_bugs_keep_their_traceback(tmp_path: Path) -> None:
    (tmp_path / "model.skops").write_bytes(b"garbage")
    (tmp_path / "test.parquet").write_bytes(b"garbage")
    args = ("evaluate", "--params", str(ROOT / "params.yaml"), "--model", "model.skops", "--test", "test.parquet")
    expected = run_cli(*args, "--out", "reports", cwd=tmp_path)
    assert expected.returncode == 1
    assert expected.stderr.strip().count("\n") == 0, expected.stderr
    assert expected.stderr.startswith("conveyor evaluate: error: model.skops: not a readable skops model")
    # A ValueError raised inside a library is a bug, not a user's mistake: it is not dressed up.
    bug = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from conveyor import cli; from conveyor.stages import split\n"
            "def broken(*a, **k): raise ValueError('inside a library')\n"
            "split.run = broken\n"
            "sys.exit(cli.main(sys.argv[1:]))",
            "split",
            "--params",
            str(ROOT / "params.yaml"),
            "--data=d",
            "--train=t",
            "--test=s",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bug.returncode == 1
    assert "Traceback (most recent call last)" in bug.stderr
    assert "ValueError: inside a library" in bug.stderr


def test_the_csv_guard_follows_quoting(tmp_path: Path) -> None:
    # Commas and newlines inside quotes are neither columns nor rows; a doubled quote is a quote.
    path = tmp_path / "quoted.csv"
    path.write_text('"a,b","c\nd",e\n"x ""1"", y",2,3\n', encoding="utf-8")
    limits = DataLimits(max_columns=3, max_field_bytes=64)
    df = io.read_source(str(path), limits=limits)
    assert list(df.columns) == ["a,b", "c\nd", "e"]
    assert df.iloc[0, 0] == 'x "1", y'
    with pytest.raises(DataError, match=r"more than 2 columns \(data\.limits\.max_columns\)"):
        io.read_source(str(path), limits=DataLimits(max_columns=2))
    path.write_text('a,b\n"' + "x," * 40 + '",1\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"a field longer than 64 bytes \(data\.limits\.max_field_bytes\)"):
        io.read_source(str(path), limits=limits)


def test_the_csv_guard_counts_fields_by_data_csv_delimiter(tmp_path: Path) -> None:
    # With `;` between fields, a comma is text: the header has 3 columns, and 40 short fields make
    # no long one, while a field of 80 commas is one field of 80 bytes.
    path = tmp_path / "semicolons.csv"
    path.write_text("a;b;c\n" + "1;2;3\n" + ";".join(["x"] * 40) + "\n", encoding="utf-8")
    semicolons = CsvFormat(delimiter=";")
    with pytest.raises(DataError, match=r"more than 2 columns \(data\.limits\.max_columns\)"):
        io.read_source(str(path), limits=DataLimits(max_columns=2), csv_format=semicolons)
    path.write_text("a;b;c\n1;2;3\n" + ";".join(["x"] * 40) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="malformed CSV"):  # 40 fields on a 3-column line, not a long field
        io.read_source(str(path), limits=DataLimits(max_field_bytes=64), csv_format=semicolons)
    path.write_text("a;b\n" + "," * 80 + ";1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"a field longer than 64 bytes \(data\.limits\.max_field_bytes\)"):
        io.read_source(str(path), limits=DataLimits(max_field_bytes=64), csv_format=semicolons)
    assert io.read_source(str(path), csv_format=semicolons).iloc[0, 0] == "," * 80


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("a,b,c\n1,2.5,x\n3,4.5,y\n", (",", ".")),
        ("a;b;c\n1;2,5;x\n3;4,5;y\n", (";", ",")),
        ("a;b;c\n1;2.5;x\n3;4.5;y\n", (";", ".")),
        ("a\tb\tc\n1\t2,5\tx\n", ("\t", ",")),
        ("a|b\n1|x\n", ("|", ".")),
        # Delimiters inside quotes, line breaks too, are text; a comma-separated file with `;` in its notes stays ",".
        ('id,note\n1,"a; b; c"\n2,"d;\ne; f"\n3,plain\n', (",", ".")),
        ('id;note\n1;"a, b"\n2;"c,\nd, e"\n', (";", ".")),
        # One column: nothing to detect, the defaults.
        ("species\nAdelie\nGentoo\n", (",", ".")),
        ("", (",", ".")),
    ],
)
def test_sniff_csv_finds_the_delimiter_and_decimal_mark(tmp_path: Path, text: str, found: tuple[str, str]) -> None:
    path = tmp_path / "table.csv"
    path.write_text(text, encoding="utf-8")
    sniffed = io.sniff_csv(str(path))
    assert (sniffed.delimiter, sniffed.decimal) == found


def test_sniff_csv_reads_whole_lines_of_a_large_or_compressed_file(tmp_path: Path) -> None:
    import gzip

    lines = "a;b;c\n" + "".join(f"{i};{i},5;text number {i}\n" for i in range(20_000))
    path = tmp_path / "table.csv"
    path.write_text(lines, encoding="utf-8")
    assert (io.sniff_csv(str(path)).delimiter, io.sniff_csv(str(path)).decimal) == (";", ",")
    packed = tmp_path / "table.csv.gz"
    packed.write_bytes(gzip.compress(lines.encode()))
    assert io.sniff_csv(str(packed)).delimiter == ";"
    assert io.read_source(str(packed), csv_format=io.sniff_csv(str(packed))).shape == (20_000, 3)


def _split_table(rows: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "mass": [float(i) for i in range(rows)],
            "island": pd.Series(["Biscoe", "Dream", None] * (rows // 3)),
            "sex": pd.Categorical(["male", "female", "male"] * (rows // 3)),
            "unread": range(rows),
        }
    )


@pytest.mark.parametrize("layout", ["file", "folder"])
@pytest.mark.parametrize(("rows", "seed"), [(100, 1), (5000, 42), (29_999, 3), (30_000, 3), (40_000, 3)])
def test_a_sample_read_in_batches_is_the_sample_pandas_draws(tmp_path: Path, layout: str, rows: int, seed: int) -> None:
    # The bundle's reference and parity rows are read this way: other rows would change its bytes.
    table = _split_table(30_000)
    if layout == "file":
        path = tmp_path / "train.parquet"
        table.to_parquet(path, index=False, row_group_size=7_000)
    else:  # the Dask engine's splits: a folder of parts, read in name order (part.10 before part.2)
        path = tmp_path / "train"
        path.mkdir()
        for part in range(12):
            table.iloc[part * 2_500 : (part + 1) * 2_500].to_parquet(path / f"part.{part}.parquet", index=False)
    columns = ["sex", "mass", "island"]
    whole = io.read_table(path, columns=columns)
    expected = whole.sample(n=rows, random_state=seed) if len(whole) > rows else whole
    sample, total = io.read_sample(path, columns=columns, rows=rows, seed=seed)
    assert total == 30_000
    pd.testing.assert_frame_equal(sample, expected.reset_index(drop=True))
    io.write_table(sample, tmp_path / "ours.parquet")
    io.write_table(expected, tmp_path / "pandas.parquet")
    assert (tmp_path / "ours.parquet").read_bytes() == (tmp_path / "pandas.parquet").read_bytes()


def test_a_sample_of_a_missing_split_names_it(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"missing\.parquet: not found"):
        io.read_sample(tmp_path / "missing.parquet", columns=["a"], rows=10, seed=0)
