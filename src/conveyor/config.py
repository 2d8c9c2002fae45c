"""Typed ``params.yaml``: one frozen model per section, validated on load.

Loading has no side effects: nothing is created, read or written except the file asked for.
Every error names the dotted key (``model.params.C``), what was found and what was expected.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails

from conveyor.registry import check_estimator, metric_names


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
            raise ValueError("data.query: required when data.source is a SQLAlchemy URL (e.g. SELECT * FROM t)")
        if self.query and not self.is_sql:
            raise ValueError(
                "data.query: only used with a SQLAlchemy URL in data.source (sqlite:///…, postgresql+psycopg://…); "
                "set it to null for a file or http(s)/s3 URL"
            )
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
            raise ValueError(f"features: columns listed as both numeric and categorical: {sorted(both)}")
        return self


class ModelConfig(_Section):
    """An estimator from the registry (``conveyor.registry.ESTIMATORS``) and its keyword arguments."""

    estimator: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)


class Bound(_Section):
    """A threshold on one metric: ``min`` for higher-is-better metrics, ``max`` for lower-is-better."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_side(self) -> Bound:
        if self.min is None and self.max is None:
            raise ValueError("expected min, max or both, e.g. {min: 0.9}")
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
    """How the service runs; the packaged model carries these so every server of it behaves the same.

    ``inference: auto`` serves with ONNX Runtime when the converted model matches scikit-learn on
    the whole test split (labels equal, probabilities within ``proba_tolerance``), else with
    scikit-learn; ``sklearn`` never converts. ``threads`` is the size of every native thread pool
    (OpenMP, BLAS, ONNX Runtime) in each of the ``workers`` processes: keep
    ``workers * threads`` at or below the cores the service gets.

    ``max_body_bytes`` caps every request body (413 beyond it) and ``max_concurrency`` the requests
    in progress at once per service (429 beyond it), so a server holds at most
    about their product in request bodies. ``access_log`` adds an INFO line per request; it
    costs a large share of a request that takes well under a millisecond, so it is off unless
    asked for (refused requests are always logged, one line each). ``batching`` predicts the
    requests that wait while the model is busy in one call of at most ``max_batch_size`` records
    (never holding one back to fill a batch); ``auto`` batches when scikit-learn serves, whose
    calls cost milliseconds however few the rows, and not ONNX Runtime's 0.1 ms ones.
    """

    max_records: Annotated[int, Field(ge=1)] = 1000
    max_body_bytes: Annotated[int, Field(ge=1024)] = 262_144
    max_concurrency: Annotated[int, Field(ge=1)] = 256
    inference: Literal["auto", "sklearn"] = "auto"
    proba_tolerance: Annotated[float, Field(gt=0.0, le=0.1)] = 1e-4
    workers: Annotated[int, Field(ge=1)] = 1
    threads: Annotated[int, Field(ge=1)] = 1
    access_log: bool = False
    batching: bool | Literal["auto"] = "auto"
    max_batch_size: Annotated[int, Field(ge=1)] = 1000


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
        check_estimator(self.task, self.model.estimator, self.model.params)
        known = metric_names(self.task)
        for where, names in (("gate.thresholds", self.gate.thresholds), ("gate.compare", self.gate.compare)):
            for name in names:
                if name not in known:
                    raise ValueError(
                        f"{where}.{name}: unknown metric for task {self.task}; expected one of {sorted(known)}"
                    )
        for kind in ("numeric", "categorical"):
            if self.data.target in (getattr(self.features, kind) or ()):
                raise ValueError(
                    f"features.{kind}: lists the target column {self.data.target!r} (data.target); "
                    "a model cannot take its own label as input"
                )
        return self


def parse_config(raw: object, *, source: str = "params.yaml") -> Config:
    """Validate an already-parsed params mapping; raise :class:`ConfigError` naming the key."""
    if raw is None:
        raise ConfigError(f"{source}: the file is empty; expected the sections data, task, model, …")
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    try:
        return Config.model_validate(raw, by_alias=True)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc, source=source, root=Config)) from None


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
        raise ConfigError(f"{path}: {yaml_problem(exc)}") from None
    return parse_config(raw, source=str(path))


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML syntax error in one line, with where it is: ``not valid YAML at line 3, column 2: …``."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return f"not valid YAML{where}: {problem}"


def describe_errors(exc: ValidationError, *, source: str, root: type[BaseModel]) -> str:
    """A pydantic error as text for people: ``source: dotted.key: problem, got value``, one line per error.

    ``root`` is the model that was validated; unknown keys are answered with the keys it accepts there.
    Shared by ``params.yaml`` and the data contract, so both files report mistakes the same way.
    """
    lines = [_explain(error, root) for error in exc.errors()]
    if len(lines) == 1:
        return f"{source}: {lines[0]}"
    return "\n  ".join([f"{source}: {len(lines)} invalid settings:", *lines])


def _explain(error: ErrorDetails, root: type[BaseModel]) -> str:
    """One error as ``dotted.key: what was wrong, what was expected``."""
    loc = error["loc"]
    key = ".".join(str(part) for part in loc)
    kind = error["type"]
    if kind == "value_error":
        # Cross-field validators write "dotted.key: message" themselves, naming the key they mean.
        message = str(error.get("ctx", {}).get("error", error["msg"]))
        return message if _KEY_PREFIX.match(message) else f"{key or '(top level)'}: {message}"
    if kind == "extra_forbidden":
        known = _known_keys(root, loc[:-1])
        return f"{key}: unknown key; expected one of {known}" if known else f"{key}: unknown key"
    if kind == "missing":
        return f"{key}: required key is missing"
    if kind in {"model_type", "dict_type", "model_attributes_type"}:
        message = "expected a mapping of keys"
    elif kind == "tuple_type":
        message = "expected a list"
    else:
        message = error["msg"].replace("Input should be", "expected")
    return f"{key or '(top level)'}: {message}, got {error.get('input')!r}"


_KEY_PREFIX = re.compile(r"^[A-Za-z_][\w]*(\.[\w]+)*: ")


def _known_keys(root: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys the section at ``loc`` accepts, for an "unknown key" message."""
    model = root
    parts = list(loc)
    while parts:
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == parts[0]), None)
        if field is None:
            return []
        annotation, parts = field.annotation, parts[1:]
        if get_origin(annotation) is dict and parts:
            annotation, parts = get_args(annotation)[1], parts[1:]
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(f.alias or n for n, f in model.model_fields.items())
