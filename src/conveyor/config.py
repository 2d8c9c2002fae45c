"""Typed ``params.yaml``: one frozen model per section, validated on load.

Loading has no side effects: nothing is created, read or written except the file asked for.
Every error names the dotted key (``model.params.C``), what was found and what was expected.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from conveyor.errors import ConfigError, describe_errors, yaml_problem
from conveyor.model.registry import (
    Task,
    check_estimator,
    check_estimator_name,
    declares_parameters,
    default_space,
    metric_names,
)
from conveyor.urls import credentials_in, is_parquet, is_sql_url, location, redact_url, remember_secrets

__all__ = [
    "DASK_ESTIMATORS",
    "Bins",
    "Bound",
    "Config",
    "CsvFormat",
    "DaskConfig",
    "DataConfig",
    "DataLimits",
    "DateParts",
    "Derived",
    "Difference",
    "Distribution",
    "EvaluateConfig",
    "FeatureStoreConfig",
    "FeaturesConfig",
    "GateConfig",
    "Log",
    "MissingIndicator",
    "ModelConfig",
    "MonitorConfig",
    "Power",
    "PredictionLogConfig",
    "Ratio",
    "ServeConfig",
    "SplitConfig",
    "TargetEncoding",
    "Text",
    "TuneConfig",
    "derived_columns",
    "load_config",
    "parse_config",
]

# What engine: dask trains (xgboost.dask, across the workers); see docs/scale.md.
DASK_ESTIMATORS = ("xgboost",)
# YAML has lists, not tuples; strict mode would refuse them, and tuples keep the config immutable.
Names = Annotated[tuple[str, ...], Field(strict=False)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    # Keys added after model cards and study names first hashed this section: left out of
    # recipe() while at their defaults, so a recipe that does not use them keeps its hash.
    _added: frozenset[str] = frozenset()

    def recipe(self) -> dict[str, Any]:
        """The section as JSON for hashing and the model card, without newer keys at their defaults."""
        dumped = self.model_dump(mode="json")
        defaults = {
            name: field.get_default(call_default_factory=True) for name, field in type(self).model_fields.items()
        }
        return {
            key: value
            for key, value in dumped.items()
            if not (key in self._added and getattr(self, key) == defaults[key])
        }


class DataLimits(_Section):
    """The most ingest reads from ``data.source`` before it stops, naming the limit crossed.

    ``max_bytes`` counts the bytes of the table as read, after decompression (a ``.csv.gz``, a
    Parquet file's pages); ``max_field_bytes`` bounds one CSV field or Parquet value. Together
    they bound ingest's memory: a hostile or mistaken source (a gzip bomb, a million-column
    header, one 2 GiB field) stops with one line instead of exhausting the machine.
    """

    max_bytes: Annotated[int, Field(ge=1024)] = 1_073_741_824
    max_rows: Annotated[int, Field(ge=1)] = 10_000_000
    max_columns: Annotated[int, Field(ge=1)] = 10_000
    max_field_bytes: Annotated[int, Field(ge=64)] = 1_048_576


class CsvFormat(_Section):
    """How a CSV ``data.source`` is written: the character between fields, the decimal mark, the text encoding.

    The defaults read what most tools write. A spreadsheet saved where the decimal mark is a comma
    is usually ``delimiter: ";"`` and ``decimal: ","``; a tab-separated export is
    ``delimiter: "\\t"``. ``missing`` lists what else than an empty field (and pandas' own ``NA``,
    ``N/A``, ``null``, …) means a missing value in any column, such as ``?`` or ``-``.
    ``conveyor init`` detects the delimiter, the decimal mark and such markers and writes them here. The encoding must write ASCII's characters as ASCII's bytes (UTF-8, cp1252,
    latin-1, …; not UTF-16), because ingest finds the rows, fields and quotes in the bytes before
    anything is decoded.
    """

    delimiter: str = ","
    decimal: Literal[".", ","] = "."
    encoding: str = "utf-8"
    missing: Names = ()

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, value: str) -> str:
        if len(value) != 1 or not value.isascii() or value in {'"', "\n", "\r"} or value.isalnum():
            raise ValueError(
                f"{value!r} is not a delimiter: give one ASCII character that is not a letter, a digit, a quote or "
                'a line break (",", ";", "\\t", "|")'
            )
        return value

    @field_validator("encoding")
    @classmethod
    def _ascii_compatible(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"{value!r} is not an encoding Python knows (utf-8, cp1252, latin-1, …)") from None
        ascii_bytes = bytes(range(128))
        try:
            same = ascii_bytes.decode(value) == ascii_bytes.decode("ascii")
        except UnicodeDecodeError:
            same = False
        if not same:
            raise ValueError(
                f"{value!r} does not write ASCII characters as single bytes (UTF-16 and UTF-32 do not); "
                "re-save the file as UTF-8"
            )
        return value

    @model_validator(mode="after")
    def _decimal_is_not_the_delimiter(self) -> CsvFormat:
        if self.decimal == self.delimiter:
            raise ValueError(f"data.csv.decimal: {self.decimal!r} is also data.csv.delimiter; they must differ")
        return self


class DataConfig(_Section):
    """Where the data comes from and which column is the label.

    ``source`` is tracked (``params.yaml``, ``dvc.lock``, reports), so it never holds a secret:
    a password in the URL or a query value named like a credential is refused. The URL with
    its credentials lives in the environment variable that ``source_env`` names; it must point
    where ``source`` does (same scheme, host, port and path) and may add a user and password,
    and query values.

    ``range_column`` (SQL with ``engine: dask``) names a numeric column of the query's result by
    whose value ranges ingest reads it, a bounded query per partition (docs/scale.md).
    """

    # Newer than the recipes already hashed: left out of recipe() while unset.
    _added = frozenset({"range_column", "csv"})

    source: str = Field(min_length=1)
    source_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    query: str | None = None
    range_column: str | None = Field(default=None, min_length=1)
    target: str = Field(min_length=1)
    schema_path: str = Field(alias="schema", min_length=1)
    limits: DataLimits = DataLimits()
    csv: CsvFormat = CsvFormat()

    @model_validator(mode="after")
    def _query_only_for_sql(self) -> DataConfig:
        if self.is_sql and not self.query:
            raise ValueError("data.query: required when data.source is a SQLAlchemy URL (e.g. SELECT * FROM t)")
        if self.query and not self.is_sql:
            raise ValueError(
                "data.query: only used with a SQLAlchemy URL in data.source (sqlite:///…, postgresql+psycopg://…); "
                "set it to null for a file or http(s)/s3 URL"
            )
        if self.range_column and not self.is_sql:
            raise ValueError(
                "data.range_column: only used with a SQLAlchemy URL in data.source (engine: dask reads the query "
                "by ranges of it); set it to null for a file or http(s)/s3 URL"
            )
        if self.csv != CsvFormat() and (self.is_sql or is_parquet(self.source)):
            raise ValueError(
                "data.csv: only used with a CSV data.source; remove it (or leave it at its defaults) for Parquet or SQL"
            )
        found = credentials_in(self.source)
        if found:
            raise ValueError(
                f"data.source: holds {found}, and params.yaml and dvc.lock are tracked; put the URL with its "
                "credentials in an environment variable and name that variable in data.source_env"
            )
        return self

    def url(self, *, environ: Mapping[str, str] | None = None) -> str:
        """The URL to open: ``source``, or the one in the variable ``source_env`` names (``environ``, default ``os.environ``).

        That variable must point where ``source`` does (it only adds credentials), so the tracked
        ``source`` always says what was read. Looked up when called, never on load.
        """
        if self.source_env is None:
            return self.source
        value = (os.environ if environ is None else environ).get(self.source_env, "")
        if not value:
            raise ConfigError(
                f"data.source_env: the environment variable {self.source_env} is not set; it should hold "
                f"{self.source} with its credentials"
            )
        if location(value) != location(self.source):
            raise ConfigError(
                f"data.source_env: {self.source_env} points to {redact_url(value)}, not to data.source "
                f"{redact_url(self.source)}; it may only add credentials"
            )
        remember_secrets(value)
        return value

    @property
    def is_sql(self) -> bool:
        """True when ``source`` is a SQLAlchemy URL such as ``sqlite:///x.db`` or ``postgresql://…``."""
        return is_sql_url(self.source)


