"""Load the online store: ``feast apply`` and ``feast materialize`` in one process (run in the Feast environment).

``python materialize.py --repo R [--apply] [--start 2000-01-01T00:00:00] [--end <now>]`` loads each
entity's newest feature values between ``--start`` and ``--end`` into the online store, importing
Feast once instead of once per command. The start is explicit: ``feast materialize-incremental``
on a new store starts at now minus each view's TTL, which skips history older than that.
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("FEAST_USAGE", "False")

from build_training_set import apply, fail
from feast import FeatureStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--apply", action="store_true")
    parser.add_argument("--start", type=datetime.fromisoformat, default=datetime(2000, 1, 1))
    parser.add_argument("--end", type=datetime.fromisoformat, default=None)
    args = parser.parse_args()
    repo = args.repo.resolve()
    if not (repo / "feature_store.yaml").is_file():
        fail(f"{args.repo}: no feature_store.yaml")
    if args.apply:
        apply(repo)
    end = args.end or datetime.now(UTC)
    FeatureStore(repo_path=str(repo)).materialize(
        start_date=args.start.replace(tzinfo=args.start.tzinfo or UTC), end_date=end.replace(tzinfo=end.tzinfo or UTC)
    )


if __name__ == "__main__":
    main()
