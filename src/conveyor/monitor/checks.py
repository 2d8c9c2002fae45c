"""The monitor's checks, one function each, and :func:`assess`, which runs them on a window.

The package stage keeps a sample of the training split in the bundle (``reference.parquet``),
so a packaged model can be monitored from its tag alone. :func:`assess` compares a window with
it and runs every function of :data:`CHECKS` on the result (an :class:`Evidence`):

- volume: fewer than ``monitor.min_rows`` records is ``insufficient_data``, never ``ok``, and so
  is every check of a share of the window's records (contract, categories, missing rates, drift);
- data quality against the data contract (the validate stage's pandera schema): the share of
  records that would fail it, of records with a category it does not list, missing rates;
- drift of each input column and of the prediction (:mod:`conveyor.monitor.drift`);
- with labels (request id -> true label), the gate's metrics against the gate's thresholds;
- with a stage-timings file, the last pipeline's wall time against ``monitor.max_pipeline_seconds``.

Drift, prediction and performance are judged on the records that pass the contract: the model
never sees the others (the service refuses them). A new check is a function of an
:class:`Evidence` returning its results, added to :data:`CHECKS`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import pandera.pandas as pa

from conveyor.artifacts import CheckResult, ColumnDrift, MonitorReport, MonitorStatus, StageTimings
from conveyor.config import GateConfig, MonitorConfig
from conveyor.contract import Contract, pandera_schema
from conveyor.errors import MonitorError
from conveyor.model.features import FeatureSpec
from conveyor.model.registry import Task
from conveyor.monitor.drift import PREDICTION, column_drift, drift_frame

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

__all__ = [
    "Assessment",
    "ContractFailures",
    "Evidence",
    "assess",
    "checked_columns",
    "data_drift",
    "invalid_records",
    "missing_values",
    "new_categories",
    "overall_status",
    "performance",
    "pipeline_time",
    "prediction_drift",
    "volume",
]


@dataclass(frozen=True)
class ContractFailures:
    """The contract's column checks on a window's input columns: which records fail, and where.

    ``failing`` and ``new_category`` are boolean Series aligned with the window's rows (reset).
    """

    failing: pd.Series
    new_category: pd.Series
    columns: frozenset[str]
    category_columns: frozenset[str]

    @classmethod
    def of(cls, frame: pd.DataFrame, spec: FeatureSpec, contract: Contract) -> ContractFailures:
        """Validate ``frame`` (the checked columns, index reset) against the contract's pandera schema.

        ``frame`` holds the model's input columns (``spec``) and any other contract column the
        window carries (see :func:`checked_columns`); each is held to its contract type.
        """
        failing = pd.Series(False, index=frame.index)
        new_category = pd.Series(False, index=frame.index)
        failed_columns: set[str] = set()
        category_columns: set[str] = set()
        categories = [str(c) for c in frame.columns if c in contract.columns and contract.columns[c].type == "category"]
        try:
            pandera_schema(contract).select_columns([str(c) for c in frame.columns]).validate(frame, lazy=True)
        except pa.errors.SchemaErrors as exc:
            cases = exc.failure_cases
            located = cases[cases["index"].notna()]
            failing.loc[located["index"].astype(int).unique()] = True
            failed_columns = {str(c) for c in cases["column"].dropna()}
            isin = located[located["check"].astype(str).str.startswith("isin") & located["column"].isin(categories)]
            new_category.loc[isin["index"].astype(int).unique()] = True
            category_columns = {str(c) for c in isin["column"]}
        return cls(failing, new_category, frozenset(failed_columns), frozenset(category_columns))


@dataclass(frozen=True)
class Evidence:
    """Everything a check judges: the window's input columns, the contract's verdict on them, the
    valid records and the reference with their predictions, the drift tests, labels and timings.

    ``current`` and ``reference`` hold the input columns and ``prediction``; ``truth`` is aligned
    with ``current`` (missing where unlabelled), None without labels.
    """

    frame: pd.DataFrame
    failures: ContractFailures
    current: pd.DataFrame
    reference: pd.DataFrame
    drift: list[ColumnDrift]
    truth: pd.Series | None
    timings: StageTimings | None
    model: Pipeline
    contract: Contract
    task: Task
    target: str
    monitor: MonitorConfig
    gate: GateConfig

    @property
    def rows(self) -> int:
        """Records in the window."""
        return len(self.frame)

    @property
    def enough(self) -> bool:
        """Whether the window has ``monitor.min_rows`` records, enough to judge drift."""
        return self.rows >= self.monitor.min_rows


Check = Callable[[Evidence], list[CheckResult]]


def volume(evidence: Evidence) -> list[CheckResult]:
    """``volume``: the window's records against ``monitor.min_rows``."""
    rows, monitor = evidence.rows, evidence.monitor
    return [
        CheckResult(
            name="volume",
            status="ok" if evidence.enough else "insufficient_data",
            value=float(rows),
            threshold=float(monitor.min_rows),
            bound="min",
            message=f"{rows} records"
            + ("" if evidence.enough else f", fewer than monitor.min_rows {monitor.min_rows}: too few to judge drift"),
        )
    ]