class SplitConfig(_Section):
    """Seeded train/test split."""

    test_size: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.25
    seed: int = 42
    stratify: bool = True


NumericImputation = Literal["mean", "median", "most_frequent", "zero"]
CategoricalImputation = Literal["most_frequent", "as_category"]
Scaling = Literal["standard", "minmax", "robust", "none"]
Encoding = Literal["onehot", "ordinal"]
DatePart = Literal["year", "month", "day", "dayofweek", "dayofyear", "hour"]
# Two columns' names, for the features that combine a pair.
Pair = Annotated[tuple[str, str], Field(strict=False)]


class DateParts(_Section):
    """``{kind: date_parts, column: d}``: calendar parts of a date column (ISO strings or datetimes).

    ``cyclical`` adds a sine and a cosine of each periodic part (month, day of week, day of year,
    hour), so December sits next to January for a linear model.
    """

    kind: Literal["date_parts"]
    column: str = Field(min_length=1)
    parts: Annotated[tuple[DatePart, ...], Field(strict=False, min_length=1)] = (
        "year",
        "month",
        "dayofweek",
        "dayofyear",
        "hour",
    )
    cyclical: bool = True


class Ratio(_Section):
    """``{kind: ratio, columns: [a, b]}``: ``a / b`` (missing where ``b`` is 0)."""

    kind: Literal["ratio"]
    columns: Pair


