"""``conveyor monitor``: load the packaged model and its reference, read the window, assess it, write the outputs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from conveyor import io
from conveyor.artifacts import MonitorReport, StageTimings
from conveyor.bundle import Bundle, read_package_report
from conveyor.config import Config
from conveyor.errors import MonitorError
from conveyor.monitor.checks import assess
from conveyor.monitor.render import write_outputs
from conveyor.monitor.windows import attach_labels, read_labels, read_logs
from conveyor.urls import redact_url

__all__ = ["default_model_tag", "label_keys", "run"]


def default_model_tag(package_report: Path) -> str:
    """The model this checkout packaged (``reports/package.json``)."""
    if not package_report.is_file():
        raise MonitorError(f"{package_report}: not found; pass --model TAG or run the pipeline first")
    return read_package_report(package_report).model_tag


def label_keys(bundle: Bundle) -> tuple[str, ...]:
    """What a labels table may name records by, besides ``request_id``: the contract's ``id``
    columns and, for a model fed from a feature store, its entity keys (the service logs both)."""
    online = bundle.info.online_features
    return (*bundle.contract.columns_of("id"), *(online.entity_keys if online is not None else ()))


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

    try:
        directory = Path(bentoml.models.get(model_tag).path)
    except bentoml.exceptions.NotFound:
        raise MonitorError(
            f"model {model_tag}: not in the BentoML store ($BENTOML_HOME); run the pipeline or pass --model"
        ) from None
    bundle = Bundle.load(directory)
    reference = bundle.reference()
    if (logs is None) == (current is None):
        raise MonitorError("give exactly one of --logs and --current")
    source = logs if logs is not None else str(current)
    logged = read_logs(source, model_tag=model_tag, max_rows=cfg.monitor.max_window_rows) if logs is not None else None
    window = (
        logged.frame if logged is not None else io.read_source(source, csv_format=cfg.data.csv, named_by="--current")
    )
    target = bundle.info.target
    keys = label_keys(bundle)
    truth = (
        attach_labels(window, read_labels(labels, target=target, keys=keys, csv_format=cfg.data.csv), target=target)
        if labels
        else None
    )
    stage_timings = StageTimings.model_validate(io.read_json(timings)) if timings else None
    assessment = assess(
        reference,
        window,
        model=bundle.model(),
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
    if logged is not None:
        counts = {
            "logged_records": logged.records,
            "torn_lines": logged.torn_lines,
            "other_model_records": logged.other_model_records,
        }
        assessment = dataclasses.replace(assessment, report=assessment.report.model_copy(update=counts))
    return write_outputs(assessment, out, cfg.monitor)
