"""validate with ``engine: dask``: the contract per partition, the whole-table checks by aggregation.

Each partition is checked by the contract's pandera schema inside its own task, and returns a
small :class:`Summary` (pandera's failure cases cut to what a finding shows, counts, 64-bit row
hashes, label counts, the distinct feature/label pairs the leakage check needs, and the hashes of
the distinct values of each column that could be an ID). The summaries
then give the findings the pandas engine gives, with its messages: the per-row checks from
:mod:`conveyor.stages.validate` itself, the table checks (missing fractions, duplicates, unique
keys, labels, leakage, ID-like columns) from the sums. Duplicate rows and keys are found by hash (8 bytes a row
reach the stage process); two different rows sharing a 64-bit hash would count as duplicates.
The search for sets of columns that reproduce the target runs on the pandas engine's leak sample
(the same seeded rows, in the same order), picked out of the partitions in a second pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pandera.pandas as pa
from distributed import Client
from numpy.typing import NDArray

from conveyor import io
from conveyor.artifacts import Finding
from conveyor.config import Config
from conveyor.contract import Contract, conform, pandera_schema
from conveyor.engine import cluster, tables
from conveyor.stages.validate import (
    EXAMPLES,
    LEAK_SAMPLE_ROWS,
    LEAK_SEED,
    Level,
    ValidationFailed,
    ValidationResult,
    class_findings,
    finding,
    findings_from,
    id_candidates,
    id_like_finding,
    missing_findings,
    set_findings,
    structure,
    whole_or_text,
)

__all__ = [
    "MAX_PAIRS",
    "IdValues",
    "Summary",
    "combine",
    "duplicated_keys",
    "key_rows",
    "leak_features",
    "leak_sample",
    "run",
    "summarize",
    "validate",
]

# Distinct values of a feature per partition beyond which it cannot relabel the target (a label
# with more classes than this is not checked for leakage).
MAX_PAIRS = 1000


@dataclass
class IdValues:
    """One partition's part of the ID-like check of one column: its non-missing values counted and
    hashed once per distinct value (8 bytes a distinct value reach the stage process)."""

    values: int
    whole_or_text: bool
    distinct: NDArray[np.uint64]
    first: pd.Series


@dataclass
class Summary:
    """What one partition contributes to the findings."""

    rows: int
    failures: pd.DataFrame
    missing: dict[str, int]
    row_hashes: NDArray[np.uint64]
    key_hashes: list[NDArray[np.uint64]]
    labels_missing: int = 0
    # Up to two distinct labels: whether the table's label is constant (then nothing "reproduces" it).
    label_values: list[Any] = field(default_factory=list)
    label_counts: pd.Series = field(default_factory=lambda: pd.Series(dtype="int64"))
    not_numbers: list[Any] = field(default_factory=list)
    not_number_count: int = 0
    pairs: dict[str, pd.DataFrame | None] = field(default_factory=dict)
    moments: dict[str, NDArray[np.float64] | None] = field(default_factory=dict)
    ids: dict[str, IdValues] = field(default_factory=dict)


def _reduced(failures: pd.DataFrame) -> pd.DataFrame:
    # Per (column, check): a count for missing values, the first distinct failing values otherwise;
    # all a finding shows (conveyor.stages.validate.findings_from), a few rows however many failed.
    kept = []
    for (_, check), group in failures.groupby(["column", "check"], sort=False, dropna=False):
        if str(check).startswith("not_nullable"):
            kept.append(group.iloc[:1].assign(count=len(group)))
            continue
        values = group[group["failure_case"].notna()]
        first = values.loc[~values["failure_case"].astype(str).duplicated()].iloc[:EXAMPLES]
        kept.append((first if len(first) else group.iloc[:1]).assign(count=len(group)))
    return pd.concat(kept, ignore_index=True)


def _contract_failures(part: pd.DataFrame, schema: pa.DataFrameSchema) -> pd.DataFrame:
    try:
        schema.validate(part, lazy=True)
    except pa.errors.SchemaErrors as exc:
        return _reduced(exc.failure_cases)
    return pd.DataFrame(columns=["column", "check", "failure_case", "count"])


def _hashes(part: pd.DataFrame) -> NDArray[np.uint64]:
    return np.asarray(pd.util.hash_pandas_object(part, index=False), dtype=np.uint64)


def _text(values: pd.Series) -> NDArray[np.object_]:
    codes, uniques = pd.factorize(values)
    return np.asarray([str(u) for u in uniques], dtype=object)[codes]


def summarize(part: pd.DataFrame, contract: Contract, *, target: str, task: str) -> Summary:
    """One partition's :class:`Summary` (run inside its task: pandera's failures stay whole there)."""
    present = [name for name in contract.columns if name in part.columns]
    schema = pandera_schema(contract.model_copy(update={"unique": ()}))
    failures = _contract_failures(part[present], schema.select_columns(present)) if present else pd.DataFrame()
    summary = Summary(
        rows=len(part),
        failures=failures,
        missing={name: int(part[name].isna().sum()) for name in present},
        row_hashes=_hashes(part),
        key_hashes=[
            _hashes(part[list(key)]) if all(c in part.columns for c in key) else np.zeros(0, dtype=np.uint64)
            for key in contract.unique
        ],
    )
    if target not in part.columns:
        return summary
    y = part[target]
    labelled = y.notna()
    summary.labels_missing = int((~labelled).sum())
    labels = y[labelled]
    summary.label_values = list(pd.unique(labels)[:2])
    if task == "classification":
        summary.label_counts = pd.Series(_text(labels)).value_counts(sort=False)
    else:
        bad = labels[pd.to_numeric(labels, errors="coerce").isna()]
        summary.not_number_count = len(bad)
        summary.not_numbers = list(pd.unique(bad.dropna())[:EXAMPLES])
    for name in contract.columns:
        if name == target or name not in part.columns or not contract.columns[name].feature:
            continue
        x = part[name][labelled]
        if task == "classification":
            summary.pairs[name] = _pairs(x, labels)
        else:
            summary.moments[name] = _moments(x, labels)
    for name in id_candidates(contract, leak_features(contract, present, target)):
        values = part[name].dropna()
        summary.ids[name] = IdValues(
            values=len(values),
            whole_or_text=whole_or_text(values, contract.columns[name]),
            distinct=np.unique(_hashes(values.to_frame())),
            first=values.head(EXAMPLES),
        )
    return summary


def _pairs(x: pd.Series, y: pd.Series) -> pd.DataFrame | None:
    # None: x has missing values or too many distinct ones to relabel the target.
    if x.isna().any() or x.nunique() > MAX_PAIRS:
        return None
    return pd.DataFrame({"x": _text(x), "y": _text(y)}).drop_duplicates()


def _moments(x: pd.Series, y: pd.Series) -> NDArray[np.float64] | None:
    # [n, Σx, Σy, Σx², Σy², Σxy, min x, max x] over rows with both; None: x has missing or non-numbers.
    numeric = pd.to_numeric(x, errors="coerce")
    if x.isna().any() or numeric.isna().any():
        return None
    target = pd.to_numeric(y, errors="coerce")
    both = target.notna()
    a, b = numeric[both].to_numpy("float64"), target[both].to_numpy("float64")
    lowest = float(numeric.min()) if len(numeric) else np.inf
    highest = float(numeric.max()) if len(numeric) else -np.inf
    return np.asarray([len(a), a.sum(), b.sum(), a @ a, b @ b, a @ b, lowest, highest])


def duplicated_keys(summaries: list[Summary], contract: Contract) -> dict[int, NDArray[np.uint64]]:
    """The hashes that occur more than once, per unique key (by its place in ``contract.unique``)."""
    found = {}
    for index in range(len(contract.unique)):
        hashes = pd.Series(np.concatenate([s.key_hashes[index] for s in summaries]), dtype="uint64")
        repeated = hashes[hashes.duplicated()].unique()
        if len(repeated):
            found[index] = np.asarray(repeated, dtype=np.uint64)
    return found


def key_rows(part: pd.DataFrame, key: tuple[str, ...], repeated: NDArray[np.uint64]) -> pd.DataFrame:
    """The rows of ``part`` whose ``key`` columns hash to one of ``repeated`` (the second pass for unique keys)."""
    return part.loc[np.isin(_hashes(part[list(key)]), repeated), list(key)]


def combine(
    summaries: list[Summary],
    meta: pd.DataFrame,
    contract: Contract,
    *,
    target: str,
    task: str,
    repeated_keys: Sequence[pd.DataFrame] = (),
    sample: pd.DataFrame | None = None,
) -> ValidationResult:
    """The findings of the whole table from its partitions' summaries, as the pandas engine words them.

    ``repeated_keys`` holds, per unique key with duplicates, every row of a duplicated key value
    (from :func:`key_rows`); pandera reports each of them, so they alone give its failure cases.
    ``sample`` is the leak sample (:func:`leak_sample`); without it no sets of columns are searched.
    """
    findings = structure(meta, contract, target)
    failures = [s.failures for s in summaries if len(s.failures)]
    for rows_of_key in repeated_keys:
        try:
            pa.DataFrameSchema(unique=[list(rows_of_key.columns)]).validate(rows_of_key, lazy=True)
        except pa.errors.SchemaErrors as exc:
            failures.append(_reduced(exc.failure_cases))
    if failures:
        findings += findings_from(pd.concat(failures, ignore_index=True), contract)
    rows = sum(s.rows for s in summaries)
    findings += _table_checks(summaries, contract, rows)
    if target in meta.columns:
        findings += _target_checks(summaries, contract, target, task, sample)
    return ValidationResult(rows=rows, columns=len(meta.columns), findings=findings)


def _table_checks(summaries: list[Summary], contract: Contract, rows: int) -> list[Finding]:
    checks = contract.checks
    findings: list[Finding] = []
    if rows < checks.min_rows:
        findings.append(
            finding("error", "min_rows", None, f"{rows} rows; the contract requires at least {checks.min_rows}")
        )
    if rows == 0:
        return findings
    for name in contract.columns:
        if name not in summaries[0].missing:
            continue
        missing = sum(s.missing[name] for s in summaries) / rows
        findings += missing_findings(name, missing, max_fraction=checks.max_missing_fraction)
    duplicated = pd.Series(np.concatenate([s.row_hashes for s in summaries])).duplicated().to_numpy()
    if duplicated.any():
        fraction = float(duplicated.mean())
        level: Level = "error" if fraction > checks.max_duplicate_fraction else "warning"
        positions = [int(i) for i in np.flatnonzero(duplicated)[:EXAMPLES]]
        findings.append(
            finding(
                level,
                "duplicate_rows",
                None,
                f"{int(duplicated.sum())} duplicated row(s) ({fraction:.1%}); the contract allows {checks.max_duplicate_fraction:.1%} (row numbers shown)",
                positions,
            )
        )
    return findings


def _target_checks(
    summaries: list[Summary], contract: Contract, target: str, task: str, sample: pd.DataFrame | None
) -> list[Finding]:
    findings: list[Finding] = []
    unlabelled = sum(s.labels_missing for s in summaries)
    if unlabelled:
        findings.append(finding("error", "target_missing_values", target, f"{unlabelled} row(s) have no label"))
    if task == "classification":
        counts = pd.concat([s.label_counts for s in summaries]).groupby(level=0, sort=False).sum()
        findings += class_findings(counts.sort_values(ascending=False, kind="stable"), target)
    elif sum(s.not_number_count for s in summaries):
        examples = list(pd.unique(pd.Series([v for s in summaries for v in s.not_numbers], dtype=object)))[:EXAMPLES]
        findings.append(finding("error", "target_numeric", target, "regression needs a numeric target", examples))
    return findings + _leakage(summaries, contract, target, task, sample)


def _leakage(
    summaries: list[Summary], contract: Contract, target: str, task: str, sample: pd.DataFrame | None
) -> list[Finding]:
    findings: list[Finding] = []
    features = leak_features(contract, list(summaries[0].missing), target)
    if not _labels_vary(summaries):
        return _id_like(summaries)
    flagged: set[str] = set()
    for name in features:
        leaks = _relabels(summaries, name) if task == "classification" else _correlates(summaries, name)
        if leaks:
            flagged.add(name)
            findings.append(
                finding(
                    "error",
                    "label_leakage",
                    name,
                    f"reproduces the target {target!r} exactly; a model would learn the answer, not the task",
                )
            )
    if sample is not None:
        findings += set_findings(sample, [name for name in features if name not in flagged], target, task, contract)
    return findings + _id_like(summaries)


def _id_like(summaries: list[Summary]) -> list[Finding]:
    # The pandas engine's id_like warnings: distinct values counted by hash across partitions.
    findings: list[Finding] = []
    for name in summaries[0].ids:
        parts = [s.ids[name] for s in summaries]
        if not all(part.whole_or_text for part in parts):
            continue
        found = id_like_finding(
            name,
            distinct=len(np.unique(np.concatenate([part.distinct for part in parts]))),
            values=sum(part.values for part in parts),
            first=pd.concat([part.first for part in parts]).head(EXAMPLES),
        )
        findings += [found] if found is not None else []
    return findings


def _labels_vary(summaries: list[Summary]) -> bool:
    values = pd.Series([v for s in summaries for v in s.label_values], dtype=object)
    return len(pd.unique(values)) >= 2


def leak_features(contract: Contract, columns: Sequence[str], target: str) -> list[str]:
    """The columns the leak checks examine: the contract's features (not the target) that the table has, in contract order."""
    present = set(columns)
    return [name for name in contract.columns if name != target and name in present and contract.columns[name].feature]


