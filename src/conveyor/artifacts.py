"""The files one stage writes for another, each a typed model: written and read only through here.

A stage never reads another stage's JSON by string keys: it asks :func:`conveyor.io.read_artifact`
for one of these models, which validates the file and names it when it is missing or corrupt. So
adding a field is one edit here that the type checker follows into every reader.

Every model here is written to a DVC-tracked file unless its docstring says otherwise, so none
holds a wall-clock time, a duration or the commit it was made at: the same code, data and params
must give the same bytes (timings belong to ``make bench``; the packaged bundle names its commit).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from conveyor.config import PredictionLogConfig, ServeConfig
from conveyor.model.registry import Task

__all__ = [
    "Artifact",
    "BundleInfo",
    "Champion",
    "ChampionStatus",
    "Check",
    "CheckResult",
    "ColumnDrift",
    "Direction",
    "DroppedRow",
    "EvaluationRecord",
    "FeatureStoreJoin",
    "Finding",
    "GateVerdict",
    "ImportanceSample",
    "InferenceChoice",
    "IngestReport",
    "ModelCard",
    "ModelIdentity",
    "MonitorReport",
    "MonitorStatus",
    "OnlineFeaturesInfo",
    "PackageReport",
    "Provenance",
    "SourceFingerprint",
    "StageTimings",
    "Trial",
    "TrialStateName",
    "TunedParams",
    "TuningReport",
    "TuningSummary",
    "ValidationReport",
]


class Artifact(BaseModel):
    """The base of every artifact: immutable, strict types, unknown keys refused (a file from another version)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class DroppedRow(Artifact):
    """One entity row the feature store's point-in-time join dropped, and the views that had no value for it."""

    entity: dict[str, Any]
    event_timestamp: str
    feature_views: list[str]
    ttl_days: dict[str, float]


class FeatureStoreJoin(Artifact):
    """What the point-in-time join kept: entity rows in, training rows out, drops per feature view.

    ``features`` are the columns the feature service added (the rest of the table is the entity
    table's own columns): what the service fetches online for a model trained on it.

    ``dropped_examples`` holds the first few dropped rows (Feast's file offline store drops a row
    whose entity has no feature row within a view's TTL; an entity it has never seen comes back
    with missing values instead, which the data contract's missing-value checks see).
    """

    feature_service: str
    feature_views: list[str]
    entity_keys: list[str]
    features: list[str]
    entity_rows: int
    rows: int
    dropped: int
    dropped_by_view: dict[str, int]
    dropped_examples: list[DroppedRow]


class IngestReport(Artifact):
    """``reports/ingest.json``: what ingest read (the source with secrets removed).

    ``feature_store`` only when ingest read a feature store (absent otherwise, so the file of a
    project without one is what it always was).
    """

    source: str
    rows: int
    columns: dict[str, str]
    hash: str
    feature_store: FeatureStoreJoin | None = Field(default=None, exclude_if=lambda value: value is None)


class SourceFingerprint(Artifact):
    """``data/source.json``: what identifies the current content of ``data.source`` (the source stage).

    ``ingest`` depends on this file instead of on the source itself, so DVC never reads the
    source. A file: its size and SHA-256. A URL: the validators its server or store reports
    (``ETag``, ``Last-Modified``, size), empty when it reports none. A database: nothing, as
    DVC cannot see new rows behind a query (``dvc repro --force ingest`` reads it again).
    """

    kind: Literal["file", "url", "sql"]
    source: str
    size: int | None = None
    sha256: str | None = None
    version: dict[str, str] = Field(default_factory=dict)


class Finding(Artifact):
    """One failed data check: which column, which check, what was wrong, and some offending values."""

    level: Literal["error", "warning"]
    check: str
    column: str | None
    message: str
    examples: list[Any] = []

    def __str__(self) -> str:
        where = f"column {self.column!r}: " if self.column else ""
        shown = f" (e.g. {self.examples})" if self.examples else ""
        return f"[{self.check}] {where}{self.message}{shown}"


class ValidationReport(Artifact):
    """``reports/validation.json``: every finding of the validate stage, errors first."""

    passed: bool
    rows: int
    columns: int
    errors: list[Finding]
    warnings: list[Finding]


class TuningSummary(Artifact):
    """What ``model.json`` says about tuning: whether the params were tuned, the best CV value, the trials."""

    tuned: bool
    metric: str | None
    best_value: float | None
    trials: int


class Provenance(Artifact):
    """Where a model came from: the content hash of its training data, of its params, and the library versions.

    One model, carried whole by the model card, the bundle and the package report.
    """

    data_hash: str
    params_hash: str
    libraries: dict[str, str]


class ModelCard(Artifact):
    """``models/model.json``: what traces a trained model to its data, params and libraries."""

    provenance: Provenance
    train_rows: int
    task: Task
    target: str
    estimator: str
    features: dict[str, list[str]]
    classes: list[str] | None
    params: dict[str, Any]
    tuning: TuningSummary


