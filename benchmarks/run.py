"""``make bench``: run the benchmark sections and write ``benchmarks/results/RESULTS.md``.

Absolute times drift on a shared machine; each section reports ratios against baselines measured
in the same run, which is what stays comparable between runs and machines.
"""

from __future__ import annotations

import argparse
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bakeoff
import feature_store
import pipeline
import scale
import scale_dask
import serving
import tuning

SECTIONS = {
    "pipeline": pipeline.main,
    "serving": serving.main,
    "tuning": tuning.main,
    "scale": scale.bench,
    "scale_dask": scale_dask.bench,
    "feature_store": feature_store.main,
    "bakeoff": bakeoff.main,
}


def main() -> int:
    """Run the chosen sections and write the results table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append", help="run only this section (repeatable)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    header = f"# Conveyor benchmarks\n\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, Python {platform.python_version()}\n"
    sections = [header]
    for name in args.only or list(SECTIONS):
        print(f"bench: running {name} …", file=sys.stderr, flush=True)
        sections.append(SECTIONS[name](args.out))
    report = "\n".join(sections)
    (args.out / "RESULTS.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
