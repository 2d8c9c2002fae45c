"""``conveyor monitor``: judge a window of served records against the training data.

The package stage keeps a sample of the training split in the bundle (``reference.parquet``),
so a packaged model can be monitored from its tag alone. A window comes from the service's
prediction logs (BentoML's ``bentoml.monitor`` JSON-lines files) or from any CSV/Parquet export,
locally or at an fsspec URL (``s3://…``). :func:`assess` compares it with the reference:

- volume: fewer than ``monitor.min_rows`` records is ``insufficient_data``, never ``ok``;
- drift of each input column and of the prediction, with Evidently's test for the column's type
  and the reference's size; p-value tests share ``monitor.drift_p_value`` (Bonferroni), so that
  is the false-alarm rate of the whole window, not of each column;
- data quality against the data contract (the validate stage's pandera schema): the share of
  records that would fail it, of records with a category it does not list, missing rates;
- with labels (request id -> true label), the gate's metrics against the gate's thresholds;
- with a stage-timings file, the last pipeline's wall time against ``monitor.max_pipeline_seconds``.

Drift, prediction and performance are judged on the records that pass the contract: the model
never sees the others (the service refuses them).
"""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import pandera.pandas as pa

from conveyor import io
from conveyor.artifacts import CheckResult, ColumnDrift, MonitorReport, MonitorStatus, StageTimings
from conveyor.config import Config, GateConfig, MonitorConfig
from conveyor.contract import Contract, pandera_schema
from conveyor.errors import ConveyorError
from conveyor.model.features import FeatureSpec
from conveyor.model.registry import Task
from conveyor.urls import redact_url

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

REFERENCE_FILE = "reference.parquet"
PREDICTION = "prediction"
REQUEST_ID = "request_id"
# Position of a record within its request: one request may carry many records under one id.
RECORD = "record"
# BentoML's default monitor exporter: <log_path>/<monitor name>/data/data.<worker>.log, rotated daily
# into data.<worker>.log.<date>.
LOG_PATTERN = "**/data/data.*.log*"

# Evidently's default per-column tests (chosen by column type and reference size) and what their
# score is. A test not listed here is refused rather than judged the wrong way round.
TEST_KINDS: dict[str, Literal["p_value", "distance"]] = {
    "ks": "p_value",
    "chisquare_two_sample": "p_value",  # in place of Evidently's "chisquare", see _two_sample_chi_square
    "z": "p_value",
    "wasserstein": "distance",
    "jensenshannon": "distance",
}


class MonitorError(ConveyorError):
    """A window, reference or label file that cannot be monitored; the message names it."""


# --- the reference, written by the package stage -----------------------------------------------


def reference_sample(train: pd.DataFrame, *, columns: tuple[str, ...], rows: int, seed: int) -> pd.DataFrame:
    """At most ``rows`` rows of the training split (a seeded sample), restricted to ``columns``."""
    kept = train[list(columns)]
    return kept.sample(n=rows, random_state=seed) if len(kept) > rows else kept


def write_reference(directory: Path, train: pd.DataFrame, *, columns: tuple[str, ...], rows: int, seed: int) -> None:
    """Store the reference sample in a bundle directory, beside the model it describes."""
    io.write_table(reference_sample(train, columns=columns, rows=rows, seed=seed), directory / REFERENCE_FILE)


# --- windows ---------------------------------------------------------------------------------


