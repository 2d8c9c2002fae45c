"""The files Conveyor writes for other programs to read, one typed model each.

Readers validate with these models instead of picking keys out of dicts, so a renamed or missing
field fails where the file is read, naming the field.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

Status = Literal["ok", "alert", "insufficient_data"]


class _Artifact(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CheckResult(_Artifact):
    """One monitor check: its value against its threshold, and the columns (or stage) involved.

    ``bound`` says which side is healthy: ``max`` means the value must stay at or below the
    threshold, ``min`` at or above it. ``value`` is null when the check could not be computed
    (then ``status`` is ``insufficient_data``).
    """

    name: str
    status: Status
    value: float | None
    threshold: float | None
    bound: Literal["min", "max"]
    columns: list[str] = Field(default_factory=list)
    message: str


class ColumnDrift(_Artifact):
    """Evidently's drift test on one column: which test, its score and the threshold it was held to.

    ``score`` is a p-value (drift when at or below ``threshold``) or a distance (drift when at
    or above it), as ``kind`` says; null when the window has no value in the column.
    """

    column: str
    role: Literal["input", "prediction"]
    method: str
    kind: Literal["p_value", "distance"]
    score: float | None
    threshold: float
    drifted: bool


class MonitorReport(_Artifact):
    """``monitor.json``: the verdict on one window of served (or exported) records."""

    status: Status
    model_tag: str
    source: str
    rows: int
    reference_rows: int
    labelled_rows: int
    checks: list[CheckResult]
    drift: list[ColumnDrift]
    html_report: str | None = None

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
