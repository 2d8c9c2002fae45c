"""Derive the example repository's sources from the penguins table (run in the Feast environment).

``python make_sources.py ../data/penguins.csv data`` writes, deterministically:

- ``penguin_measurements.parquet``: each penguin's bill, flipper and mass, measured on a day in
  November of its survey year; the 2007 penguins are measured again two years later (heavier), a
  value the training set must never see: it comes after their label.
- ``penguin_profiles.parquet``: island and sex, recorded a month before the measurement.
- ``penguin_labels.parquet``: the entity table, the species identified the day after measuring
  (with the survey year, passed through to the training table).

So the point-in-time join rebuilds the original table exactly: every label finds the
measurement of its own year, never the later one.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

MEASURES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]


def main(source: Path, out: Path) -> None:
    table = pd.read_csv(source)
    ids = pd.Series(range(1, len(table) + 1), dtype="int64")
    measured = (
        pd.to_datetime(table["year"].astype(str) + "-11-01", utc=True)
        + pd.to_timedelta(ids % 20, unit="D")
        + pd.to_timedelta(ids % 24, unit="h")
    )
    first = pd.DataFrame(
        {"penguin_id": ids, "event_timestamp": measured, **{c: table[c].astype("float64") for c in MEASURES}}
    )
    again = first[table["year"] == 2007].copy()
    again["event_timestamp"] += pd.Timedelta(days=730)
    again["body_mass_g"] += 250.0
    measurements = pd.concat([first, again], ignore_index=True)
    measurements["created"] = measurements["event_timestamp"]
    profiles = pd.DataFrame(
        {
            "penguin_id": ids,
            "event_timestamp": measured - pd.Timedelta(days=30),
            "island": table["island"].astype("string"),
            "sex": table["sex"].astype("string"),
        }
    )
    profiles["created"] = profiles["event_timestamp"]
    labels = pd.DataFrame(
        {
            "penguin_id": ids,
            "event_timestamp": measured + pd.Timedelta(days=1),
            "species": table["species"].astype("string"),
            "year": table["year"].astype("int64"),
        }
    )
    out.mkdir(parents=True, exist_ok=True)
    measurements.to_parquet(out / "penguin_measurements.parquet", index=False)
    profiles.to_parquet(out / "penguin_profiles.parquet", index=False)
    labels.to_parquet(out / "penguin_labels.parquet", index=False)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
