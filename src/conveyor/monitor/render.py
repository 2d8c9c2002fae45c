"""The monitor's outputs: ``monitor.json``, ``summary.md`` (what goes in an issue) and Evidently's HTML report."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from conveyor import io
from conveyor.artifacts import MonitorReport, MonitorStatus
from conveyor.config import MonitorConfig
from conveyor.monitor.checks import Assessment
from conveyor.monitor.drift import TEST_KINDS, evidently_quiet, import_evidently

__all__ = [
    "REPORT_JSON",
    "SUMMARY",
    "evidently_drift_share",
    "summary_markdown",
    "verdict_html",
    "write_html",
    "write_outputs",
]

REPORT_JSON = "monitor.json"
REPORT_HTML = "report.html"
SUMMARY = "summary.md"
VERDICTS: dict[MonitorStatus, str] = {"ok": "✅ ok", "alert": "🔴 alert", "insufficient_data": "⚪ insufficient data"}


def write_html(assessment: Assessment, path: Path, monitor: MonitorConfig) -> None:
    """Evidently's drift report on the same columns, tests, thresholds and verdict as ``monitor.json``,
    under Conveyor's verdict and every check's result (what the issue it is linked from says).

    The dataset-level drift verdict is the ``data_drift`` check's: the input columns only, each with
    the test and threshold Conveyor used, Evidently's share threshold set so that it fires exactly
    when the share exceeds ``monitor.max_drifted_share``. The prediction's drift is a metric of its
    own, as in ``prediction_drift``.
    """
    import_evidently()
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    tested = [d for d in assessment.report.drift if d.method in TEST_KINDS]
    if not tested:
        return
    # Only the tested columns: Evidently would guess a type for any other (a date, an id, free text).
    names = [d.column for d in tested]
    current, reference = assessment.current[names], assessment.reference[names]
    # Bools arrive as "false"/"true" text (drift_frame): categories, as their drift test took them.
    numeric = [d.column for d in tested if pd.api.types.is_numeric_dtype(reference[d.column])]
    definition = DataDefinition(
        numerical_columns=numeric, categorical_columns=[d.column for d in tested if d.column not in numeric]
    )
    inputs = [d for d in tested if d.role == "input"]
    metrics: list[Any] = []
    if inputs:
        metrics.append(
            DataDriftPreset(
                columns=[d.column for d in inputs],
                per_column_method={d.column: d.method for d in inputs},
                per_column_threshold={d.column: d.threshold for d in inputs},
                drift_share=evidently_drift_share(monitor.max_drifted_share, len(inputs)),
            )
        )
    metrics += [
        ValueDrift(column=d.column, method=d.method, threshold=d.threshold) for d in tested if d.role != "input"
    ]
    with evidently_quiet():
        snapshot = Report(metrics).run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(path))
    page = path.read_text(encoding="utf-8")
    body = page.index(">", page.index("<body")) + 1
    path.write_text(page[:body] + verdict_html(assessment.report) + page[body:], encoding="utf-8")


def evidently_drift_share(max_drifted_share: float, inputs: int) -> float:
    """Evidently's ``drift_share`` for ``inputs`` columns: the smallest share above ``max_drifted_share``.

    Evidently calls a dataset drifted at a share of drifted columns ``>= drift_share``; the monitor
    alerts at a share ``> max_drifted_share``. Both count whole columns, so the two agree exactly
    when ``drift_share`` is the share of the fewest columns that exceed ``max_drifted_share``.
    """
    # n / inputs is the share Evidently computes, so the comparison is exact, not within rounding.
    fewest = next((n for n in range(inputs + 1) if n / inputs > max_drifted_share), inputs + 1)
    return fewest / inputs


def verdict_html(report: MonitorReport) -> str:
    """Conveyor's verdict, every check and every column's drift test, as HTML for the top of the report."""
    checks = "".join(
        f"<tr data-check='{escape(c.name)}' data-status='{c.status}'><td>{escape(c.name)}</td>"
        f"<td>{escape(VERDICTS[c.status])}</td><td>{escape(c.message)}</td></tr>"
        for c in report.checks
    )
    columns = "".join(
        f"<tr data-column='{escape(d.column)}' data-drifted='{str(d.drifted).lower()}'><td>{escape(d.column)}</td>"
        f"<td>{escape(d.role)}</td><td>{escape(d.method)}</td>"
        f"<td>{'-' if d.score is None else f'{d.score:.4g}'}</td><td>{d.threshold:.4g}</td>"
        f"<td>{'drifted' if d.drifted else 'no drift'}</td></tr>"
        for d in report.drift
    )
    return (
        "<section id='conveyor-verdict' style='font-family:sans-serif;margin:16px 24px'>"
        f"<h2 data-status='{report.status}'>Model monitor: {escape(VERDICTS[report.status])}</h2>"
        f"<p>Model <code>{escape(report.model_tag)}</code>; window <code>{escape(report.source)}</code>: "
        f"{report.rows} records, reference {report.reference_rows} rows. Conveyor's verdict; "
        "Evidently's report below runs the same drift tests with the same thresholds.</p>"
        "<table id='conveyor-checks'><tr><th>check</th><th>status</th><th>detail</th></tr>"
        f"{checks}</table>"
        "<table id='conveyor-drift'><tr><th>column</th><th>role</th><th>test</th><th>score</th>"
        f"<th>threshold</th><th>result</th></tr>{columns}</table></section>"
    )


def summary_markdown(report: MonitorReport) -> str:
    """``summary.md``: the verdict first, then what drifted, then every check; what goes in an issue."""
    lines = [
        f"## Model monitor: {VERDICTS[report.status]}",
        "",
        f"Model `{report.model_tag}`; window `{report.source}`: {report.rows} records"
        f" ({report.labelled_rows} labelled), reference {report.reference_rows} training rows.",
        "",
    ]
    lines += _left_out(report)
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
    skipped = [d for d in report.drift if d.method == "skipped"]
    if skipped:
        lines += ["**Not tested for drift:** " + "; ".join(f"`{d.column}` ({d.reason})" for d in skipped), ""]
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


def _left_out(report: MonitorReport) -> list[str]:
    """What the prediction logs held that the window does not: one line, none if nothing was left out."""
    parts = []
    if report.logged_records is not None and report.logged_records > report.rows:
        parts.append(
            f"a sample of {report.rows} of this model's {report.logged_records} logged records (monitor.max_window_rows)"
        )
    if report.other_model_records:
        parts.append(f"{report.other_model_records} records of another model_tag left out")
    if report.torn_lines:
        parts.append(f"{report.torn_lines} half-written last line(s) skipped")
    return [f"**Not judged:** {'; '.join(parts)}.", ""] if parts else []


def write_outputs(assessment: Assessment, out: Path, monitor: MonitorConfig) -> MonitorReport:
    """Write ``report.html``, ``monitor.json`` and ``summary.md`` into ``out``; return the report."""
    html = out / REPORT_HTML
    write_html(assessment, html, monitor)
    report = assessment.report.model_copy(update={"html_report": REPORT_HTML if html.exists() else None})
    io.write_json(report.model_dump(mode="json"), out / REPORT_JSON)
    (out / SUMMARY).write_text(summary_markdown(report), encoding="utf-8")
    return report