class Difference(_Section):
    """``{kind: difference, columns: [a, b]}``: ``a - b``."""

    kind: Literal["difference"]
    columns: Pair


class Log(_Section):
    """``{kind: log, column: x}``: ``sign(x) * log(1 + |x|)``, defined for every number."""

    kind: Literal["log"]
    column: str = Field(min_length=1)


class Power(_Section):
    """``{kind: power, column: x}``: scikit-learn's Yeo-Johnson ``PowerTransformer`` (standardized)."""

    kind: Literal["power"]
    column: str = Field(min_length=1)


class Bins(_Section):
    """``{kind: bins, column: x, n_bins: 5}``: scikit-learn's ``KBinsDiscretizer``, one-hot."""

    kind: Literal["bins"]
    column: str = Field(min_length=1)
    n_bins: Annotated[int, Field(ge=2, le=100)] = 5
    strategy: Literal["quantile", "uniform", "kmeans"] = "quantile"


class Text(_Section):
    """``{kind: text, column: t, max_features: 100}``: TF-IDF of the words, at most ``max_features`` columns."""

    kind: Literal["text"]
    column: str = Field(min_length=1)
    max_features: Annotated[int, Field(ge=1, le=10_000)] = 100
    ngram_max: Annotated[int, Field(ge=1, le=3)] = 1


class TargetEncoding(_Section):
    """``{kind: target_encoding, column: c}``: scikit-learn's ``TargetEncoder`` (cross-fitted in fit).

    For categories with too many values to one-hot: each becomes its shrunk mean target (one
    column per class for multiclass), learnt on ``cv`` folds so no row sees its own label.
    """

    kind: Literal["target_encoding"]
    column: str = Field(min_length=1)
    cv: Annotated[int, Field(ge=2, le=10)] = 5


class MissingIndicator(_Section):
    """``{kind: missing_indicator, column: x}``: 1 where ``x`` is missing, else 0."""

    kind: Literal["missing_indicator"]
    column: str = Field(min_length=1)


Derived = Annotated[
    DateParts | Ratio | Difference | Log | Power | Bins | Text | TargetEncoding | MissingIndicator,
    Field(discriminator="kind"),
]


def derived_columns(item: Derived) -> tuple[str, ...]:
    """The input columns one derived feature reads."""
    return item.columns if isinstance(item, Ratio | Difference) else (item.column,)


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
    # Features computed from the columns inside the model's Pipeline, e.g. [{kind: log, column: x}].
    derived: Annotated[tuple[Derived, ...], Field(strict=False)] = ()
    _added = frozenset({"derived"})

    @model_validator(mode="after")
    def _disjoint(self) -> FeaturesConfig:
        both = set(self.numeric or ()) & set(self.categorical or ())
        if both:
            raise ValueError(f"features: columns listed as both numeric and categorical: {sorted(both)}")
        return self


