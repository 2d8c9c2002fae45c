"""split: a seeded hash split of the rows, stratified by the label when asked (classification only).

Both engines split with :mod:`conveyor.engine.hashsplit`, so they put the same rows on each side.
Written with NumPy rather than scikit-learn's ``train_test_split``: importing scikit-learn takes
about two seconds, which would be most of this stage's time as a process.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from conveyor import io
from conveyor.config import Config, SplitConfig
from conveyor.engine import hashsplit

__all__ = ["run", "split"]


def split(df: pd.DataFrame, cfg: SplitConfig, *, target: str, stratify: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and test frames, rows in the table's order; ``stratify`` keeps class proportions.

    The test split has ``ceil(test_size * rows)`` rows (more only when identical rows straddle a
    class's cut, see :mod:`conveyor.engine.hashsplit`). Stratified, each class gets its share of
    them by largest remainder, and at least one row on each side (pass False for regression).
    """
    hashes = hashsplit.row_hashes(df, cfg.seed)
    groups = hashsplit.group_labels(df, target, stratify=stratify)
    sizes = pd.Series(groups).value_counts()
    quotas = hashsplit.quotas(
        {str(k): int(v) for k, v in sizes.items()}, cfg.test_size, target=target, stratified=stratify
    )
    cuts = hashsplit.cuts(hashsplit.bucket_counts(groups, hashes), quotas)
    limits = hashsplit.thresholds([hashsplit.cut_hashes(groups, hashes, cuts)], cuts)
    test = hashsplit.is_test(groups, hashes, limits)
    return df[~test].reset_index(drop=True), df[test].reset_index(drop=True)


def run(cfg: Config, *, data: Path, train_out: Path, test_out: Path) -> tuple[int, int]:
    """Split the validated table into ``train_out`` and ``test_out``; return their row counts."""
    stratify = cfg.split.stratify and cfg.task == "classification"
    if cfg.engine == "dask":
        from conveyor.engine import split as dask_split

        return dask_split.run(cfg, data=data, train_out=train_out, test_out=test_out, stratify=stratify)
    df = io.read_table(data)
    train, test = split(df, cfg.split, target=cfg.data.target, stratify=stratify)
    if cfg.task == "classification" and not stratify:
        target = cfg.data.target
        hashsplit.require_train_classes(train[target].unique(), test[target].unique(), target=target)
    io.write_table(train, train_out)
    io.write_table(test, test_out)
    return len(train), len(test)
