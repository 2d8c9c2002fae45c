"""split with ``engine: dask``: :mod:`~conveyor.engine.hashsplit`'s two passes over the partitions, then one to write."""

from __future__ import annotations

from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd
from distributed import Client
from numpy.typing import NDArray

from conveyor.config import Config
from conveyor.engine import cluster, hashsplit, tables

__all__ = ["held_out", "run"]


def _keys(part: pd.DataFrame, target: str, seed: int, stratify: bool) -> tuple[NDArray[np.object_], NDArray[np.uint64]]:
    return hashsplit.group_labels(part, target, stratify=stratify), hashsplit.row_hashes(part, seed)


def _counts(part: pd.DataFrame, target: str, seed: int, stratify: bool) -> pd.Series:
    groups, hashes = _keys(part, target, seed, stratify)
    return hashsplit.bucket_counts(groups, hashes)


def _cut_hashes(
    part: pd.DataFrame, target: str, seed: int, stratify: bool, cuts: dict[str, hashsplit.Cut]
) -> pd.Series:
    groups, hashes = _keys(part, target, seed, stratify)
    return hashsplit.cut_hashes(groups, hashes, cuts)


def _mask(part: pd.DataFrame, target: str, seed: int, stratify: bool, limits: dict[str, int]) -> pd.Series:
    groups, hashes = _keys(part, target, seed, stratify)
    return pd.Series(hashsplit.is_test(groups, hashes, limits), index=part.index)


def held_out(client: Client, df: dd.DataFrame, cfg: Config, *, stratify: bool) -> dd.Series:
    """Whether each row is a test row, as :func:`conveyor.stages.split.split` decides it for one frame."""
    args = (cfg.data.target, cfg.split.seed, stratify)
    counts_parts = df.map_partitions(_counts, *args, meta=pd.Series(dtype="int64")).to_delayed()
    (counts_list,) = cluster.compute(client, counts_parts)
    counts = pd.concat(counts_list).groupby(level=["group", "bucket"]).sum()
    sizes = counts.groupby(level="group").sum()
    quotas = hashsplit.quotas(sizes.to_dict(), cfg.split.test_size, target=cfg.data.target, stratified=stratify)
    cuts = hashsplit.cuts(counts, quotas)
    hash_parts = df.map_partitions(_cut_hashes, *args, cuts, meta=pd.Series(dtype="uint64")).to_delayed()
    (collected,) = cluster.compute(client, hash_parts)
    limits = hashsplit.thresholds(collected, cuts)
    return df.map_partitions(_mask, *args, limits, meta=pd.Series(dtype=bool))


def run(cfg: Config, *, data: Path, train_out: Path, test_out: Path, stratify: bool) -> tuple[int, int]:
    """Split the validated Parquet table into the ``train_out`` and ``test_out`` folders; return their row counts."""
    with cluster.connect(cfg.dask, stage="split") as client:
        df = tables.read_table(data)
        is_test = held_out(client, df, cfg, stratify=stratify)
        if cfg.task == "classification" and not stratify:
            labels = df[cfg.data.target]
            train_labels, test_labels = cluster.compute(client, labels[~is_test].unique(), labels[is_test].unique())
            hashsplit.require_train_classes(train_labels, test_labels, target=cfg.data.target)
        train, test = df[~is_test], df[is_test]
        tables.write_table(client, train, train_out)
        tables.write_table(client, test, test_out)
        n_train, n_test = cluster.compute(
            client, tables.read_table(train_out).shape[0], tables.read_table(test_out).shape[0]
        )
    return int(n_train), int(n_test)