class ModelConfig(_Section):
    """An estimator from the registry (``conveyor.model.registry.ESTIMATORS``) and its keyword arguments."""

    estimator: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    # regression only: "log" fits on log(target) and predicts exp() of it (TransformedTargetRegressor),
    # for a strictly positive, skewed target such as a price: no negative predictions.
    target_transform: Literal["none", "log"] = "none"
    _added = frozenset({"target_transform"})


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
    ``compare`` may regress by at most ``tolerance`` (absolute, in the metric's own units). A
    champion that cannot be scored on the current data (a column removed, say) rejects the model
    unless ``incompatible_champion`` is ``thresholds_only``.
    """

    thresholds: dict[str, Bound] = Field(default_factory=dict)
    compare: Names = ()
    tolerance: Annotated[float, Field(ge=0.0)] = 0.0
    baseline_rev: str = Field(default="main", min_length=1)
    incompatible_champion: Literal["reject", "thresholds_only"] = "reject"


class EvaluateConfig(_Section):
    """Evaluation extras: permutation importance, the plots' size and the smallest slice reported.

    Metrics use the whole test split. Permutation importance scores the model
    ``importance_repeats`` times per input column, so on a large split it runs on a seeded sample
    of ``importance_rows`` rows (``split.seed``; ``reports/evaluation.json`` records the size).
    Each curve and scatter plot keeps at most ``plot_points`` points: the plots are tracked in
    git and must not grow with the data.
    """

    importance_repeats: Annotated[int, Field(ge=1)] = 5
    importance_rows: Annotated[int, Field(ge=1)] = 10_000
    plot_points: Annotated[int, Field(ge=2)] = 500
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

    The connection limits hold in every worker, before a request reaches any route: a request's
    head (request line and headers) larger than ``max_header_bytes`` gets 431 and the connection
    is closed, as is one with more than ``max_headers`` headers; a head not complete within
    ``header_timeout_s`` of the connection opening (or of its first byte, on a kept-alive
    connection) is closed, as is a kept-alive connection idle for ``keep_alive_timeout_s``. Each
    worker holds at most ``max_connections`` open connections: a new one beyond closes the one
    idle longest (never one with a request in progress), or itself if none is idle.
    ``auth: bearer`` requires ``Authorization: Bearer <token>`` on every route but the probes and
    ``/metrics``, the token(s) from the ``CONVEYOR_API_TOKEN`` environment variable (never from
    a file in git). ``metadata: minimal`` keeps ``/metadata`` to the model's tag, task and
    classes (no contract, revision, library versions or metrics).
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
    max_header_bytes: Annotated[int, Field(ge=1024, le=1_048_576)] = 16_384
    max_headers: Annotated[int, Field(ge=8, le=1000)] = 100
    header_timeout_s: Annotated[float, Field(gt=0.0, le=300.0)] = 10.0
    keep_alive_timeout_s: Annotated[float, Field(gt=0.0, le=3600.0)] = 5.0
    max_connections: Annotated[int, Field(ge=1)] = 1024
    auth: Literal["none", "bearer"] = "none"
    metadata: Literal["full", "minimal"] = "full"

    @model_validator(mode="after")
    def _connections_cover_concurrency(self) -> ServeConfig:
        per_worker = -(-self.max_concurrency // self.workers)
        if self.max_connections < per_worker:
            raise ValueError(
                f"serve.max_connections: {self.max_connections} per worker is below the requests a worker "
                f"admits at once ({per_worker}: serve.max_concurrency / serve.workers); raise it or lower those"
            )
        return self


class PredictionLogConfig(_Section):
    """``monitor.log_*``: the service side of monitoring, carried by the packaged model like ``serve``.

    With ``log_predictions`` the service logs ``log_sample_rate`` of its prediction requests (drawn
    per request) through ``bentoml.monitor``, from a queue of at most ``log_queue_records`` records
    (beyond it records are dropped and counted, never waited for), exported by a thread that
    spends at most ``log_max_cpu_share`` of a core doing so.
    """

    log_predictions: bool = True
    log_sample_rate: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    log_queue_records: Annotated[int, Field(ge=1)] = 20_000
    log_max_cpu_share: Annotated[float, Field(gt=0.0, le=1.0)] = 0.02


class MonitorConfig(PredictionLogConfig):
    """``conveyor monitor``: what a window of served records is compared with, and when to alert.

    The package stage keeps up to ``reference_rows`` rows of the training split in the bundle as
    the reference. A window with fewer than ``min_rows`` records is ``insufficient_data``. Each
    input column and the prediction get Evidently's drift test for their type and size: a
    p-value test (K-S, chi-square, Z) at ``drift_p_value`` shared by all columns (Bonferroni), so
    it is the false-alarm rate of the whole window; or, for references over 1,000 rows, a
    distance that drifts above ``drift_distance``. ``max_drifted_share`` is the share of input
    columns allowed to drift (0: any one alerts). Data quality uses the data contract: the share
    of records that would fail it, of records with a category it does not list, and each column's
    missing rate (``max_missing_fraction``, null: the contract's own). Performance needs at least
    ``min_labelled_rows`` labelled records and alerts below the gate's thresholds.
    ``max_pipeline_seconds`` bounds the last pipeline run; ``retrain_on_alert`` lets the monitor
    workflow dispatch the retrain workflow. ``max_window_rows`` bounds the records read from the
    prediction logs (a seeded uniform sample of them beyond it), so memory does not grow with the logs.

    The service side (``log_*``) is :class:`PredictionLogConfig`'s, carried by the packaged model.
    """

    reference_rows: Annotated[int, Field(ge=100)] = 5000
    min_rows: Annotated[int, Field(ge=1)] = 100
    drift_p_value: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.05
    drift_distance: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    max_drifted_share: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    max_invalid_share: Annotated[float, Field(ge=0.0, le=1.0)] = 0.01
    max_new_category_share: Annotated[float, Field(ge=0.0, le=1.0)] = 0.01
    max_missing_fraction: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    min_labelled_rows: Annotated[int, Field(ge=1)] = 50
    max_pipeline_seconds: Annotated[float, Field(gt=0.0)] = 1800.0
    retrain_on_alert: bool = False
    max_window_rows: Annotated[int, Field(ge=1)] = 100_000

    def prediction_log(self) -> PredictionLogConfig:
        """The service-side ``monitor.log_*`` settings, as the section the bundle carries."""
        return PredictionLogConfig.model_validate(self.model_dump(include=set(PredictionLogConfig.model_fields)))


class FeatureStoreConfig(_Section):
    """Ingest from a Feast feature store instead of ``data.source``; see docs/feature-store.md.

    With ``enabled``, ingest joins the features of ``feature_service`` in the Feast repository
    ``repo`` onto the entity table ``entity_rows`` (a Parquet file of entity keys, an
    ``event_timestamp`` per row, the label and any other columns to pass through) with Feast's
    point-in-time join, each row taking the values valid at its timestamp within each view's TTL.
    Feast runs in its own environment (``python``, the interpreter of ``feature_repo/.venv``: Feast
    needs pandas<3), as a separate process. Rows the join drops (no feature row within a TTL) are
    counted; a share above ``max_dropped_share`` stops ingest naming the entity and the view.
    ``apply`` registers the repository's definitions first (the example's; off for a team
    registry applied by its own workflow). Off (the default), nothing of this is read.

    A model trained so is packaged to be fed online: the service takes the entity keys and fetches
    the features from the Feast feature server (``feast serve``) at ``server_url``, which the
    environment variable ``CONVEYOR_FEAST_URL`` overrides where the model is served.
    """

    enabled: bool = False
    repo: str = Field(default="feature_repo", min_length=1)
    entity_rows: str = Field(default="feature_repo/data/penguin_labels.parquet", min_length=1)
    feature_service: str = Field(default="penguin_species", min_length=1)
    max_dropped_share: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    apply: bool = True
    python: str = Field(default="feature_repo/.venv/bin/python", min_length=1)
    server_url: str = Field(default="http://127.0.0.1:6566", pattern=r"^https?://[^/?#\s]+")


class DaskConfig(_Section):
    """Where ``engine: dask`` runs: a ``LocalCluster`` the stage starts, or an existing scheduler.

    ``address: null`` starts a cluster of ``workers`` processes with ``threads_per_worker``
    threads and ``memory_limit`` each (a size such as ``2.5GiB``, or ``auto``), stopped when the
    stage ends; an address (``tcp://scheduler:8786``) connects to a running scheduler instead and
    the ``workers``/``threads_per_worker``/``memory_limit`` keys are not used. See docs/scale.md.
    """

    address: str | None = Field(default=None, min_length=1)
    workers: Annotated[int, Field(ge=1)] = 2
    threads_per_worker: Annotated[int, Field(ge=1)] = 1
    memory_limit: str = "2.5GiB"

    @field_validator("memory_limit")
    @classmethod
    def _a_size(cls, value: str) -> str:
        if not re.fullmatch(r"auto|\d+(\.\d+)?\s*[KMGT]i?B", value):
            raise ValueError(f"expected a size such as 2.5GiB or 4GB, or auto; got {value!r}")
        return value


Choice = str | int | float | bool | None


class Distribution(_Section):
    """Where the tune stage searches one estimator parameter.

    Numbers take ``{low, high}`` (integers when both are integers) and ``log: true`` to search
    on a log scale; categories take ``{choices: [...]}``.
    """

    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    choices: Annotated[tuple[Choice, ...], Field(strict=False, min_length=1)] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Distribution:
        if self.choices is not None:
            if self.low is not None or self.high is not None or self.log:
                raise ValueError("expected either {low, high, log} or {choices: [...]}, not both")
            return self
        if self.low is None or self.high is None:
            raise ValueError("expected {low, high} (and optionally log) for a number, or {choices: [...]}")
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log scale (log true) needs low > 0, got {self.low}")
        return self

    @property
    def is_integer(self) -> bool:
        """True for a range of whole numbers (both bounds written as integers)."""
        return isinstance(self.low, int) and isinstance(self.high, int)

    @property
    def bounds(self) -> tuple[int | float, int | float]:
        """``(low, high)`` of a range; a distribution of choices has none."""
        if self.low is None or self.high is None:
            raise TypeError("a distribution of choices has no bounds")
        return self.low, self.high

    def contains(self, value: object) -> bool:
        """Whether ``value`` is one of the choices, or a number inside the range."""
        if self.choices is not None:
            return value in self.choices
        low, high = self.bounds
        return isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high


class TuneConfig(_Section):
    """The tune stage: an Optuna study over ``space`` before ``train``.

    Each trial is scored by ``cv_folds``-fold cross-validation on the train split (stratified for
    classification) with ``metric`` (null: the first of ``gate.compare``). ``space`` maps
    estimator parameters to distributions (empty: the estimator's default space in
    its entry in ``conveyor.model.registry.ESTIMATORS``). ``n_jobs`` runs trials in that many processes;
    ``storage`` (an Optuna RDB URL, or a file path for SQLite) lets several processes share one
    study. ``max_rows`` bounds the rows cross-validated: a seeded sample of the train split when it
    is larger (null: all of it), so the stage never holds a large split whole. With ``enabled:
    false`` train fits ``model.params`` as they are.
    """

    enabled: bool = False
    trials: Annotated[int, Field(ge=1)] = 30
    timeout_s: Annotated[float, Field(gt=0.0)] | None = None
    metric: str | None = None
    cv_folds: Annotated[int, Field(ge=2)] = 5
    seed: int = 42
    space: dict[str, Distribution] = Field(default_factory=dict)
    n_jobs: Annotated[int, Field(ge=1)] = 1
    storage: str | None = None
    max_rows: Annotated[int, Field(ge=2)] | None = 1_000_000

    def search_space(self, task: Task, estimator: str) -> dict[str, Distribution]:
        """``space``, or the registry's default space for ``estimator`` when it is empty."""
        if self.space:
            return dict(self.space)
        space = default_space(task, estimator)
        return {name: Distribution.model_validate(raw, strict=False) for name, raw in space.items()}

    @property
    def storage_url(self) -> str | None:
        """``storage`` as an RDB URL: a plain path means a SQLite file there."""
        if self.storage is None or "://" in self.storage:
            return self.storage
        return f"sqlite:///{self.storage}"


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
    monitor: MonitorConfig = MonitorConfig()
    tune: TuneConfig = TuneConfig()
    feature_store: FeatureStoreConfig = FeatureStoreConfig()
    engine: Literal["pandas", "dask"] = "pandas"
    dask: DaskConfig = DaskConfig()

    def _check_dask_model(self) -> None:
        """What ``engine: dask`` can read and fit: SQL by ranges, the estimator xgboost.dask trains, the plain column transformer."""
        if self.data.is_sql and self.data.range_column is None:
            raise ValueError(
                "data.range_column: required with engine: dask and a SQL data.source; name a numeric column "
                "of data.query's result (an integer key, say) by whose ranges ingest reads it"
            )
        if self.model.estimator not in DASK_ESTIMATORS:
            raise ValueError(
                f"model.estimator: {self.model.estimator!r} does not train with engine: dask; "
                f"expected one of {list(DASK_ESTIMATORS)} (or engine: pandas)"
            )
        # The Dask engine fits the column transformer's statistics by aggregation; these have none yet.
        if self.features.derived:
            raise ValueError("features.derived: not fitted by engine: dask yet; remove it or use engine: pandas")
        if self.model.target_transform != "none":
            raise ValueError(
                "model.target_transform: not fitted by engine: dask yet; set it to none or use engine: pandas"
            )

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> Config:
        # A stage that never builds the estimator may skip importing it (see load_config).
        if (info.context or {}).get("check_params", True):
            check_estimator(self.task, self.model.estimator, self.model.params)
            check_estimator(self.task, self.model.estimator, self.tune.space, where="tune.space")
        else:
            check_estimator_name(self.task, self.model.estimator)
            # Where the registry lists the parameters this costs no import: a model.params left
            # from another estimator is then refused by the first stage, not by train.
            if declares_parameters(self.task, self.model.estimator):
                check_estimator(self.task, self.model.estimator, self.model.params)
        if self.model.target_transform != "none" and self.task != "regression":
            raise ValueError(
                f"model.target_transform: {self.model.target_transform!r} applies to regression; "
                f"task is {self.task} (set it to none)"
            )
        if self.engine == "dask":
            self._check_dask_model()
        known = metric_names(self.task)
        metric = () if self.tune.metric is None else (self.tune.metric,)
        for where, names in (
            ("gate.thresholds", self.gate.thresholds),
            ("gate.compare", self.gate.compare),
            ("tune.metric", metric),
        ):
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
        for index, item in enumerate(self.features.derived):
            if self.data.target in derived_columns(item):
                raise ValueError(
                    f"features.derived.{index}: {item.kind} reads the target column {self.data.target!r} "
                    "(data.target); a model cannot take its own label as input"
                )
        return self

    @property
    def tune_metric(self) -> str:
        """The metric the tune stage optimises: ``tune.metric``, else the first of ``gate.compare``.

        With neither, macro F1 (classification) or RMSE (regression). ``gate.thresholds`` are not
        consulted, so that tightening a threshold does not rerun a study (dvc.yaml lists the
        params each stage reads).
        """
        if self.tune.metric is not None:
            return self.tune.metric
        if self.gate.compare:
            return self.gate.compare[0]
        return {"classification": "f1_macro", "regression": "rmse"}[self.task]


def parse_config(raw: object, *, source: str = "params.yaml", check_params: bool = True) -> Config:
    """Validate an already-parsed params mapping; raise :class:`ConfigError` naming the key.

    ``check_params=False`` skips checking ``model.params`` and ``tune.space`` against the
    estimator's parameters, which imports the estimator's library (a second or more): for a
    stage that does not build the model.
    """
    if raw is None:
        raise ConfigError(f"{source}: the file is empty; expected the sections data, task, model, …")
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    try:
        return Config.model_validate(raw, by_alias=True, context={"check_params": check_params})
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc, source=source, root=Config)) from None


def load_config(path: str | Path = "params.yaml", *, check_params: bool = True) -> Config:
    """Read and validate a params file (``check_params``: see :func:`parse_config`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: {yaml_problem(exc)}") from None
    return parse_config(raw, source=str(path), check_params=check_params)
