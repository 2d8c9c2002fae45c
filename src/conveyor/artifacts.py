"""The files one stage writes for another, each a typed model: written and read only through here.

A stage never reads another stage's JSON by string keys: it asks :func:`conveyor.io.read_artifact`
for one of these models, which validates the file and names it when it is missing or corrupt. So
adding a field is one edit here that the type checker follows into every reader.

Every model here is written to a DVC-tracked file unless its docstring says otherwise, so none
holds a wall-clock time, a duration or the commit it was made at: the same code, data and params
must give the same bytes (timings belong to ``make bench``; the packaged bundle names its commit).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from conveyor.registry import Task


class Artifact(BaseModel):
    """The base of every artifact: immutable, strict types, unknown keys refused (a file from another version)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class IngestReport(Artifact):
    """``reports/ingest.json``: what ingest read (the source with secrets removed)."""

    source: str
    rows: int
    columns: dict[str, str]
    hash: str


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


class ModelCard(Artifact):
    """``models/model.json``: what traces a trained model to its data, params and libraries."""

    data_hash: str
    train_rows: int
    task: Task
    target: str
    estimator: str
    features: dict[str, list[str]]
    classes: list[str] | None
    params: dict[str, Any]
    params_hash: str
    libraries: dict[str, str]


class ModelIdentity(BaseModel):
    """What a model predicts, read from any version's ``models/model.json`` (other keys ignored).

    The gate reads it at ``gate.baseline_rev``, whose file may predate today's :class:`ModelCard`.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    task: Task
    target: str


class EvaluationRecord(Artifact):
    """``reports/evaluation.json``: the metrics and exactly which model and test file they belong to.

    The gate and the package stage compare ``model_sha256`` with the model file they are given,
    so a model changed or truncated after evaluation is never accepted on another model's metrics.
    """

    model_sha256: str
    test_sha256: str
    metrics: dict[str, float]


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


class PackageReport(Artifact):
    """``reports/package.json``: which BentoML model and bento the package stage made, and why that path.

    Both tags are content hashes, so they are the same for the same model wherever it is packaged;
    the commit it was packaged from lives in the bundle, not here.
    """

    model_tag: str
    bento_tag: str
    data_hash: str
    params_hash: str
    inference: Literal["onnx", "sklearn"]
    inference_reason: str
    parity: dict[str, Any] | None
    metrics: dict[str, float]