def invalid_records(evidence: Evidence) -> list[CheckResult]:
    """``invalid_records``: the share of records that would fail the data contract."""
    failures = evidence.failures
    flagged, limit = failures.failing, evidence.monitor.max_invalid_share
    return _share_of_records(
        evidence, "invalid_records", flagged, limit, columns=failures.columns, what="would fail the data contract"
    )


def new_categories(evidence: Evidence) -> list[CheckResult]:
    """``new_categories``: the share of records with a category the contract does not list."""
    failures = evidence.failures
    flagged, limit = failures.new_category, evidence.monitor.max_new_category_share
    what = "have a category the contract does not list"
    return _share_of_records(evidence, "new_categories", flagged, limit, columns=failures.category_columns, what=what)


def _judged(evidence: Evidence, alerting: bool) -> MonitorStatus:
    """A share-of-records check's status: a share of fewer than ``monitor.min_rows`` records is noise."""
    if not evidence.enough:
        return "insufficient_data"
    return "alert" if alerting else "ok"


def _too_few_suffix(evidence: Evidence) -> str:
    return "" if evidence.enough else f"; fewer than monitor.min_rows {evidence.monitor.min_rows} records: not judged"


def _share_of_records(
    evidence: Evidence, name: str, flagged: pd.Series, limit: float, *, columns: frozenset[str], what: str
) -> list[CheckResult]:
    rows = len(flagged)
    share = float(flagged.mean()) if rows else 0.0
    return [
        CheckResult(
            name=name,
            status=_judged(evidence, share > limit),
            value=share,
            threshold=limit,
            bound="max",
            columns=sorted(columns),
            message=f"{int(flagged.sum())} of {rows} records {what}{_too_few_suffix(evidence)}",
        )
    ]


def missing_values(evidence: Evidence) -> list[CheckResult]:
    """``missing_values``: each input column's missing rate against ``monitor.max_missing_fraction``."""
    frame, rows, monitor = evidence.frame, evidence.rows, evidence.monitor
    contract_limit = evidence.contract.checks.max_missing_fraction
    max_missing = contract_limit if monitor.max_missing_fraction is None else monitor.max_missing_fraction
    missing_rates = frame.isna().mean() if rows else pd.Series(0.0, index=frame.columns)
    too_missing = sorted(str(c) for c in missing_rates.index[missing_rates > max_missing])
    worst = float(missing_rates.max()) if len(missing_rates) else 0.0
    return [
        CheckResult(
            name="missing_values",
            status=_judged(evidence, bool(too_missing)),
            value=worst,
            threshold=max_missing,
            bound="max",
            columns=too_missing,
            message=f"highest missing rate {worst:.1%} ({missing_rates.idxmax() if rows and worst else 'none'})"
            + _too_few_suffix(evidence),
        )
    ]


