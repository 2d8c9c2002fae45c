"""Drift of each input column and of the prediction, with Evidently's test for the column's type and size.

p-value tests share ``monitor.drift_p_value`` (Bonferroni), so that is the false-alarm rate of
the whole window, not of each column; for references over 1,000 rows Evidently picks a distance,
held to ``monitor.drift_distance``.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
import pandas as pd

from conveyor.artifacts import ColumnDrift
from conveyor.config import MonitorConfig
from conveyor.contract import Contract
from conveyor.errors import MonitorError
from conveyor.model.features import FeatureSpec
from conveyor.model.registry import Task

__all__ = [
    "NOT_AN_INPUT",
    "PREDICTION",
    "SKIPPED",
    "TEST_KINDS",
    "column_drift",
    "drift_frame",
    "evidently_quiet",
    "import_evidently",
]

PREDICTION = "prediction"
# Evidently's default per-column tests (chosen by column type and reference size) and what their
# score is. A test not listed here is refused rather than judged the wrong way round.
TEST_KINDS: dict[str, Literal["p_value", "distance"]] = {
    "ks": "p_value",
    "chisquare_two_sample": "p_value",  # in place of Evidently's "chisquare", see _two_sample_chi_square
    "z": "p_value",
    "wasserstein": "distance",
    "jensenshannon": "distance",
}


@contextmanager
def evidently_quiet() -> Iterator[None]:
    """Evidently 0.7.23 under pandas 3: silence the deprecation warnings raised inside it and its
    dependencies (plotly, litestar), which are theirs to fix and change nothing here."""
    with warnings.catch_warnings():
        for module in ("evidently", "plotly", "litestar"):
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=module)
            warnings.filterwarnings("ignore", category=FutureWarning, module=module)
        # Compiling Evidently's sources (when no bytecode was installed) warns about their regexes.
        warnings.filterwarnings("ignore", message="invalid escape sequence", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="invalid escape sequence", category=SyntaxWarning)
        yield


def import_evidently() -> None:
    """Import Evidently, first giving pandas 3 the helper Evidently's legacy module still imports.

    ``pandas.core.dtypes.common.infer_dtype_from_object`` was removed in pandas 3; Evidently
    imports it at module level for one test class that Conveyor never uses. Without it nothing
    of Evidently imports.
    """
    from pandas.core.dtypes import common

    if not hasattr(common, "infer_dtype_from_object"):
        common.infer_dtype_from_object = lambda dtype: pd.api.types.pandas_dtype(dtype).type  # type: ignore[attr-defined]
    with evidently_quiet():
        import evidently  # noqa: F401


# Why a column gets no drift test, by contract type; each is still checked against the contract
# (invalid_records) and for missing values.
SKIPPED: dict[str, str] = {
    "datetime": "a date: each window brings dates the training data never had, so it would always drift",
    "text": "free text: no drift test on raw text",
    "string": "free text: no drift test on raw text",
    "id": "a key: every record brings a value of its own",
}
NOT_AN_INPUT = "not a model input: the reference keeps the model's inputs only"


def drift_frame(frame: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """``frame`` with each ``bool`` column as the text ``"false"``/``"true"``, as drift tests and Evidently take it.

    Booleans are categories here, whatever form they arrived in: ``bool`` or pandas' ``boolean``
    (the reference), JSON ``true``/``false`` (the prediction log) or ``0.0``/``1.0`` (references
    packaged before bools were kept as bools). Missing values stay missing.
    """
    out = frame.copy()
    for name in frame.columns:
        spec = contract.columns.get(str(name))
        if spec is not None and spec.type == "bool":
            values = pd.to_numeric(frame[name].astype("object").where(frame[name].notna(), None), errors="coerce")
            out[name] = values.map(lambda v: None if pd.isna(v) else "true" if v == 1 else "false").astype("object")
    return out


def column_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    spec: FeatureSpec,
    task: Task,
    monitor: MonitorConfig,
    *,
    contract: Contract | None = None,
) -> list[ColumnDrift]:
    """Evidently's per-column drift test for every input column and the prediction.

    With the ``contract``, each column is tested as its type says (numbers as numbers; categories
    and bools as categories) or skipped with the reason (:data:`SKIPPED`), and so is every other
    column of ``current`` (contract columns the model does not take: by their type's reason, else
    :data:`NOT_AN_INPUT`).
    Without it, the model's numeric inputs are numbers and the rest categories.
    """
    import_evidently()
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    numeric = set(spec.numeric) | ({PREDICTION} if task == "regression" else set())
    skipped: dict[str, str] = {}
    if contract is not None:
        types = {name: contract.columns[name].type for name in spec.columns if name in contract.columns}
        numeric = {name for name, kind in types.items() if kind in ("int", "float")} | (numeric & {PREDICTION})
        others = [str(c) for c in current.columns if c not in spec.columns and c != PREDICTION]
        types |= {name: contract.columns[name].type for name in others if name in contract.columns}
        skipped = {name: SKIPPED[kind] for name, kind in types.items() if kind in SKIPPED}
        skipped |= {name: NOT_AN_INPUT for name in others if name not in skipped}
        reference, current = drift_frame(reference, contract), drift_frame(current, contract)
    planned = []
    for column in [*spec.columns, PREDICTION]:
        if column in skipped:
            continue
        kind = ColumnType.Numerical if column in numeric else ColumnType.Categorical
        ref, cur = (
            _values(reference[column], kind is ColumnType.Numerical),
            _values(current[column], kind is ColumnType.Numerical),
        )
        test = get_stattest(ref, cur, kind, None) if len(ref) and len(cur) else None
        if test is not None and test.name == "chisquare":
            test = _two_sample_chi_square()
        if test is not None and test.name not in TEST_KINDS:
            raise MonitorError(
                f"column {column!r}: Evidently chose the drift test {test.name!r}, which Conveyor cannot interpret"
            )
        planned.append((column, kind, ref, cur, test))
    p_value_tests = sum(1 for *_, test in planned if test is not None and TEST_KINDS[test.name] == "p_value")
    results = []
    with evidently_quiet():
        for column, kind, ref, cur, test in planned:
            role: Literal["input", "prediction"] = "prediction" if column == PREDICTION else "input"
            if test is None:
                threshold = monitor.drift_p_value
                results.append(
                    ColumnDrift(
                        column=column,
                        role=role,
                        method="no values",
                        kind="p_value",
                        score=None,
                        threshold=threshold,
                        drifted=False,
                    )
                )
                continue
            test_kind = TEST_KINDS[test.name]
            threshold = monitor.drift_p_value / p_value_tests if test_kind == "p_value" else monitor.drift_distance
            outcome = test(ref, cur, kind, threshold)
            results.append(
                ColumnDrift(
                    column=column,
                    role=role,
                    method=test.name,
                    kind=test_kind,
                    score=float(outcome.drift_score),
                    threshold=threshold,
                    drifted=bool(outcome.drifted),
                )
            )
    results += [
        ColumnDrift(
            column=column,
            role="input",
            method="skipped",
            kind="p_value",
            score=None,
            threshold=monitor.drift_p_value,
            drifted=False,
            reason=reason,
        )
        for column, reason in skipped.items()
    ]
    return results


@functools.cache
def _two_sample_chi_square() -> Any:
    """The chi-square test of homogeneity (scipy), registered with Evidently as one of its drift tests.

    Evidently's ``chisquare`` (its choice for categories when the reference has up to 1,000 rows)
    is a goodness-of-fit test: it takes the reference's shares as exact, though they are a sample
    themselves. With a reference not much larger than the window it alarms far more often than its
    p-value says (16% of 50 same-distribution windows here, where 5% was asked). This test compares
    the two samples' counts; registered, it also runs in Evidently's HTML report.
    """
    from evidently.legacy.calculations.stattests.registry import StatTest, register_stattest
    from evidently.legacy.core import ColumnType
    from scipy.stats import chi2_contingency

    def homogeneity(reference: pd.Series, current: pd.Series, _: object, threshold: float) -> tuple[float, bool]:
        counts = pd.DataFrame({"reference": reference.value_counts(), "current": current.value_counts()})
        table = counts.fillna(0).to_numpy().T
        p_value = 1.0 if table.shape[1] < 2 else float(chi2_contingency(table, correction=False).pvalue)
        return p_value, p_value < threshold

    test = StatTest(
        name="chisquare_two_sample",
        display_name="chi-square two-sample p_value",
        allowed_feature_types=[ColumnType.Categorical, ColumnType.Numerical],
    )
    register_stattest(test, homogeneity)
    return test


def _values(column: pd.Series, numeric: bool) -> pd.Series:
    """A column as Evidently's drift tests take it: no missing or infinite values; text for categories."""
    if numeric:
        values = pd.to_numeric(column, errors="coerce").astype("float64").replace([np.inf, -np.inf], np.nan)
        return values.dropna().reset_index(drop=True)
    return column.dropna().astype(str).astype(object).reset_index(drop=True)
