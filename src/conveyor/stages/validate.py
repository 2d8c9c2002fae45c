"""validate: the data contract (pandera) plus whole-table checks. Bad data stops the line here.

Every finding is a :class:`Finding` with a level: ``error`` stops ``dvc repro`` (after
``reports/validation.json`` is written), ``warning`` is recorded and printed.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pandera.pandas as pa
from numpy.typing import NDArray

from conveyor import io
from conveyor.artifacts import Finding, ValidationReport
from conveyor.config import Config
from conveyor.contract import ColumnSpec, Contract, conform, pandera_schema
from conveyor.errors import ConveyorError

__all__ = [
    "EXAMPLES",
    "ID_DISTINCT_SHARE",
    "ID_MIN_ROWS",
    "LEAK_SAMPLE_ROWS",
    "LEAK_SEED",
    "RARE_CLASS_FRACTION",
    "Level",
    "ValidationFailed",
    "ValidationResult",
    "class_findings",
    "finding",
    "findings_from",
    "id_candidates",
    "id_like_finding",
    "missing_findings",
    "run",
    "set_findings",
    "structure",
    "validate",
    "whole_or_text",
]

Level = Literal["error", "warning"]
EXAMPLES = 5
# A class this rare is worth a warning: metrics on it rest on a handful of rows.
RARE_CLASS_FRACTION = 0.05


@dataclass(frozen=True)
class ValidationResult:
    """All findings and a summary of the table they were found in."""

    rows: int
    columns: int
    findings: list[Finding]

    @property
    def errors(self) -> list[Finding]:
        """Findings that stop the pipeline."""
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        """Findings that are recorded but do not stop the pipeline."""
        return [f for f in self.findings if f.level == "warning"]

    @property
    def passed(self) -> bool:
        """True when no error-level check failed."""
        return not self.errors

    def to_report(self) -> ValidationReport:
        """The content of ``reports/validation.json``."""
        return ValidationReport(
            passed=self.passed, rows=self.rows, columns=self.columns, errors=self.errors, warnings=self.warnings
        )


def finding(level: Level, check: str, column: str | None, message: str, examples: list[Any] | None = None) -> Finding:
    """One :class:`Finding`; ``examples`` default to none."""
    return Finding(level=level, check=check, column=column, message=message, examples=examples or [])


class ValidationFailed(ConveyorError):
    """Raised by :func:`run` when an error-level check failed; the message lists each one."""


def validate(df: pd.DataFrame, contract: Contract, *, target: str, task: str) -> ValidationResult:
    """Check ``df`` against the contract and the dataset checks; pure, writes nothing."""
    findings = structure(df, contract, target)
    present = [name for name in contract.columns if name in df.columns]
    findings += _contract_checks(df[present], contract, present)
    findings += _table_checks(df, contract)
    if target in df.columns:
        findings += _target_checks(df, contract, target, task)
    return ValidationResult(rows=len(df), columns=len(df.columns), findings=findings)


def structure(df: pd.DataFrame, contract: Contract, target: str) -> list[Finding]:
    """Findings about ``df``'s columns (only their names are read): the contract's missing ones, extra ones, the target."""
    extra = [str(c) for c in df.columns if c not in contract.columns]
    findings = [
        finding(
            "error",
            "target_present" if name == target else "column_present",
            name,
            "required by the data contract but missing from the data" + _did_you_mean(name, extra),
        )
        for name in contract.columns
        if name not in df.columns
    ]
    if target not in contract.columns:
        findings.append(finding("error", "target_present", target, "data.target is not a column of the data contract"))
    if extra:
        findings.append(
            finding(
                "warning",
                "unexpected_columns",
                None,
                f"{len(extra)} column(s) not in the contract are ignored",
                extra[:EXAMPLES],
            )
        )
    return findings


def _did_you_mean(name: str, candidates: list[str]) -> str:
    # A renamed or re-cased header ("Species", "bill length mm") is the usual cause of a missing column.
    def key(text: str) -> str:
        return "".join(ch for ch in text.lower() if ch.isalnum())

    close = [c for c in candidates if key(c) == key(name)] or difflib.get_close_matches(name, candidates, n=1)
    return f"; the data has {close[0]!r}" if close else ""


# pandera's check names, reported under the contract key a person would edit, with a message.
_CHECKS: dict[str, tuple[str, str]] = {
    "coerce_dtype": ("type", "expected {type} values, found values that are not numbers"),
    "not_nullable": ("nullable", "{count} missing value(s) but the contract says nullable: false"),
    "greater_than_or_equal_to": ("min", "values below the contract's min {min}"),
    "less_than_or_equal_to": ("max", "values above the contract's max {max}"),
    "is_integer": ("type", "expected whole numbers (type int), found fractions"),
    "isin": ("categories", "values outside the contract's allowed set {allowed}"),
    "is_text": ("type", "expected text values (type {type}), found other types"),
    "is_datetime": ("type", "expected ISO 8601 dates or date-times (type datetime, e.g. 2024-05-01T13:45:00Z)"),
    "is_key": ("type", "expected keys: non-blank text or whole numbers (type id)"),
    "field_uniqueness": ("unique", "duplicate values in a unique key"),
    "multiple_fields_uniqueness": ("unique", "duplicate values in a unique key"),
}


def _contract_checks(df: pd.DataFrame, contract: Contract, present: list[str]) -> list[Finding]:
    schema = pandera_schema(contract).select_columns(present) if present else None
    if schema is None:
        return []
    try:
        schema.validate(df, lazy=True)
    except pa.errors.SchemaErrors as exc:
        return findings_from(exc.failure_cases, contract)
    return []


def findings_from(failures: pd.DataFrame, contract: Contract) -> list[Finding]:
    """One error per (column, check) of pandera's failure cases, under the contract key a person would edit.

    ``failures`` may carry a ``count`` column (rows a reduced case stands for) instead of one row per failure.
    """
    findings: list[Finding] = []
    coerce_failed = set(failures.loc[failures["check"].astype(str).str.startswith("coerce_dtype"), "column"])
    for (column, check), group in failures.groupby(["column", "check"], sort=False, dropna=False):
        name = str(check).split("(", 1)[0]
        if column in coerce_failed and name not in {"coerce_dtype", "not_nullable"}:
            # The other checks ran on the uncoerced text and failed with a TypeError, not a finding.
            continue
        spec = contract.columns.get(str(column))
        check_name, template = _CHECKS.get(name, (name, "failed the contract check {check}"))
        if spec is not None and spec.type == "bool" and name in {"coerce_dtype", "isin"}:
            template = "expected true/false values (type bool; 1/0 are read as true/false)"
        allowed = list(spec.categories) if spec is not None and spec.categories is not None else [0, 1]
        message = template.format(
            type=spec.type if spec else "?",
            min=spec.min if spec else "?",
            max=spec.max if spec else "?",
            count=int(group["count"].sum()) if "count" in group else len(group),
            allowed=allowed,
            check=check,
        )
        # Missing values have no value worth showing; the count says it.
        examples = [] if name == "not_nullable" else _examples(group["failure_case"])
        findings.append(finding("error", check_name, column if isinstance(column, str) else None, message, examples))
    return findings


def _examples(values: pd.Series) -> list[Any]:
    unique = pd.unique(values.dropna())[:EXAMPLES]
    return [v.item() if isinstance(v, np.generic) else v for v in unique]


def _table_checks(df: pd.DataFrame, contract: Contract) -> list[Finding]:
    checks = contract.checks
    findings: list[Finding] = []
    if len(df) < checks.min_rows:
        findings.append(
            finding("error", "min_rows", None, f"{len(df)} rows; the contract requires at least {checks.min_rows}")
        )
    if len(df) == 0:
        return findings
    for name in contract.columns:
        if name not in df.columns:
            continue
        missing = float(df[name].isna().mean())
        findings += missing_findings(name, missing, max_fraction=checks.max_missing_fraction)
    duplicated = df.duplicated()
    if duplicated.any():
        fraction = float(duplicated.mean())
        level: Level = "error" if fraction > checks.max_duplicate_fraction else "warning"
        rows = [int(i) for i in np.flatnonzero(duplicated.to_numpy())[:EXAMPLES]]
        findings.append(
            finding(
                level,
                "duplicate_rows",
                None,
                f"{int(duplicated.sum())} duplicated row(s) ({fraction:.1%}); the contract allows {checks.max_duplicate_fraction:.1%} (row numbers shown)",
                rows,
            )
        )
    return findings


def _target_checks(df: pd.DataFrame, contract: Contract, target: str, task: str) -> list[Finding]:
    y = df[target]
    findings: list[Finding] = []
    if y.isna().any():
        findings.append(
            finding("error", "target_missing_values", target, f"{int(y.isna().sum())} row(s) have no label")
        )
    labels = y.dropna()
    if task == "classification":
        findings += class_findings(labels.astype(str).value_counts(), target)
    else:
        not_numbers = pd.to_numeric(labels, errors="coerce").isna()
        if not_numbers.any():
            findings.append(
                finding(
                    "error",
                    "target_numeric",
                    target,
                    "regression needs a numeric target",
                    _examples(labels[not_numbers]),
                )
            )
    findings += _leakage(df, contract, target, task)
    return findings


def missing_findings(name: str, missing: float, *, max_fraction: float) -> list[Finding]:
    """Column ``name``'s findings from its share of missing values: all missing or over
    ``max_fraction`` is an error, over half of it a warning."""
    if missing == 1.0:
        return [finding("error", "all_missing", name, "every value is missing")]
    if missing > max_fraction:
        return [
            finding(
                "error",
                "max_missing_fraction",
                name,
                f"{missing:.1%} missing; the contract allows at most {max_fraction:.1%}",
            )
        ]
    if missing > max_fraction / 2:
        return [
            finding(
                "warning",
                "max_missing_fraction",
                name,
                f"{missing:.1%} missing, over half the allowed {max_fraction:.1%}",
            )
        ]
    return []


def class_findings(counts: pd.Series, target: str) -> list[Finding]:
    """A classification target's findings from its rows per class (largest first): fewer than two
    classes is an error, a class under :data:`RARE_CLASS_FRACTION` of rows a warning."""
    if len(counts) < 2:
        return [
            finding(
                "error",
                "target_classes",
                target,
                f"classification needs at least two classes, found {len(counts)}",
                list(counts.index[:EXAMPLES]),
            )
        ]
    rare = counts[counts / counts.sum() < RARE_CLASS_FRACTION]
    if not len(rare):
        return []
    return [
        finding(
            "warning",
            "rare_classes",
            target,
            f"classes under {RARE_CLASS_FRACTION:.0%} of rows",
            [f"{k}: {v}" for k, v in rare.items()],
        )
    ]


def _leakage(df: pd.DataFrame, contract: Contract, target: str, task: str) -> list[Finding]:
    """Features that reproduce the label, and near-unique columns that look like IDs.

    Single columns: equal to the label, a one-to-one relabelling of it (classification) or
    perfectly correlated with it (regression). Then small sets (:func:`_reproducing_sets`):
    up to :data:`LEAK_MAX_COLUMNS` columns from which a cross-validated fit on a seeded sample
    of at most :data:`LEAK_SAMPLE_ROWS` rows scores above :data:`LEAK_SCORE`. Columns the
    contract marks ``feature: false`` are never examined.
    """
    y = df[target]
    findings: list[Finding] = []
    labelled = y.notna()
    flagged: set[str] = set()
    features = [
        name for name in contract.columns if name != target and name in df.columns and contract.columns[name].feature
    ]
    if y[labelled].nunique() < 2:
        # Anything "reproduces" a constant label; the class or number checks name that problem.
        return _id_like(df, contract, features)
    for name in features:
        x = df[name][labelled]
        if x.isna().any() or x.nunique() < 2:
            continue
        if task == "classification":
            leaks = _one_to_one(x, y[labelled])
        else:
            numeric = pd.to_numeric(x, errors="coerce")
            target_values = pd.to_numeric(y[labelled], errors="coerce")
            leaks = bool(numeric.notna().all() and np.isclose(abs(numeric.corr(target_values)), 1.0))
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
    sample = df.loc[labelled, [*features, target]]
    if len(sample) > LEAK_SAMPLE_ROWS:
        sample = sample.sample(n=LEAK_SAMPLE_ROWS, random_state=LEAK_SEED)
    findings += set_findings(sample, [name for name in features if name not in flagged], target, task, contract)
    findings += _id_like(df, contract, features)
    return findings


def set_findings(
    sample: pd.DataFrame, features: list[str], target: str, task: str, contract: Contract
) -> list[Finding]:
    """An error per set of ``features`` that reproduces the target on ``sample`` (:func:`_reproducing_sets`).

    ``sample`` is the leak sample: the labelled rows, or :data:`LEAK_SAMPLE_ROWS` of them drawn
    as ``DataFrame.sample(random_state=LEAK_SEED)`` draws them; ``features`` the feature columns
    no single-column check flagged.
    """
    return [
        finding(
            "error",
            "label_leakage",
            None,
            f"columns {columns} reproduce the target {target!r} ({how} from them scores {score:.4f} "
            f"cross-validated on {len(sample)} rows); a model would learn the answer, not the task. "
            "If they are not known when predicting, mark them feature: false in the data contract",
        )
        for columns, score, how in _reproducing_sets(sample, features, target, task, contract)
    ]


# Leak search: a seeded sample keeps it cheap (validate runs on every repro); a score above
# LEAK_SCORE from at most LEAK_MAX_COLUMNS columns is a label the data already contains.
LEAK_SAMPLE_ROWS = 5000
LEAK_SEED = 0
LEAK_SCORE = 0.999
LEAK_MAX_COLUMNS = 3
# Five folds: a label that is a threshold on a few columns is learnt to within about
# columns / training rows of the boundary, so out-of-fold accuracy clears LEAK_SCORE.
LEAK_FOLDS = 5
LEAK_SHORTLIST = 8
# A whole-number or text column with at least this share of distinct values is an ID, not a feature.
ID_DISTINCT_SHARE = 0.95
ID_MIN_ROWS = 20


def _reproducing_sets(
    sample: pd.DataFrame, features: list[str], target: str, task: str, contract: Contract
) -> list[tuple[list[str], float, str]]:
    """Sets of at most :data:`LEAK_MAX_COLUMNS` columns that reproduce the target, each with its score.

    Greedy forward selection (the best column, then the best one to add, …) over two fits, each
    scored out of fold: a linear fit of the numeric columns (least squares' r2 for regression,
    logistic regression's accuracy for classification), and a lookup table of the columns' joint values (classification: the label is a function
    of them). A set found is pruned to the columns it needs.
    """
    if len(sample) < ID_MIN_ROWS or not features:
        return []
    y = sample[target]
    folds = np.random.default_rng(LEAK_SEED).permutation(len(sample)) % LEAK_FOLDS
    found: list[tuple[list[str], float, str]] = []
    numeric = [name for name in features if contract.columns[name].is_numeric]
    if numeric:
        values = sample[numeric].apply(pd.to_numeric, errors="coerce").astype("float64")
        values = values.fillna(values.median()).fillna(0.0)
        matrix = {name: values[name].to_numpy() for name in numeric}
        if task == "regression":
            target_values = pd.to_numeric(y, errors="coerce").to_numpy(dtype="float64")

            def linear(columns: list[str]) -> float:
                return _linear_r2(np.column_stack([matrix[c] for c in columns]), target_values, folds)

            found += _greedy(numeric, linear, "a linear fit")
        else:
            labels = y.astype(str).to_numpy()

            def classifier(columns: list[str]) -> float:
                return _linear_accuracy(np.column_stack([matrix[c] for c in columns]), labels, folds)

            found += _greedy(numeric, classifier, "a linear classifier")
    if task == "classification":
        codes = {name: pd.factorize(sample[name].astype("object").map(str))[0].astype(np.int64) for name in features}
        label_codes = pd.factorize(y.astype(str))[0]

        def lookup(columns: list[str]) -> float:
            keys = np.zeros(len(sample), dtype=np.int64)
            for column in columns:  # at most 3 columns of at most LEAK_SAMPLE_ROWS values: no overflow
                keys = keys * (int(codes[column].max()) + 1) + codes[column]
            return _lookup_accuracy(keys, label_codes, folds)

        already = {frozenset(columns) for columns, _, _ in found}
        found += [
            item for item in _greedy(features, lookup, "a lookup of their values") if frozenset(item[0]) not in already
        ]
    return found


def _greedy(candidates: list[str], score: Callable[[list[str]], float], how: str) -> list[tuple[list[str], float, str]]:
    chosen: list[str] = []
    best = -np.inf
    shortlist = candidates
    while len(chosen) < min(LEAK_MAX_COLUMNS, len(candidates)):
        scores = {name: score([*chosen, name]) for name in shortlist if name not in chosen}
        if not chosen:
            # Later steps add from the columns that score best alone: a set that reproduces the
            # target is made of columns that each explain part of it.
            shortlist = sorted(scores, key=lambda n: -scores[n])[:LEAK_SHORTLIST]
        name = max(scores, key=lambda n: scores[n])
        chosen, best = [*chosen, name], scores[name]
        if best > LEAK_SCORE:
            break
    if best <= LEAK_SCORE:
        return []
    # Keep only the columns the score needs: (a + b) / 2 names a and b, not a third passenger.
    for name in list(chosen):
        rest = [c for c in chosen if c != name]
        if rest and score(rest) > LEAK_SCORE:
            chosen = rest
    return [([c for c in candidates if c in chosen], score(chosen), how)]


def _design(x: NDArray[np.float64]) -> NDArray[np.float64]:
    # Standardized columns and an intercept: least squares well conditioned on any units.
    spread = x.std(axis=0)
    scaled = (x - x.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    return np.column_stack([np.ones(len(x)), scaled])


def _linear_r2(x: NDArray[np.float64], y: NDArray[np.float64], folds: NDArray[np.intp]) -> float:
    """Out-of-fold r2 of a least-squares linear fit of ``y`` on the columns of ``x``."""
    design = _design(x)
    predicted = np.empty_like(y)
    for fold in range(LEAK_FOLDS):
        test = folds == fold
        coef, *_ = np.linalg.lstsq(design[~test], y[~test], rcond=None)
        predicted[test] = design[test] @ coef
    total = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - predicted) ** 2).sum()) / total if total > 0 else -np.inf


def _linear_accuracy(x: NDArray[np.float64], labels: NDArray[np.object_], folds: NDArray[np.intp]) -> float:
    """Out-of-fold accuracy of a linear classifier: logistic regression per class (one against
    the rest, fitted by :func:`_logistic`), the class scoring highest wins."""
    design = _design(x)
    classes, encoded = np.unique(labels, return_inverse=True)
    columns = [1] if len(classes) == 2 else list(range(len(classes)))
    correct = 0
    for fold in range(LEAK_FOLDS):
        test = folds == fold
        scores = np.column_stack(
            [design[test] @ _logistic(design[~test], (encoded[~test] == k).astype(np.float64)) for k in columns]
        )
        predicted = (scores[:, 0] > 0).astype(np.intp) if len(classes) == 2 else np.argmax(scores, axis=1)
        correct += int((predicted == encoded[test]).sum())
    return correct / len(labels)


def _logistic(design: NDArray[np.float64], y: NDArray[np.float64], *, iterations: int = 15) -> NDArray[np.float64]:
    """Coefficients of a logistic regression by iteratively reweighted least squares (lightly
    ridged, so separable classes, which are what a leak looks like, do not diverge)."""
    coef: NDArray[np.float64] = np.zeros(design.shape[1])
    ridge = 1e-6 * np.eye(design.shape[1])
    for _ in range(iterations):
        p = np.clip(1 / (1 + np.exp(-np.clip(design @ coef, -30, 30))), 1e-9, 1 - 1e-9)
        weight = p * (1 - p)
        working = design @ coef + (y - p) / weight
        weighted = design * weight[:, None]
        coef = np.asarray(np.linalg.solve(design.T @ weighted + ridge, weighted.T @ working), dtype=np.float64)
    return coef


def _lookup_accuracy(keys: NDArray[np.int64], labels: NDArray[np.intp], folds: NDArray[np.intp]) -> float:
    """Out-of-fold accuracy of predicting each row's label as the commonest label of its key in the other folds.

    A key never seen in the other folds counts as wrong, so an ID-like column scores near 0.
    """
    n_labels = int(labels.max()) + 1
    correct = 0
    for fold in range(LEAK_FOLDS):
        test = folds == fold
        pairs, counts = np.unique(keys[~test] * n_labels + labels[~test], return_counts=True)
        pair_keys, pair_labels = pairs // n_labels, pairs % n_labels
        # Per key, the label counted most: sort by key, then by count descending; take each key's first.
        order = np.lexsort((-counts, pair_keys))
        first = np.concatenate([[True], pair_keys[order][1:] != pair_keys[order][:-1]])
        known, commonest = pair_keys[order][first], pair_labels[order][first]
        position = np.clip(np.searchsorted(known, keys[test]), 0, len(known) - 1)
        seen = known[position] == keys[test]
        correct += int((seen & (commonest[position] == labels[test])).sum())
    return correct / len(labels)


def _id_like(df: pd.DataFrame, contract: Contract, features: list[str]) -> list[Finding]:
    """A warning per feature column of whole numbers or text whose values are (nearly) all distinct."""
    findings: list[Finding] = []
    for name in id_candidates(contract, features):
        values = df[name].dropna()
        if len(values) < ID_MIN_ROWS or not whole_or_text(values, contract.columns[name]):
            continue
        found = id_like_finding(name, distinct=values.nunique(), values=len(values), first=values.head(EXAMPLES))
        findings += [found] if found is not None else []
    return findings


def id_candidates(contract: Contract, features: Sequence[str]) -> list[str]:
    """The features that could be IDs: not a declared unique key, not a ``float`` measurement."""
    keys = {name for key in contract.unique for name in key}
    return [name for name in features if name not in keys and contract.columns[name].type != "float"]


def whole_or_text(values: pd.Series, spec: ColumnSpec) -> bool:
    """Whether non-missing ``values`` are whole numbers (a numeric column) or text: only those can be IDs."""
    if not spec.is_numeric:
        return True
    return bool((pd.to_numeric(values, errors="coerce") % 1 == 0).all())


def id_like_finding(name: str, *, distinct: int, values: int, first: pd.Series) -> Finding | None:
    """The ``id_like`` warning for ``name`` when ``distinct`` of its ``values`` non-missing values are
    at least :data:`ID_DISTINCT_SHARE` (and there are :data:`ID_MIN_ROWS`); ``first``: its first values."""
    share = distinct / values if values else 0.0
    if values < ID_MIN_ROWS or share < ID_DISTINCT_SHARE:
        return None
    return finding(
        "warning",
        "id_like",
        name,
        f"{share:.1%} of its {values} values are distinct: it looks like an ID, which a model "
        "can only memorise; mark it feature: false in the data contract unless it is a quantity",
        _examples(first),
    )


def _one_to_one(x: pd.Series, y: pd.Series) -> bool:
    """Whether ``x`` and ``y`` (no missing values) relabel each other, values compared as text."""
    x_codes, y_codes = _text_codes(x), _text_codes(y)
    x_count, y_count = int(x_codes.max()) + 1, int(y_codes.max()) + 1
    if x_count != y_count:
        return False
    return bool(len(np.unique(x_codes * y_count + y_codes)) == x_count)


def _text_codes(values: pd.Series) -> NDArray[np.int64]:
    # The codes of ``values.astype(str)``, with ``str`` applied once per distinct value, not per row.
    codes, uniques = pd.factorize(values)
    text_codes, _ = pd.factorize(np.asarray([str(u) for u in uniques], dtype=object))
    return np.asarray(text_codes, dtype=np.int64)[codes]


def run(cfg: Config, contract: Contract, *, data: Path, out: Path, report: Path) -> ValidationResult:
    """Validate the raw table; write the report, then the conformed table or raise ``ValidationFailed``."""
    if cfg.engine == "dask":
        from conveyor.engine import validate as dask_validate

        return dask_validate.run(cfg, contract, data=data, out=out, report=report)
    df = io.read_table(data)
    result = validate(df, contract, target=cfg.data.target, task=cfg.task)
    io.write_artifact(result.to_report(), report)
    if not result.passed:
        lines = "\n".join(f"  {f}" for f in result.errors)
        raise ValidationFailed(f"{len(result.errors)} data check(s) failed ({report}):\n{lines}")
    io.write_table(conform(df, contract), out)
    return result