def read_logs(location: str) -> pd.DataFrame:
    """Every record in the BentoML monitor logs under ``location`` (a folder or an fsspec URL).

    Each line of ``data.<worker>.log*`` is one JSON object: the columns the service logs (see
    :class:`conveyor.serving.prediction_log.BentoMonitorExporter`) plus BentoML's ``timestamp``,
    ``request_id`` (the ``X-Request-ID`` the client got) and ``trace_id``. A ``record`` column
    numbers the records of each request in the order they were logged, so labels can name one
    record of a batch.
    """
    import fsspec

    fs, root = fsspec.core.url_to_fs(location)
    files = sorted(fs.glob(f"{root.rstrip('/')}/{LOG_PATTERN}"))
    if not files:
        raise MonitorError(f"{location}: no BentoML monitor logs (expected {LOG_PATTERN} under it)")
    records: list[dict[str, Any]] = []
    for name in files:
        with fs.open(name, "rt", encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise MonitorError(f"{name}: line {number} is not JSON: {exc}") from None
                if not isinstance(record, dict):
                    raise MonitorError(f"{name}: line {number} is not a JSON object")
                records.append(record)
    window = pd.DataFrame.from_records(records)
    if REQUEST_ID in window.columns:
        window[REQUEST_ID] = window[REQUEST_ID].map(_request_id).astype("object")
        window[RECORD] = window.groupby(REQUEST_ID, dropna=False).cumcount()
    return window


def _request_id(logged: object) -> str | None:
    """A request id as text, the service's ``X-Request-ID``; none where BentoML logged ``None``."""
    text = "" if logged is None else str(logged)
    return None if text in {"None", "nan", ""} else text


def read_labels(source: str, *, target: str) -> pd.DataFrame:
    """A labels table (CSV/Parquet, path or URL): ``request_id``, the target, optionally ``record``."""
    if Path(source.split("?", 1)[0]).suffix.lower() == ".csv":
        # Request ids as text: "00000000000003e9" would otherwise be read as the number 3e9.
        labels = pd.read_csv(source, dtype={REQUEST_ID: str})
    else:
        labels = io.read_source(source)
    if REQUEST_ID in labels.columns:
        labels[REQUEST_ID] = labels[REQUEST_ID].map(_request_id)
    missing = [name for name in (REQUEST_ID, target) if name not in labels.columns]
    if missing:
        raise MonitorError(f"{source}: the labels table lacks column(s) {missing}; expected {REQUEST_ID} and {target}")
    if RECORD not in labels.columns:
        labels[RECORD] = 0
    labels = labels[[REQUEST_ID, RECORD, target]].astype({REQUEST_ID: "object", RECORD: "int64"})
    duplicated = labels.duplicated([REQUEST_ID, RECORD])
    if duplicated.any():
        first = labels.loc[duplicated, REQUEST_ID].iloc[0]
        raise MonitorError(f"{source}: request {first!r} is labelled twice; add a {RECORD} column (0, 1, …)")
    return labels


def attach_labels(window: pd.DataFrame, labels: pd.DataFrame, *, target: str) -> pd.Series:
    """The true label of each window record (missing where none was given), in window order."""
    if REQUEST_ID not in window.columns:
        raise MonitorError(f"labels need a {REQUEST_ID} column in the window to join on; this window has none")
    keys = window[[REQUEST_ID]].astype("object").assign(**{RECORD: _record_numbers(window)})
    joined = keys.merge(labels, on=[REQUEST_ID, RECORD], how="left", validate="many_to_one")
    return pd.Series(joined[target].to_numpy(), index=window.index, name=target)


def _record_numbers(window: pd.DataFrame) -> pd.Series:
    if RECORD in window.columns:
        return window[RECORD].astype("int64")
    return pd.Series(0, index=window.index, dtype="int64")


# --- the checks ------------------------------------------------------------------------------


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
) -> Assessment:
    """Judge ``window`` (records with the model's input columns) against ``reference``; pure.

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

    rows = len(window)
    enough = rows >= monitor.min_rows
    quality, valid = _quality_checks(window, spec, contract, monitor)
    checks = [_volume(rows, monitor), *quality]
    current = window.loc[valid, list(spec.columns)].reset_index(drop=True)
    reference = reference[list(spec.columns)].reset_index(drop=True)
    if len(current):
        current[PREDICTION] = _as_column(predict(model, current), task)
    reference[PREDICTION] = _as_column(predict(model, reference), task)
    drift = _drift(reference, current, spec, task, monitor) if enough and len(current) else []
    checks += _drift_checks(drift, monitor, enough=enough)
    labelled = 0
    if labels is not None:
        truth = labels[valid].reset_index(drop=True)
        labelled = int(truth.notna().sum())
        checks += _performance(model, current, truth, target=target, task=task, gate=gate, monitor=monitor)
    if timings is not None:
        checks.append(_pipeline_time(timings, monitor))
    report = MonitorReport(
        status=overall_status(checks),
        model_tag=model_tag,
        source=source,
        rows=rows,
        reference_rows=len(reference),
        labelled_rows=labelled,
        checks=checks,
        drift=drift,
    )
    return Assessment(report=report, reference=reference, current=current)


def overall_status(checks: list[CheckResult]) -> MonitorStatus:
    """``alert`` if any check alerts, else ``insufficient_data`` if any could not judge, else ``ok``."""
    statuses = {check.status for check in checks}
    if "alert" in statuses:
        return "alert"
    return "insufficient_data" if "insufficient_data" in statuses else "ok"


def _as_column(values: np.ndarray[Any, Any], task: Task) -> np.ndarray[Any, Any]:
    return values.astype(str).astype(object) if task == "classification" else values.astype("float64")


def _volume(rows: int, monitor: MonitorConfig) -> CheckResult:
    enough = rows >= monitor.min_rows
    return CheckResult(
        name="volume",
        status="ok" if enough else "insufficient_data",
        value=float(rows),
        threshold=float(monitor.min_rows),
        bound="min",
        message=f"{rows} records"
        + ("" if enough else f", fewer than monitor.min_rows {monitor.min_rows}: too few to judge drift"),
    )


def _quality_checks(
    window: pd.DataFrame, spec: FeatureSpec, contract: Contract, monitor: MonitorConfig
) -> tuple[list[CheckResult], pd.Series]:
    """The contract's column checks on the input columns: invalid records, new categories, missing rates.

    Returns the checks and a boolean Series (aligned with ``window``) of records that pass.
    """
    columns = list(spec.columns)
    frame = window[columns].reset_index(drop=True)
    failing = pd.Series(False, index=frame.index)
    new_category = pd.Series(False, index=frame.index)
    failed_columns: set[str] = set()
    category_columns: set[str] = set()
    try:
        pandera_schema(contract).select_columns(columns).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        located = cases[cases["index"].notna()]
        failing.loc[located["index"].astype(int).unique()] = True
        failed_columns = {str(c) for c in cases["column"].dropna()}
        isin = located[located["check"].astype(str).str.startswith("isin") & located["column"].isin(spec.categorical)]
        new_category.loc[isin["index"].astype(int).unique()] = True
        category_columns = {str(c) for c in isin["column"]}
    rows = len(frame)
    invalid_share = float(failing.mean()) if rows else 0.0
    new_share = float(new_category.mean()) if rows else 0.0
    max_missing = (
        contract.checks.max_missing_fraction if monitor.max_missing_fraction is None else monitor.max_missing_fraction
    )
    missing_rates = frame.isna().mean() if rows else pd.Series(0.0, index=columns)
    too_missing = sorted(str(c) for c in missing_rates.index[missing_rates > max_missing])
    worst = float(missing_rates.max()) if len(missing_rates) else 0.0
    checks = [
        CheckResult(
            name="invalid_records",
            status="alert" if invalid_share > monitor.max_invalid_share else "ok",
            value=invalid_share,
            threshold=monitor.max_invalid_share,
            bound="max",
            columns=sorted(failed_columns),
            message=f"{int(failing.sum())} of {rows} records would fail the data contract",
        ),
        CheckResult(
            name="new_categories",
            status="alert" if new_share > monitor.max_new_category_share else "ok",
            value=new_share,
            threshold=monitor.max_new_category_share,
            bound="max",
            columns=sorted(category_columns),
            message=f"{int(new_category.sum())} of {rows} records have a category the contract does not list",
        ),
        CheckResult(
            name="missing_values",
            status="alert" if too_missing else "ok",
            value=worst,
            threshold=max_missing,
            bound="max",
            columns=too_missing,
            message=f"highest missing rate {worst:.1%} ({missing_rates.idxmax() if rows and worst else 'none'})",
        ),
    ]
    return checks, ~failing.set_axis(window.index)


# --- drift (Evidently) ---------------------------------------------------------------------


@contextmanager
def _evidently_quiet() -> Iterator[None]:
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


def _import_evidently() -> None:
    """Import Evidently, first giving pandas 3 the helper Evidently's legacy module still imports.

    ``pandas.core.dtypes.common.infer_dtype_from_object`` was removed in pandas 3; Evidently
    imports it at module level for one test class that Conveyor never uses. Without it nothing
    of Evidently imports.
    """
    from pandas.core.dtypes import common

    if not hasattr(common, "infer_dtype_from_object"):
        common.infer_dtype_from_object = lambda dtype: pd.api.types.pandas_dtype(dtype).type  # type: ignore[attr-defined]
    with _evidently_quiet():
        import evidently  # noqa: F401


def _drift(
    reference: pd.DataFrame, current: pd.DataFrame, spec: FeatureSpec, task: Task, monitor: MonitorConfig
) -> list[ColumnDrift]:
    """Evidently's per-column drift test for every input column and the prediction."""
    _import_evidently()
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    numeric = set(spec.numeric) | ({PREDICTION} if task == "regression" else set())
    planned = []
    for column in [*spec.columns, PREDICTION]:
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
    with _evidently_quiet():
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


