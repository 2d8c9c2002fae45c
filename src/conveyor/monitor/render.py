"""The monitor's outputs: ``monitor.json``, ``summary.md`` (what goes in an issue) and Evidently's HTML report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from conveyor import io
from conveyor.artifacts import MonitorReport, MonitorStatus
from conveyor.config import MonitorConfig
from conveyor.monitor.checks import Assessment
from conveyor.monitor.drift import TEST_KINDS, evidently_quiet, import_evidently

__all__ = ["REPORT_JSON", "SUMMARY", "summary_markdown", "write_html", "write_outputs"]

REPORT_JSON = "monitor.json"
REPORT_HTML = "report.html"
SUMMARY = "summary.md"
VERDICTS: dict[MonitorStatus, str] = {"ok": "✅ ok", "alert": "🔴 alert", "insufficient_data": "⚪ insufficient data"}


def write_html(assessment: Assessment, path: Path, monitor: MonitorConfig) -> None:
    """Evidently's drift report on the same columns, tests and thresholds as ``monitor.json``."""
    import_evidently()
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
    with evidently_quiet():
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
