"""split: a seeded train/test split, stratified by the label when asked (classification only)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from conveyor import io
from conveyor.config import Config, SplitConfig
from conveyor.errors import ConveyorError


class SplitError(ConveyorError):
    """The split settings cannot be applied to this data."""


def split(df: pd.DataFrame, cfg: SplitConfig, *, target: str, stratify: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and test frames; ``stratify`` keeps class proportions (pass False for regression)."""
    labels = df[target] if stratify else None
    if labels is not None:
        counts = labels.value_counts()
        too_few = counts[counts < 2]
        if len(too_few):
            raise SplitError(
                f"split.stratify: class(es) {list(too_few.index)} of {target!r} have fewer than 2 rows; "
                "stratified splitting needs at least 2 per class (set split.stratify: false or add data)"
            )
    try:
        train, test = train_test_split(df, test_size=cfg.test_size, random_state=cfg.seed, stratify=labels)
    except ValueError as exc:
        raise SplitError(f"split.test_size={cfg.test_size}: {exc}") from None
    return train.reset_index(drop=True), test.reset_index(drop=True)


def run(cfg: Config, *, data: Path, train_out: Path, test_out: Path) -> tuple[int, int]:
    """Split the validated table into ``train_out`` and ``test_out``; return their row counts."""
    df = io.read_table(data)
    stratify = cfg.split.stratify and cfg.task == "classification"
    train, test = split(df, cfg.split, target=cfg.data.target, stratify=stratify)
    io.write_table(train, train_out)
    io.write_table(test, test_out)
    return len(train), len(test)