def _drift_checks(drift: list[ColumnDrift], monitor: MonitorConfig, *, enough: bool) -> list[CheckResult]:
    inputs = [d for d in drift if d.role == "input"]
    drifted = [d.column for d in inputs if d.drifted]
    share = len(drifted) / len(inputs) if inputs else None
    data_drift = CheckResult(
        name="data_drift",
        status="insufficient_data" if share is None else ("alert" if share > monitor.max_drifted_share else "ok"),
        value=share,
        threshold=monitor.max_drifted_share,
        bound="max",
        columns=drifted,
        message=f"{len(drifted)} of {len(inputs)} input columns drifted" if inputs else _too_few(enough),
    )
    prediction = next((d for d in drift if d.role == "prediction"), None)
    if prediction is None or prediction.score is None:
        return [
            data_drift,
            CheckResult(
                name="prediction_drift",
                status="insufficient_data",
                value=None,
                threshold=None,
                bound="min",
                message=_too_few(enough),
            ),
        ]
    return [
        data_drift,
        CheckResult(
            name="prediction_drift",
            status="alert" if prediction.drifted else "ok",
            value=prediction.score,
            threshold=prediction.threshold,
            bound="min" if prediction.kind == "p_value" else "max",
            columns=[PREDICTION] if prediction.drifted else [],
            message=f"{prediction.method} {prediction.kind.replace('_', '-')} {prediction.score:.3g} against {prediction.threshold:.3g}",
        ),
    ]