class ModelIdentity(BaseModel):
    """What a model predicts, read from any version's ``models/model.json`` (other keys ignored).

    The gate reads it at ``gate.baseline_rev``, whose file may predate today's :class:`ModelCard`.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    task: Task
    target: str


# --- tuning: what the tune stage hands to train and to the report -----------------------------

Direction = Literal["maximize", "minimize"]
# Optuna's TrialState names, lower-cased.
TrialStateName = Literal["complete", "pruned", "fail", "running", "waiting"]


class TunedParams(Artifact):
    """``models/tuned_params.json``: the estimator params ``train`` fits, written by ``tune``.

    ``params`` is ``model.params`` with the best trial's values over it; with tuning disabled it
    is ``model.params`` unchanged, ``tuned`` is false and the study fields are null.
    """

    tuned: bool
    estimator: str
    params: dict[str, Any]
    metric: str | None = None
    best_value: float | None = None
    trials: int = 0


class Trial(Artifact):
    """One trial of the study: the params it tried and the cross-validated score it got."""

    number: int
    state: TrialStateName
    params: dict[str, Any]
    value: float | None
    fold_values: list[float]


class TuningReport(Artifact):
    """``reports/tuning.json``: the study behind ``TunedParams``, for people and the PR report.

    ``best_value`` is the mean of the best trial's fold scores and ``best_std`` their standard
    deviation (the CV spread). Wall-clock times are left out on purpose: the file is a tracked
    output and must be the same bytes whenever the same trials are replayed.
    """

    enabled: bool
    study: str | None = None
    estimator: str
    metric: str | None = None
    direction: Direction | None = None
    cv_folds: int | None = None
    base_params: dict[str, Any]
    best_params: dict[str, Any]
    best_value: float | None = None
    best_std: float | None = None
    best_trial: int | None = None
    importance: dict[str, float] = Field(default_factory=dict)
    trials: list[Trial] = Field(default_factory=list)
    # The train rows the study cross-validated on (a seeded sample past tune.max_rows) and the split's.
    rows: int | None = None
    train_rows: int | None = None


class ImportanceSample(Artifact):
    """The rows permutation importance scored: ``rows`` of the test split's ``test_rows``, drawn with ``seed``."""

    rows: int
    test_rows: int
    repeats: int
    seed: int


class EvaluationRecord(Artifact):
    """``reports/evaluation.json``: the metrics and exactly which model and test file they belong to.

    The gate and the package stage compare ``model_sha256`` with the model file they are given,
    so a model changed or truncated after evaluation is never accepted on another model's metrics.
    """

    model_sha256: str
    test_sha256: str
    metrics: dict[str, float]
    # Which rows the importance in reports/importance.json came from (None: not computed).
    importance: ImportanceSample | None = None


class Check(Artifact):
    """One gate check: a threshold (``baseline`` is None) or a comparison with the champion."""

    kind: Literal["threshold", "champion"]
    metric: str
    value: float | None
    bound: float
    direction: Literal[">=", "<="]
    baseline: float | None
    passed: bool

    def __str__(self) -> str:
        value = "missing" if self.value is None else f"{self.value:.4f}"
        against = "" if self.baseline is None else f" (champion {self.baseline:.4f})"
        return f"{self.kind} {self.metric}: {value}, needs {self.direction} {self.bound:.4f}{against}"


ChampionStatus = Literal[
    "scored", "same_model", "other_target", "no_revision", "not_tracked", "not_in_cache", "incompatible"
]


class Champion(Artifact):
    """``reports/champion.json``, not tracked: the model at ``gate.baseline_rev`` and how it compared.

    Kept out of the tracked verdict because it depends on another revision, not on this one's
    code, data and params: on ``main`` itself the champion is the same model, on a branch it is
    ``main``'s. ``status`` says which case applied; only ``scored`` adds ``checks``.
    """

    rev: str
    status: ChampionStatus
    model_sha256: str | None
    metrics: dict[str, float] | None
    reason: str
    checks: list[Check] = []
    challenger_sha256: str


class GateVerdict(Artifact):
    """``reports/gate.json``: whether the model was accepted, and its threshold checks.

    ``accepted`` also reflects the champion comparison (see :class:`Champion`); ``model_sha256``
    is the model file the verdict is about, which the package stage checks before packaging it.
    """

    accepted: bool
    model_sha256: str
    checks: list[Check]

    @property
    def failed(self) -> list[Check]:
        """The threshold checks that did not pass."""
        return [check for check in self.checks if not check.passed]


class InferenceChoice(Artifact):
    """How the packaged model is served: ONNX Runtime when it matched scikit-learn on the test split."""

    inference: Literal["onnx", "sklearn"]
    reason: str
    tolerance: float
    parity: dict[str, Any] | None


