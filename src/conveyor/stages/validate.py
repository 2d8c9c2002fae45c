"""validate: the data contract (pandera) plus whole-table checks. Bad data stops the line here.

Every finding is a :class:`Finding` with a level: ``error`` stops ``dvc repro`` (after
``reports/validation.json`` is written), ``warning`` is recorded and printed.
"""

from __future__ import annotations

import difflib
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
from conveyor.contract import Contract, conform, pandera_schema
from conveyor.errors import ConveyorError

__all__ = ["EXAMPLES", "RARE_CLASS_FRACTION", "Level", "ValidationFailed", "ValidationResult", "run", "validate"]

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


def _finding(level: Level, check: str, column: str | None, message: str, examples: list[Any] | None = None) -> Finding:
    return Finding(level=level, check=check, column=column, message=message, examples=examples or [])


class ValidationFailed(ConveyorError):
    """Raised by :func:`run` when an error-level check failed; the message lists each one."""


def validate(df: pd.DataFrame, contract: Contract, *, target: str, task: str) -> ValidationResult:
    """Check ``df`` against the contract and the dataset checks; pure, writes nothing."""
    findings = _structure(df, contract, target)
    present = [name for name in contract.columns if name in df.columns]
    findings += _contract_checks(df[present], contract, present)
    findings += _table_checks(df, contract)
    if target in df.columns:
        findings += _target_checks(df, contract, target, task)
    return ValidationResult(rows=len(df), columns=len(df.columns), findings=findings)


def _structure(df: pd.DataFrame, contract: Contract, target: str) -> list[Finding]:
    extra = [str(c) for c in df.columns if c not in contract.columns]
    findings = [
        _finding(
            "error",
            "target_present" if name == target else "column_present",
            name,
            "required by the data contract but missing from the data" + _did_you_mean(name, extra),
        )
        for name in contract.columns
        if name not in df.columns
    ]
    if target not in contract.columns:
        findings.append(_finding("error", "target_present", target, "data.target is not a column of the data contract"))
    if extra:
        findings.append(
            _finding(
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
        return _findings_from(exc.failure_cases, contract)
    return []


def _findings_from(failures: pd.DataFrame, contract: Contract) -> list[Finding]:
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
        findings.append(_finding("error", check_name, column if isinstance(column, str) else None, message, examples))
    return findings


def _examples(values: pd.Series) -> list[Any]:
    unique = pd.unique(values.dropna())[:EXAMPLES]
    return [v.item() if isinstance(v, np.generic) else v for v in unique]


def _table_checks(df: pd.DataFrame, contract: Contract) -> list[Finding]:
    checks = contract.checks
    findings: list[Finding] = []
    if len(df) < checks.min_rows:
        findings.append(
            _finding("error", "min_rows", None, f"{len(df)} rows; the contract requires at least {checks.min_rows}")
        )
    if len(df) == 0:
        return findings
    for name in contract.columns:
        if name not in df.columns:
            continue
        missing = float(df[name].isna().mean())
        if missing == 1.0:
            findings.append(_finding("error", "all_missing", name, "every value is missing"))
        elif missing > checks.max_missing_fraction:
            findings.append(
                _finding(
                    "error",
                    "max_missing_fraction",
                    name,
                    f"{missing:.1%} missing; the contract allows at most {checks.max_missing_fraction:.1%}",
                )
            )
        elif missing > checks.max_missing_fraction / 2:
            findings.append(
                _finding(
                    "warning",
                    "max_missing_fraction",
                    name,
                    f"{missing:.1%} missing, over half the allowed {checks.max_missing_fraction:.1%}",
                )
            )
    duplicated = df.duplicated()
    if duplicated.any():
        fraction = float(duplicated.mean())
        level: Level = "error" if fraction > checks.max_duplicate_fraction else "warning"
        rows = [int(i) for i in np.flatnonzero(duplicated.to_numpy())[:EXAMPLES]]
        findings.append(
            _finding(
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
            _finding("error", "target_missing_values", target, f"{int(y.isna().sum())} row(s) have no label")
        )
    labels = y.dropna()
    if task == "classification":
        counts = labels.astype(str).value_counts()
        if len(counts) < 2:
            findings.append(
                _finding(
                    "error",
                    "target_classes",
                    target,
                    f"classification needs at least two classes, found {len(counts)}",
                    list(counts.index[:EXAMPLES]),
                )
            )
        else:
            rare = counts[counts / counts.sum() < RARE_CLASS_FRACTION]
            if len(rare):
                findings.append(
                    _finding(
                        "warning",
                        "rare_classes",
                        target,
                        f"classes under {RARE_CLASS_FRACTION:.0%} of rows",
                        [f"{k}: {v}" for k, v in rare.items()],
                    )
                )
    else:
        not_numbers = pd.to_numeric(labels, errors="coerce").isna()
        if not_numbers.any():
            findings.append(
                _finding(
                    "error",
                    "target_numeric",
                    target,
                    "regression needs a numeric target",
                    _examples(labels[not_numbers]),
                )
            )
    findings += _leakage(df, contract, target, task)
    return findings


def _leakage(df: pd.DataFrame, contract: Contract, target: str, task: str) -> list[Finding]:
    """Features that reproduce the label: equal to it, or (classification) a one-to-one relabelling."""
    y = df[target]
    findings: list[Finding] = []
    labelled = y.notna()
    for name in contract.columns:
        if name == target or name not in df.columns or not contract.columns[name].feature:
            continue
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
            findings.append(
                _finding(
                    "error",
                    "label_leakage",
                    name,
                    f"reproduces the target {target!r} exactly; a model would learn the answer, not the task",
                )
            )
    return findings


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