def _too_few(enough: bool) -> str:
    return "no valid records to compare" if enough else "too few records to judge (see volume)"


def _performance(
    model: Pipeline,
    current: pd.DataFrame,
    truth: pd.Series,
    *,
    target: str,
    task: Task,
    gate: GateConfig,
    monitor: MonitorConfig,
) -> list[CheckResult]:
    """The gate's metrics on the labelled records, held to the gate's thresholds."""
    from conveyor.model.metrics import score

    labelled = current[truth.notna().to_numpy()].assign(**{target: truth.dropna().to_numpy()})
    values: Mapping[str, float] = {}
    reason = f"{len(labelled)} labelled records, fewer than monitor.min_labelled_rows {monitor.min_labelled_rows}"
    if len(labelled) >= monitor.min_labelled_rows:
        from sklearn.exceptions import UndefinedMetricWarning

        try:
            # A window missing a class has no AUC (NaN, then insufficient_data below, if gated).
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UndefinedMetricWarning)
                values = {k: v for k, v in score(model, labelled, target=target, task=task).items() if np.isfinite(v)}
        except ValueError as exc:
            # A label the model never saw has no defined log-loss.
            reason = f"the gate's metrics are undefined on this window: {exc}"
    checks = []
    for metric, bound in gate.thresholds.items():
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


def _pipeline_time(timings: StageTimings, monitor: MonitorConfig) -> CheckResult:
    slowest = timings.slowest
    over = timings.total > monitor.max_pipeline_seconds
    named = f"; slowest stage {slowest} ({timings.root[slowest]:.0f} s)" if slowest else ""
    return CheckResult(
        name="pipeline_time",
        status="alert" if over else "ok",
        value=timings.total,
        threshold=monitor.max_pipeline_seconds,
        bound="max",
        columns=[slowest] if slowest else [],
        message=f"the last pipeline ran {timings.total:.0f} s{named}",
    )


# --- outputs -------------------------------------------------------------------------------

REPORT_JSON = "monitor.json"
REPORT_HTML = "report.html"
SUMMARY = "summary.md"
VERDICTS: dict[MonitorStatus, str] = {"ok": "✅ ok", "alert": "🔴 alert", "insufficient_data": "⚪ insufficient data"}


def write_html(assessment: Assessment, path: Path, monitor: MonitorConfig) -> None:
    """Evidently's drift report on the same columns, tests and thresholds as ``monitor.json``."""
    _import_evidently()
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    tested = [d for d in assessment.report.drift if d.method in TEST_KINDS]
    if not tested:
        return
    numeric = [d.column for d in tested if pd.api.types.is_numeric_dtype(assessment.reference[d.column])]
    definition = DataDefinition(
        numerical_columns=numeric, categorical_columns=[d.column for d in tested if d.column not in numeric]
    )
    inputs = sum(1 for d in tested if d.role == "input")
    # Evidently calls the dataset drifted at a share >= drift_share; the monitor alerts above max_drifted_share.
    drift_share = (int(monitor.max_drifted_share * inputs) + 1) / inputs if inputs else 0.5
    preset = DataDriftPreset(
        columns=[d.column for d in tested],
        per_column_method={d.column: d.method for d in tested},
        per_column_threshold={d.column: d.threshold for d in tested},
        drift_share=min(drift_share, 1.0),
    )
    with _evidently_quiet():
        snapshot = Report([preset]).run(
            Dataset.from_pandas(assessment.current, data_definition=definition),
            Dataset.from_pandas(assessment.reference, data_definition=definition),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(path))