class OnlineFeaturesInfo(Artifact):
    """In a bundle: the model was trained from a feature store, so the service fetches its features online.

    A record then gives the ``entity_keys`` (and the model inputs the store does not hold, the
    request-time fields); the service fetches ``features`` (the model inputs the feature service
    provides) from the Feast feature server at ``server_url`` (``CONVEYOR_FEAST_URL`` overrides it).
    """

    feature_service: str
    entity_keys: list[str]
    features: list[str]
    server_url: str


class BundleInfo(Artifact):
    """The bundle's ``conveyor.json`` (in the BentoML store, not tracked): what the service serves.

    Everything but ``model_tag`` and ``git_revision`` is the bundle's content, which its version
    hashes (:meth:`content`); ``git_revision`` is the commit it was first packaged from.
    ``prediction_buckets`` (regression only) are the upper edges of the buckets the service
    counts predicted values in: the training target's deciles. ``online_features`` only for a
    model trained from a feature store (absent otherwise, so that such a bundle, and its content
    hash, are what they always were).
    """

    model_tag: str
    git_revision: str
    provenance: Provenance
    task: Task
    target: str
    estimator: str
    features: dict[str, list[str]]
    classes: list[str] | None
    metrics: dict[str, float]
    serve: ServeConfig
    inference: InferenceChoice
    prediction_log: PredictionLogConfig
    prediction_buckets: list[float] | None = None
    online_features: OnlineFeaturesInfo | None = Field(default=None, exclude_if=lambda value: value is None)

    def content(self) -> bytes:
        """Canonical JSON of everything but where and as what it was stored, for the content hash."""
        return json.dumps(self.model_dump(mode="json", exclude={"model_tag", "git_revision"}), sort_keys=True).encode()


class PackageReport(Artifact):
    """``reports/package.json``: which BentoML model and bento the package stage made, and why that path.

    Both tags are content hashes, so they are the same for the same model wherever it is packaged;
    the commit it was packaged from lives in the bundle, not here.
    """

    model_tag: str
    bento_tag: str
    provenance: Provenance
    inference: Literal["onnx", "sklearn"]
    inference_reason: str
    parity: dict[str, Any] | None
    metrics: dict[str, float]


# --- monitoring: what `conveyor monitor` writes and reads --------------------------------------

MonitorStatus = Literal["ok", "alert", "insufficient_data"]


class CheckResult(Artifact):
    """One monitor check: its value against its threshold, and the columns (or stage) involved.

    ``bound`` says which side is healthy: ``max`` means the value must stay at or below the
    threshold, ``min`` at or above it. ``value`` is null when the check could not be computed
    (then ``status`` is ``insufficient_data``).
    """

    name: str
    status: MonitorStatus
    value: float | None
    threshold: float | None
    bound: Literal["min", "max"]
    columns: list[str] = Field(default_factory=list)
    message: str


class ColumnDrift(Artifact):
    """Evidently's drift test on one column: which test, its score and the threshold it was held to.

    ``score`` is a p-value (drift when at or below ``threshold``) or a distance (drift when at
    or above it), as ``kind`` says; null when the window has no value in the column. A column no
    drift test applies to (a key, a date, free text, a column the model does not take) has method
    ``skipped``, no score, and ``reason`` says why.
    """

    column: str
    role: Literal["input", "prediction"]
    method: str
    kind: Literal["p_value", "distance"]
    score: float | None
    threshold: float
    drifted: bool
    reason: str | None = None


class MonitorReport(Artifact):
    """``monitor.json``: the verdict on one window of served (or exported) records."""

    status: MonitorStatus
    model_tag: str
    source: str
    rows: int
    reference_rows: int
    labelled_rows: int
    checks: list[CheckResult]
    drift: list[ColumnDrift]
    html_report: str | None = None
    # From the prediction logs: records of this model read (``rows`` is a sample of them beyond
    # ``monitor.max_window_rows``), half-written last lines skipped, another model's records left out.
    logged_records: int | None = None
    torn_lines: int = 0
    other_model_records: int = 0

    @property
    def alerts(self) -> list[CheckResult]:
        """The checks that failed."""
        return [check for check in self.checks if check.status == "alert"]

    @property
    def drifted_columns(self) -> list[str]:
        """Input columns (and ``prediction``) whose distribution moved."""
        return [d.column for d in self.drift if d.drifted]


class StageTimings(RootModel[dict[str, float]]):
    """``stage-timings.json``: each pipeline stage's wall time in seconds, ``{"train": 3.5, …}``.

    The model-report and deploy workflows write it as an artifact; the monitor reads the last
    ``main`` run's to check ``monitor.max_pipeline_seconds``.
    """

    @property
    def total(self) -> float:
        """The whole pipeline's wall time (stages run one after another)."""
        return sum(self.root.values())

    @property
    def slowest(self) -> str | None:
        """The stage that took longest, if any ran."""
        return max(self.root, key=self.root.__getitem__) if self.root else None