def _labelled_rows(part: pd.DataFrame, target: str, positions: NDArray[np.intp]) -> pd.DataFrame:
    return part[part[target].notna()].iloc[positions]


def leak_sample(
    client: Client, df: dd.DataFrame, summaries: list[Summary], contract: Contract, *, target: str
) -> pd.DataFrame:
    """The rows the pandas engine searches for leaking sets: its labelled rows, or :data:`LEAK_SAMPLE_ROWS` of them.

    The same rows in the same order as ``df.loc[labelled, columns].sample(n, random_state=LEAK_SEED)``
    on the whole table, picked out of each partition by their place among the labelled rows
    (``summaries`` count them), so at most that many rows reach the stage process.
    """
    columns = [*leak_features(contract, list(df.columns), target), target]
    labelled = np.cumsum([0, *(s.rows - s.labels_missing for s in summaries)])
    picked = io.sample_positions(int(labelled[-1]), rows=LEAK_SAMPLE_ROWS, seed=LEAK_SEED)
    order = np.argsort(picked, kind="stable")
    wanted = picked[order]
    tasks = []
    for index, part in enumerate(df[columns].to_delayed()):
        local = io.positions_in(wanted, start=int(labelled[index]), rows=int(labelled[index + 1] - labelled[index]))
        if len(local):
            tasks.append(dask.delayed(_labelled_rows)(part, target, local))
    (pieces,) = cluster.compute(client, tasks) if tasks else ([df._meta[columns]],)
    picked_rows: pd.DataFrame = pd.concat(pieces, ignore_index=True)
    return picked_rows.iloc[io.draw_order(order)].reset_index(drop=True)


