"""split: a seeded train/test split, stratified by the label when asked (classification only).

Written with NumPy rather than scikit-learn's ``train_test_split``: importing scikit-learn takes
about two seconds, which would be most of this stage's time as a process.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from conveyor import io
from conveyor.config import Config, SplitConfig
from conveyor.errors import ConveyorError

__all__ = ["SplitError", "run", "split"]


class SplitError(ConveyorError):
    """The split settings cannot be applied to this data."""


def split(df: pd.DataFrame, cfg: SplitConfig, *, target: str, stratify: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and test frames, rows shuffled by ``split.seed``; ``stratify`` keeps class proportions.

    The test split has ``ceil(test_size * rows)`` rows. Stratified, each class gets its share of
    them by largest remainder, and at least one row on each side (pass False for regression).
    """
    rows = len(df)
    n_test = math.ceil(cfg.test_size * rows)
    if not 0 < n_test < rows:
        raise SplitError(f"split.test_size={cfg.test_size}: leaves {rows - n_test} train and {n_test} test rows")
    rng = np.random.default_rng(cfg.seed)
    if stratify:
        test_rows = _stratified_test_rows(df[target], n_test, cfg.test_size, rng, target=target)
    else:
        test_rows = rng.permutation(rows)[:n_test]
    is_test = np.zeros(rows, dtype=bool)
    is_test[test_rows] = True
    train_rows = rng.permutation(np.flatnonzero(~is_test))
    return df.iloc[train_rows].reset_index(drop=True), df.iloc[test_rows].reset_index(drop=True)


def _stratified_test_rows(
    labels: pd.Series, n_test: int, test_size: float, rng: np.random.Generator, *, target: str
) -> NDArray[np.intp]:
    counts = labels.astype(str).value_counts().sort_index()
    too_few = counts[counts < 2]
    if len(too_few):
        raise SplitError(
            f"split.stratify: class(es) {list(too_few.index)} of {target!r} have fewer than 2 rows; "
            "stratified splitting needs at least 2 per class (set split.stratify: false or add data)"
        )
    if n_test < len(counts) or len(labels) - n_test < len(counts):
        raise SplitError(
            f"split.test_size={test_size}: {n_test} test rows cannot hold each of the {len(counts)} classes "
            f"of {target!r} on both sides; raise or lower it, or set split.stratify: false"
        )
    quotas = counts.to_numpy() * n_test / len(labels)
    share = np.floor(quotas).astype(int)
    # Largest remainder: the rows floor() left over go to the classes it shortchanged most.
    for index in np.argsort(-(quotas - share), kind="stable")[: n_test - share.sum()]:
        share[index] += 1
    share = np.clip(share, 1, counts.to_numpy() - 1)
    values = labels.astype(str).to_numpy()
    chosen = [
        rng.permutation(np.flatnonzero(values == label))[:take] for label, take in zip(counts.index, share, strict=True)
    ]
    return rng.permutation(np.concatenate(chosen))


def run(cfg: Config, *, data: Path, train_out: Path, test_out: Path) -> tuple[int, int]:
    """Split the validated table into ``train_out`` and ``test_out``; return their row counts."""
    df = io.read_table(data)
    stratify = cfg.split.stratify and cfg.task == "classification"
    train, test = split(df, cfg.split, target=cfg.data.target, stratify=stratify)
    io.write_table(train, train_out)
    io.write_table(test, test_out)
    return len(train), len(test)
