"""Penguin-like tables of any size: the penguins data resampled, with noise, for scale benchmarks.

Each row is a penguins row drawn with replacement whose measurements moved by Gaussian noise of
``JITTER`` times the column's standard deviation (whole-number columns rounded back, lengths to
two decimals), so the classes stay about as separable as in the real table and every row passes
``data/contract.yaml``. Measurements go missing cell by cell at the real table's own rate (the
two real rows with no measurement at all would otherwise become thousands of duplicates, which
the contract refuses). Duplicated rows are replaced, so the table has exactly ``rows`` rows.

    python benchmarks/penguin_like.py 1000000 data/penguins-1m.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
PENGUINS = ROOT / "data" / "penguins.csv"
JITTER = 0.2
MEASUREMENTS = ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g")
WHOLE_NUMBERS = ("flipper_length_mm", "body_mass_g")


def penguin_like(rows: int, *, seed: int = 0, source: Path = PENGUINS) -> pd.DataFrame:
    """A table of ``rows`` distinct rows with the columns, dtypes and contract of ``source``."""
    if rows < 1:
        raise ValueError(f"rows: expected at least 1, got {rows}")
    penguins = pd.read_csv(source)
    measurements = list(MEASUREMENTS)
    missing_rate = penguins[measurements].isna().mean().to_numpy()
    sd = penguins[measurements].std().to_numpy()
    # Every drawn row gets measurements (its species' median where the real row has none).
    filled = penguins.copy()
    filled[measurements] = filled.groupby("species")[measurements].transform(lambda s: s.fillna(s.median()))
    rng = np.random.default_rng(seed)
    parts: list[pd.DataFrame] = []
    have = 0
    while have < rows:
        # A little more than needed: the rare duplicates are dropped below.
        draw = rows - have + max(100, (rows - have) // 1000)
        sample = filled.iloc[rng.integers(0, len(filled), draw)].reset_index(drop=True)
        values = sample[measurements].to_numpy(dtype="float64") + rng.normal(0.0, JITTER, (draw, len(sd))) * sd
        values[rng.random(values.shape) < missing_rate] = np.nan
        sample[measurements] = values.round(2)
        sample[list(WHOLE_NUMBERS)] = sample[list(WHOLE_NUMBERS)].round()
        parts.append(sample)
        table = pd.concat(parts, ignore_index=True)
        table = table[~table.duplicated()]
        parts, have = [table], len(table)
    return parts[0].iloc[:rows].reset_index(drop=True)


def main() -> int:
    """Write a penguin-like table (CSV or Parquet, by the file's suffix)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rows", type=int)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    table = penguin_like(args.rows, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.suffix in {".parquet", ".pq"}:
        table.to_parquet(args.out, index=False)
    else:
        table.to_csv(args.out, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
