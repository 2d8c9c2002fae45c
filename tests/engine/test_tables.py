"""Partitioned tables: written whole over what was there, read by pandas as one table, hashed as a folder."""

from __future__ import annotations

from pathlib import Path

import dask.dataframe as dd
import pandas as pd
from distributed import Client

from conveyor import io
from conveyor.contract import Contract, conform
from conveyor.engine import tables


def test_a_folder_replaces_a_file_and_reads_back_as_one_table(
    dask_client: Client, penguins: pd.DataFrame, contract: Contract, tmp_path: Path
) -> None:
    path = tmp_path / "data.parquet"
    io.write_table(penguins, path)  # the pandas engine's single file, from an earlier run
    validated = conform(penguins, contract)
    tables.write_table(dask_client, dd.from_pandas(validated, npartitions=3), path)
    assert path.is_dir()
    assert len(list(path.glob("*.parquet"))) == 3
    assert not list(tmp_path.glob(".data.parquet.tmp-*"))
    pd.testing.assert_frame_equal(io.read_table(path), validated, check_dtype=False)
    assert tables.read_table(path).npartitions == 3


def test_a_folders_hash_follows_its_files(dask_client: Client, penguins: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "test.parquet"
    tables.write_table(dask_client, dd.from_pandas(penguins, npartitions=2), path)
    before = io.file_sha256(path)
    assert io.file_sha256(path) == before
    tables.write_table(dask_client, dd.from_pandas(penguins.iloc[1:], npartitions=2), path)
    assert io.file_sha256(path) != before