def summary_markdown(report: MonitorReport) -> str:
    """``summary.md``: the verdict first, then what drifted, then every check; what goes in an issue."""
    lines = [
        f"## Model monitor: {VERDICTS[report.status]}",
        "",
        f"Model `{report.model_tag}`; window `{report.source}`: {report.rows} records"
        f" ({report.labelled_rows} labelled), reference {report.reference_rows} training rows.",
        "",
    ]
    alerts = report.alerts
    if alerts:
        lines += ["**Alerts:** " + "; ".join(f"`{c.name}`: {c.message}" for c in alerts), ""]
    drifted = [d for d in report.drift if d.drifted]
    if drifted:
        shown = ", ".join(
            f"`{d.column}` ({d.method} {d.score:.3g} vs {d.threshold:.3g})" for d in drifted if d.score is not None
        )
        lines += [f"**Drifted columns:** {shown}", ""]
    elif report.drift:
        lines += ["**Drifted columns:** none", ""]
    lines += ["| check | status | value | threshold | columns | detail |", "|---|---|---|---|---|---|"]
    for check in report.checks:
        value = "-" if check.value is None else f"{check.value:.4g}"
        threshold = "-" if check.threshold is None else f"{check.bound} {check.threshold:.4g}"
        columns = ", ".join(f"`{c}`" for c in check.columns) or "-"
        lines.append(
            f"| {check.name} | {VERDICTS[check.status]} | {value} | {threshold} | {columns} | {check.message} |"
        )
    links = [f"[{REPORT_JSON}]({REPORT_JSON})"]
    if report.html_report:
        links.insert(0, f"[Evidently report]({report.html_report})")
    lines += ["", "Files: " + " · ".join(links), ""]
    return "\n".join(lines)


def write_outputs(assessment: Assessment, out: Path, monitor: MonitorConfig) -> MonitorReport:
    """Write ``report.html``, ``monitor.json`` and ``summary.md`` into ``out``; return the report."""
    html = out / REPORT_HTML
    write_html(assessment, html, monitor)
    report = assessment.report.model_copy(update={"html_report": REPORT_HTML if html.exists() else None})
    io.write_json(report.model_dump(mode="json"), out / REPORT_JSON)
    (out / SUMMARY).write_text(summary_markdown(report), encoding="utf-8")
    return report


# --- the command ---------------------------------------------------------------------------


def default_model_tag(package_report: Path) -> str:
    """The model this checkout packaged (``reports/package.json``)."""
    if not package_report.is_file():
        raise MonitorError(f"{package_report}: not found; pass --model TAG or run the pipeline first")
    return str(io.read_json(package_report)["model_tag"])


def run(
    cfg: Config,
    *,
    model_tag: str,
    out: Path,
    logs: str | None = None,
    current: str | None = None,
    labels: str | None = None,
    timings: Path | None = None,
) -> MonitorReport:
    """Load the packaged model and its reference, read the window, assess it, write the outputs."""
    import bentoml

    from conveyor.serving.routes import MODEL_FILE, Bundle

    try:
        directory = Path(bentoml.models.get(model_tag).path)
    except bentoml.exceptions.NotFound:
        raise MonitorError(
            f"model {model_tag}: not in the BentoML store ($BENTOML_HOME); run the pipeline or pass --model"
        ) from None
    bundle = Bundle.load(directory)
    if not (directory / REFERENCE_FILE).is_file():
        raise MonitorError(f"model {model_tag}: its bundle has no {REFERENCE_FILE}; package it again with this version")
    if (logs is None) == (current is None):
        raise MonitorError("give exactly one of --logs and --current")
    source = logs if logs is not None else str(current)
    window = read_logs(source) if logs is not None else io.read_source(source)
    target = bundle.info.target
    truth = attach_labels(window, read_labels(labels, target=target), target=target) if labels else None
    stage_timings = StageTimings.model_validate(io.read_json(timings)) if timings else None
    assessment = assess(
        io.read_table(directory / REFERENCE_FILE),
        window,
        model=io.load_model(directory / MODEL_FILE),
        spec=bundle.spec,
        contract=bundle.contract,
        task=bundle.info.task,
        target=target,
        monitor=cfg.monitor,
        gate=cfg.gate,
        model_tag=model_tag,
        source=redact_url(source),
        labels=truth,
        timings=stage_timings,
    )
    return write_outputs(assessment, out, cfg.monitor)