def _relabels(summaries: list[Summary], name: str) -> bool:
    parts = [s.pairs.get(name) for s in summaries]
    if any(p is None for p in parts):
        return False
    pairs = pd.concat([p for p in parts if p is not None]).drop_duplicates()
    x_count, y_count = pairs["x"].nunique(), pairs["y"].nunique()
    return bool(x_count >= 2 and x_count == y_count and len(pairs) == x_count)


def _correlates(summaries: list[Summary], name: str) -> bool:
    parts = [s.moments.get(name) for s in summaries]
    if any(p is None for p in parts):
        return False
    stacked = np.vstack([p for p in parts if p is not None])
    n, sx, sy, sxx, syy, sxy = stacked[:, :6].sum(axis=0)
    if not stacked[:, 6].min() < stacked[:, 7].max():
        return False
    denominator = np.sqrt((n * sxx - sx * sx) * (n * syy - sy * sy))
    return bool(denominator > 0 and np.isclose(abs((n * sxy - sx * sy) / denominator), 1.0))


def validate(client: Client, df: dd.DataFrame, contract: Contract, *, target: str, task: str) -> ValidationResult:
    """The pandas engine's :func:`conveyor.stages.validate.validate` of ``df``, partition by partition."""
    parts = [dask.delayed(summarize)(part, contract, target=target, task=task) for part in df.to_delayed()]
    (summaries,) = cluster.compute(client, parts)
    summaries = list(summaries)
    repeated = duplicated_keys(summaries, contract)
    second = [
        [dask.delayed(key_rows)(part, contract.unique[index], hashes) for part in df.to_delayed()]
        for index, hashes in repeated.items()
    ]
    (rows,) = cluster.compute(client, second) if second else ([],)
    repeated_keys = [pd.concat(parts_of_key, ignore_index=True) for parts_of_key in rows]
    sample = None
    if target in df.columns and _labels_vary(summaries):
        sample = leak_sample(client, df, summaries, contract, target=target)
    return combine(summaries, df._meta, contract, target=target, task=task, repeated_keys=repeated_keys, sample=sample)


def run(cfg: Config, contract: Contract, *, data: Path, out: Path, report: Path) -> ValidationResult:
    """Validate the raw Parquet table; write the report, then the conformed table (a folder) or raise ``ValidationFailed``."""
    with cluster.connect(cfg.dask, stage="validate") as client:
        df = tables.read_table(data)
        result = validate(client, df, contract, target=cfg.data.target, task=cfg.task)
        io.write_artifact(result.to_report(), report)
        if not result.passed:
            lines = "\n".join(f"  {f}" for f in result.errors)
            raise ValidationFailed(f"{len(result.errors)} data check(s) failed ({report}):\n{lines}")
        conformed = df.map_partitions(conform, contract, meta=conform(df._meta, contract))
        tables.write_table(client, conformed, out)
    return result
