"""Typed ``params.yaml``: one frozen model per section, validated on load.

Loading has no side effects: nothing is created, read or written except the file asked for.
Every error names the dotted key (``model.params.C``), what was found and what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(ValueError):
    """A params file that cannot be used; the message names the key and what was expected."""


# YAML has lists, not tuples; strict mode would refuse them, and tuples keep the config immutable.
Names = Annotated[tuple[str, ...], Field(strict=False)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class DataConfig(_Section):
    """Where the data comes from and which column is the label."""

    source: str = Field(min_length=1)
    query: str | None = None
    target: str = Field(min_length=1)
    schema_path: str = Field(alias="schema", min_length=1)

    @model_validator(mode="after")
    def _query_only_for_sql(self) -> DataConfig:
        if self.is_sql and not self.query:
            raise ValueError("data.query is required when data.source is a SQLAlchemy URL")
        if self.query and not self.is_sql:
            raise ValueError("data.query is only used with a SQLAlchemy URL in data.source")
        return self

    @property
    def is_sql(self) -> bool:
        """True when ``source`` is a SQLAlchemy URL such as ``sqlite:///x.db`` or ``postgresql://…``."""
        scheme = self.source.split("://", 1)[0] if "://" in self.source else ""
        return scheme.split("+", 1)[0] in SQL_SCHEMES


SQL_SCHEMES = frozenset({"sqlite", "postgresql", "postgres", "mysql", "mariadb", "mssql", "oracle"})


class SplitConfig(_Section):
    """Seeded train/test split."""

    test_size: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.25
    seed: int = 42
    stratify: bool = True


NumericImputation = Literal["mean", "median", "most_frequent", "zero"]
CategoricalImputation = Literal["most_frequent", "as_category"]
Scaling = Literal["standard", "minmax", "robust", "none"]
Encoding = Literal["onehot", "ordinal"]


class FeaturesConfig(_Section):
    """Which columns feed the model and how they are prepared.

    ``numeric`` and ``categorical`` default (``null``) to the contract's columns of those kinds,
    minus the target and ``drop``.
    """

    numeric: Names | None = None
    categorical: Names | None = None
    drop: Names = ()
    numeric_imputation: NumericImputation = "median"
    categorical_imputation: CategoricalImputation = "as_category"
    scaling: Scaling = "standard"
    encoding: Encoding = "onehot"

    @model_validator(mode="after")
    def _disjoint(self) -> FeaturesConfig:
        both = set(self.numeric or ()) & set(self.categorical or ())
        if both:
            raise ValueError(f"columns listed as both numeric and categorical: {sorted(both)}")
        return self


class ModelConfig(_Section):
    """An estimator from the registry (``conveyor.model.ESTIMATORS``) and its keyword arguments."""

    estimator: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)


class Bound(_Section):
    """A threshold on one metric: ``min`` for higher-is-better metrics, ``max`` for lower-is-better."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_side(self) -> Bound:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        return self


class GateConfig(_Section):
    """When a trained model is accepted.

    ``thresholds`` must all hold. Where a champion exists at ``baseline_rev``, each metric in
    ``compare`` may regress by at most ``tolerance`` (absolute, in the metric's own units).
    """

    thresholds: dict[str, Bound] = Field(default_factory=dict)
    compare: Names = ()
    tolerance: Annotated[float, Field(ge=0.0)] = 0.0
    baseline_rev: str = Field(default="main", min_length=1)


class EvaluateConfig(_Section):
    """Evaluation extras: permutation importance repeats and the smallest slice reported."""

    importance_repeats: Annotated[int, Field(ge=1)] = 5
    min_slice_rows: Annotated[int, Field(ge=1)] = 5


class ServeConfig(_Section):
    """Service limits; the packaged model carries them so the service enforces the same."""

    max_records: Annotated[int, Field(ge=1)] = 1000
    max_body_bytes: Annotated[int, Field(ge=1024)] = 1_048_576


class Config(_Section):
    """The whole of ``params.yaml``."""

    data: DataConfig
    task: Literal["classification", "regression"]
    split: SplitConfig = SplitConfig()
    features: FeaturesConfig = FeaturesConfig()
    model: ModelConfig
    gate: GateConfig = GateConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    serve: ServeConfig = ServeConfig()

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        # Imported here, not at the top: both modules import this one.
        from conveyor.metrics import metric_names
        from conveyor.model import check_estimator

        check_estimator(self.task, self.model.estimator, self.model.params)
        known = metric_names(self.task)
        for where, names in (("gate.thresholds", self.gate.thresholds), ("gate.compare", self.gate.compare)):
            for name in names:
                if name not in known:
                    raise ValueError(
                        f"{where}.{name}: unknown metric for task {self.task}; expected one of {sorted(known)}"
                    )
        if self.target_in_features():
            raise ValueError(f"features: the target column {self.data.target!r} cannot be a feature")
        return self

    def target_in_features(self) -> bool:
        """Whether the label was listed among the features (a leak by construction)."""
        listed = (*(self.features.numeric or ()), *(self.features.categorical or ()))
        return self.data.target in listed


def parse_config(raw: object, *, source: str = "params.yaml") -> Config:
    """Validate an already-parsed params mapping; raise :class:`ConfigError` naming the key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    try:
        return Config.model_validate(raw, by_alias=True)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None


def load_config(path: str | Path = "params.yaml") -> Config:
    """Read and validate a params file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_config(raw, source=str(path))


def _describe(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: {exc.error_count()} invalid setting(s)"]
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key (check the spelling against the README's params reference)"
        elif error["type"] == "missing":
            message = "required key is missing"
        elif "input" in error and error["type"] not in {"value_error", "assertion_error"}:
            message = f"{message}, got {error['input']!r}"
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)