def data_drift(evidence: Evidence) -> list[CheckResult]:
    """``data_drift``: the share of input columns whose drift test fired, against ``monitor.max_drifted_share``.

    Columns no drift test applies to (method ``skipped``: keys, dates, free text, columns the model
    does not take) are not counted.
    """
    inputs = [d for d in evidence.drift if d.role == "input" and d.method != "skipped"]
    drifted = [d.column for d in inputs if d.drifted]
    share = len(drifted) / len(inputs) if inputs else None
    limit = evidence.monitor.max_drifted_share
    return [
        CheckResult(
            name="data_drift",
            status="insufficient_data" if share is None else ("alert" if share > limit else "ok"),
            value=share,
            threshold=limit,
            bound="max",
            columns=drifted,
            message=f"{len(drifted)} of {len(inputs)} input columns drifted" if inputs else _too_few(evidence),
        )
    ]


def prediction_drift(evidence: Evidence) -> list[CheckResult]:
    """``prediction_drift``: the drift test of the predictions on the window against those on the reference."""
    prediction = next((d for d in evidence.drift if d.role == "prediction"), None)
    if prediction is None or prediction.score is None:
        return [
            CheckResult(
                name="prediction_drift",
                status="insufficient_data",
                value=None,
                threshold=None,
                bound="min",
                message=_too_few(evidence),
            )
        ]
    return [
        CheckResult(
            name="prediction_drift",
            status="alert" if prediction.drifted else "ok",
            value=prediction.score,
            threshold=prediction.threshold,
            bound="min" if prediction.kind == "p_value" else "max",
            columns=[PREDICTION] if prediction.drifted else [],
            message=f"{prediction.method} {prediction.kind.replace('_', '-')} {prediction.score:.3g} against {prediction.threshold:.3g}",
        )
    ]


def _too_few(evidence: Evidence) -> str:
    return "no valid records to compare" if evidence.enough else "too few records to judge (see volume)"


def performance(evidence: Evidence) -> list[CheckResult]:
    """``performance.<metric>``: the gate's metrics on the labelled records, held to the gate's thresholds (none without labels)."""
    if evidence.truth is None:
        return []
    from conveyor.model.metrics import score

    truth, current, target, monitor = evidence.truth, evidence.current, evidence.target, evidence.monitor
    labelled = current[truth.notna().to_numpy()].assign(**{target: truth.dropna().to_numpy()})
    values: Mapping[str, float] = {}
    reason = f"{len(labelled)} labelled records, fewer than monitor.min_labelled_rows {monitor.min_labelled_rows}"
    if len(labelled) >= monitor.min_labelled_rows:
        from sklearn.exceptions import UndefinedMetricWarning

        try:
            # A window missing a class has no AUC (NaN, then insufficient_data below, if gated).
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UndefinedMetricWarning)
                scored = score(evidence.model, labelled, target=target, task=evidence.task)
                values = {k: v for k, v in scored.items() if np.isfinite(v)}
        except ValueError as exc:
            # A label the model never saw has no defined log-loss.
            reason = f"the gate's metrics are undefined on this window: {exc}"
    checks = []
    for metric, bound in evidence.gate.thresholds.items():
        sides: tuple[tuple[Literal["min", "max"], float | None], ...] = (("min", bound.min), ("max", bound.max))
        for side, limit in sides:
            if limit is None:
                continue
            value = values.get(metric)
            if value is None:
                checks.append(
                    CheckResult(
                        name=f"performance.{metric}",
                        status="insufficient_data",
                        value=None,
                        threshold=limit,
                        bound=side,
                        message=reason
                        if not values
                        else f"{metric} is undefined on this window (a class has no labelled record)",
                    )
                )
                continue
            healthy = value >= limit if side == "min" else value <= limit
            checks.append(
                CheckResult(
                    name=f"performance.{metric}",
                    status="ok" if healthy else "alert",
                    value=value,
                    threshold=limit,
                    bound=side,
                    message=f"{metric} {value:.4f} on {len(labelled)} labelled records; the gate requires {side} {limit}",
                )
            )
    return checks


def pipeline_time(evidence: Evidence) -> list[CheckResult]:
    """``pipeline_time``: the last pipeline's wall time against ``monitor.max_pipeline_seconds`` (none without timings)."""
    timings, monitor = evidence.timings, evidence.monitor
    if timings is None:
        return []
    slowest = timings.slowest
    over = timings.total > monitor.max_pipeline_seconds
    named = f"; slowest stage {slowest} ({timings.root[slowest]:.0f} s)" if slowest else ""
    return [
        CheckResult(
            name="pipeline_time",
            status="alert" if over else "ok",
            value=timings.total,
            threshold=monitor.max_pipeline_seconds,
            bound="max",
            columns=[slowest] if slowest else [],
            message=f"the last pipeline ran {timings.total:.0f} s{named}",
        )
    ]


