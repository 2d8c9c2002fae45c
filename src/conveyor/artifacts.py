"""The files stages hand to each other, one typed model per file.

A stage writes an artifact with :func:`write_artifact` and the next reads it back with
:func:`read_artifact`, so a missing or misspelt field fails where it is read, naming the file,
instead of surfacing later as a ``KeyError``. Only pydantic is imported here: the tune stage
reads and writes these when it is disabled, in a process that must stay under a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Direction = Literal["maximize", "minimize"]


class ArtifactError(ValueError):
    """An artifact file that is missing or does not hold what its stage writes; names the file."""


class _Artifact(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TunedParams(_Artifact):
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


class Trial(_Artifact):
    """One trial of the study: the params it tried and the cross-validated score it got."""

    number: int
    state: Literal["complete", "pruned", "fail", "running", "waiting"]
    params: dict[str, Any]
    value: float | None
    fold_values: list[float]


class TuningReport(_Artifact):
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


Artifact = TypeVar("Artifact", bound=_Artifact)


def write_artifact(artifact: _Artifact, path: str | Path) -> None:
    """Write ``artifact`` as indented JSON, creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(artifact.model_dump_json(indent=2) + "\n", encoding="utf-8")


def read_artifact(kind: type[Artifact], path: str | Path) -> Artifact:
    """Read the artifact of type ``kind`` at ``path``; raise :class:`ArtifactError` naming the file."""
    path = Path(path)
    try:
        return kind.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{path}: not found; the stage that writes it has not run") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise ArtifactError(f"{path}: {key}: {first['msg']} (not a {kind.__name__} file)") from None
