"""Build a training table from a Feast repository, point in time (run in the Feast environment).

Conveyor's ingest stage runs this as a process of its own (Feast needs pandas<3; the project is on
pandas 3): ``python build_training_set.py --repo R --entity-rows E.parquet --feature-service S
--out T.parquet --summary J.json [--apply]``. It joins the feature service's views onto the entity
table with ``get_historical_features`` (each row gets the values valid at its ``event_timestamp``,
within each view's TTL) and writes:

- ``--out``: the entity table's own columns (the label, pass-through fields) and the features, in
  the entity table's row order, without the join keys and the timestamp (they are no features);
- ``--summary``: JSON with the rows in and out and, for every row the join dropped (Feast's file
  offline store drops a row whose entity has no feature row within a view's TTL), the entity key,
  the timestamp and the views that had no value for it. Conveyor decides whether that is too many.

``--apply`` registers the repository's definitions first (``feast apply``), so the registry is the
one DVC tracked; leave it off for a team's registry that its own workflow applies.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("FEAST_USAGE", "False")

import pandas as pd
from feast import FeatureStore

ROW = "__conveyor_row__"
TIMESTAMP = "event_timestamp"
EXAMPLES = 20


def fail(message: str) -> None:
    """Stop with one line for the caller to show (exit status 2: a problem with the inputs)."""
    print(message, file=sys.stderr)
    sys.exit(2)


def apply(repo: Path) -> None:
    """``feast apply`` in this process (importing feast again costs seconds)."""
    from feast.repo_config import load_repo_config
    from feast.repo_operations import apply_total

    cwd = Path.cwd()
    try:
        apply_total(load_repo_config(repo, repo / "feature_store.yaml"), repo, skip_source_validation=False)
    finally:
        os.chdir(cwd)


def build(store: FeatureStore, entity_rows: pd.DataFrame, service_name: str) -> tuple[pd.DataFrame, dict[str, object]]:
    """The training table and the summary of what the join kept and dropped."""
    try:
        service = store.get_feature_service(service_name)
    except Exception as exc:  # Feast raises its own FeatureServiceNotFoundException
        fail(f"feature_store.feature_service: {exc}")
    views = {p.name: store.get_feature_view(p.name) for p in service.feature_view_projections}
    keys = sorted({key for view in views.values() for key in view.join_keys})
    missing = [c for c in [*keys, TIMESTAMP] if c not in entity_rows.columns]
    if missing:
        fail(
            f"feature_store.entity_rows: no column {missing} in the entity table; "
            f"service {service_name!r} joins on {keys} and every row needs its {TIMESTAMP!r}"
        )
    entities = entity_rows.assign(**{ROW: range(len(entity_rows))})
    joined = store.get_historical_features(entity_df=entities, features=service).to_df()
    lost = entities[~entities[ROW].isin(joined[ROW])]
    by_view: dict[str, int] = {}
    examples: list[dict[str, object]] = []
    if len(lost):
        # Which views lost them: join each view alone onto the lost rows (only they are re-read).
        lacking: dict[int, list[str]] = {int(r): [] for r in lost[ROW]}
        for name, view in views.items():
            refs = [f"{name}:{field.name}" for field in view.features]
            alone = store.get_historical_features(
                entity_df=lost[[*view.join_keys, TIMESTAMP, ROW]], features=refs
            ).to_df()
            gone = set(lost[ROW]) - set(alone[ROW])
            by_view[name] = len(gone)
            for row in gone:
                lacking[int(row)].append(name)
        for _, row in lost.head(EXAMPLES).iterrows():
            examples.append(
                {
                    "entity": {key: row[key].item() if hasattr(row[key], "item") else row[key] for key in keys},
                    "event_timestamp": pd.Timestamp(row[TIMESTAMP]).isoformat(),
                    "feature_views": lacking[int(row[ROW])],
                    "ttl_days": {
                        n: views[n].ttl.total_seconds() / 86400 for n in lacking[int(row[ROW])] if views[n].ttl
                    },
                }
            )
    features = [field.name for p in service.feature_view_projections for field in p.features]
    passthrough = [c for c in entity_rows.columns if c not in {*keys, TIMESTAMP}]
    table = joined.sort_values(ROW, kind="stable")[[*passthrough, *features]].reset_index(drop=True)
    for column in table.columns:
        # pandas 2's nullable strings as plain Parquet strings: pandas 3 reads them as its default
        # `str`, as it reads the same column from a CSV.
        if isinstance(table[column].dtype, pd.StringDtype):
            table[column] = table[column].astype(object).where(table[column].notna(), None)
    summary = {
        "feature_service": service_name,
        "feature_views": sorted(views),
        "entity_keys": keys,
        "features": features,
        "entity_rows": len(entity_rows),
        "rows": len(table),
        "dropped": len(lost),
        "dropped_by_view": by_view,
        "dropped_examples": examples,
    }
    return table, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--entity-rows", type=Path, required=True)
    parser.add_argument("--feature-service", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--summary", type=Path, required=True)
    parser.add_argument("--apply", action="store_true")
    args = parser.parse_args()
    repo = args.repo.resolve()
    if not (repo / "feature_store.yaml").is_file():
        fail(f"feature_store.repo: {args.repo} has no feature_store.yaml")
    try:
        entity_rows = pd.read_parquet(args.entity_rows)
    except (OSError, ValueError) as exc:
        fail(f"feature_store.entity_rows: {args.entity_rows} cannot be read: {exc}")
    if args.apply:
        apply(repo)
    table, summary = build(FeatureStore(repo_path=str(repo)), entity_rows, args.feature_service)
    table.to_parquet(args.out, index=False)
    args.summary.write_text(json.dumps(summary, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