# In the order monitor.json and summary.md list their results.
CHECKS: tuple[Check, ...] = (
    volume,
    invalid_records,
    new_categories,
    missing_values,
    data_drift,
    prediction_drift,
    performance,
    pipeline_time,
)


@dataclass(frozen=True)
class Assessment:
    """The verdict, and the frames it was computed on (for Evidently's HTML report)."""

    report: MonitorReport
    reference: pd.DataFrame
    current: pd.DataFrame


def assess(
    reference: pd.DataFrame,
    window: pd.DataFrame,
    *,
    model: Pipeline,
    spec: FeatureSpec,
    contract: Contract,
    task: Task,
    target: str,
    monitor: MonitorConfig,
    gate: GateConfig,
    model_tag: str,
    source: str,
    labels: pd.Series | None = None,
    timings: StageTimings | None = None,
    checks: tuple[Check, ...] = CHECKS,
) -> Assessment:
    """Judge ``window`` (records with the model's input columns) against ``reference`` with ``checks``; pure.

    Parameters
    ----------
    reference : DataFrame of shape (n_reference, >= n_features), the bundle's training sample
    window : DataFrame of shape (n_records, >= n_features)
    labels : Series of shape (n_records,) aligned with ``window``, missing where unlabelled
    """
    missing = [name for name in spec.columns if name not in window.columns]
    if missing:
        raise MonitorError(f"{source}: the window lacks the model's input column(s) {missing}")
    from conveyor.model.predict import predict

    frame = window[checked_columns(window, spec, contract, target=target)].reset_index(drop=True)
    failures = ContractFailures.of(frame, spec, contract)
    valid = (~failures.failing).to_numpy()
    current = frame[valid].reset_index(drop=True)
    reference = reference[list(spec.columns)].reset_index(drop=True)
    if len(current):
        current[PREDICTION] = _as_column(predict(model, current), task)
    reference[PREDICTION] = _as_column(predict(model, reference), task)
    enough = len(frame) >= monitor.min_rows
    drift = column_drift(reference, current, spec, task, monitor, contract=contract) if enough and len(current) else []
    truth = None if labels is None else labels[valid].reset_index(drop=True)
    evidence = Evidence(
        frame, failures, current, reference, drift, truth, timings, model, contract, task, target, monitor, gate
    )
    results = [result for check in checks for result in check(evidence)]
    report = MonitorReport(
        status=overall_status(results),
        model_tag=model_tag,
        source=source,
        rows=len(frame),
        reference_rows=len(reference),
        labelled_rows=0 if truth is None else int(truth.notna().sum()),
        checks=results,
        drift=drift,
    )
    # Evidently's report takes bools as the categories its drift tests saw (see drift_frame).
    return Assessment(report=report, reference=drift_frame(reference, contract), current=drift_frame(current, contract))


def checked_columns(window: pd.DataFrame, spec: FeatureSpec, contract: Contract, *, target: str) -> list[str]:
    """The window's columns the monitor checks: the model's inputs, then every other contract column
    (but the target) the window has a value in.

    A column no record has a value in is left out, not counted as 100% missing: the service logs
    ``null`` for the optional columns a client did not send (an id, a date, a dropped column).
    """
    others = [
        name
        for name in contract.columns
        if name not in spec.columns and name != target and name in window.columns and window[name].notna().any()
    ]
    return [*spec.columns, *others]


def overall_status(checks: list[CheckResult]) -> MonitorStatus:
    """``alert`` if any check alerts, else ``insufficient_data`` if any could not judge, else ``ok``."""
    statuses = {check.status for check in checks}
    if "alert" in statuses:
        return "alert"
    return "insufficient_data" if "insufficient_data" in statuses else "ok"


def _as_column(values: np.ndarray[Any, Any], task: Task) -> np.ndarray[Any, Any]:
    return values.astype(str).astype(object) if task == "classification" else values.astype("float64")
