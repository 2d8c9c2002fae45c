"""``conveyor init``: retarget the template to another table in one command.

:func:`retarget` reads a sample, infers its data contract (:func:`conveyor.contract.infer`, as
``conveyor schema infer`` does, with the reason for each column's type) and the task, and rewrites the keys of ``params.yaml`` that
belong to a dataset; every other setting, and every comment, stays as it was.

Task, unless given: a target of text or true/false values, or of whole numbers with at most
:data:`MAX_CLASSES` distinct values, is classification; any other numeric target is regression.

Keys rewritten: ``data.source``, ``data.query`` (null), ``data.target``, ``task``,
``split.stratify`` (classification: true when every class has the two rows a stratified split
needs), ``features.numeric``/``categorical`` (null: the contract's) and ``features.drop`` (none),
``model`` (:data:`ESTIMATORS`, which convert to ONNX), and ``gate``: thresholds a margin of
:data:`MARGIN` above chance (``balanced_accuracy`` above 1/classes; ``r2`` above 0, the mean's
score), compared with the champion on ``balanced_accuracy`` and ``log_loss`` (tolerance 0.01) or
on ``rmse`` (tolerance 1% of the target's standard deviation, in the target's units).

With a bake-off budget (``conveyor init`` gives one unless ``--bakeoff-seconds 0``), the model is
instead the winner of :func:`conveyor.ops.bakeoff.bake_off` on the train split (the split stage's
own, from ``split``), with every candidate's score in ``params.yaml``'s comments, and the gate's
threshold is the winner's cross-validated score less :func:`cv_margin`: a model that does as
well as the bake-off measured passes, one clearly worse does not.

``features.derived`` gets :func:`propose_derived`'s entries (date parts for a column of dates, a
target encoding for a code too wide to one-hot), or loses the old table's.

A regression target that is strictly positive and skewed (skewness above :data:`LOG_SKEW`) is
fitted on the log scale (``model.target_transform: log``) unless told otherwise, so no
prediction is negative.
"""

from __future__ import annotations

import difflib
import io as text_io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from numpy.typing import NDArray
from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark
from ruamel.yaml.scalarstring import DoubleQuotedScalarString
from ruamel.yaml.tokens import CommentToken

from conveyor import io
from conveyor.config import Config, CsvFormat, parse_config
from conveyor.contract import Contract, infer
from conveyor.errors import ConfigError, ConveyorError, yaml_problem
from conveyor.model.registry import Task
from conveyor.urls import is_parquet

__all__ = [
    "MAX_CLASSES",
    "InitError",
    "Retargeted",
    "TaskChoice",
    "check_target",
    "csv_format_of",
    "cv_margin",
    "edit_yaml",
    "gate_settings",
    "infer_task",
    "missing_markers",
    "portable_source",
    "propose_derived",
    "read_as_asked",
    "retarget",
    "run",
    "target_transform",
]

MAX_CLASSES = 20
MARGIN = 0.1
# A value for edit_yaml: remove the key (a setting the new data has no use for).
REMOVE: Any = object()
LOG_SKEW = 1.0
TargetTransform = Literal["auto", "none", "log"]
ESTIMATORS: dict[Task, tuple[str, dict[str, Any]]] = {
    "classification": ("logistic_regression", {"C": 1.0, "max_iter": 1000}),
    "regression": ("ridge", {"alpha": 1.0}),
}
# Comments init writes beside the keys it sets, replacing ones that described the old data.
COMMENTS: dict[Task, dict[tuple[str, ...], str]] = {
    "classification": {
        ("features", "drop"): "columns never used as features",
        ("gate", "thresholds"): f"every one must hold (init: {MARGIN} above chance; raise them to what ships)",
        ("gate", "tolerance"): "allowed regression, in each metric's own units",
    },
    "regression": {
        ("features", "drop"): "columns never used as features",
        ("gate", "thresholds"): f"every one must hold (init: {MARGIN} above the mean's 0; raise them to what ships)",
        ("gate", "tolerance"): "allowed regression, in each metric's own units (init: 1% of the target's std)",
    },
}


class InitError(ConveyorError):
    """The data cannot be retargeted as asked; the message names the column or file."""


@dataclass(frozen=True)
class TaskChoice:
    """The task and why: inferred from the target's values, or given."""

    task: Task
    reason: str


@dataclass(frozen=True)
class Retargeted:
    """What ``conveyor init`` writes: the new ``params.yaml`` text (and its parsed form) and the contract."""

    params: str
    config: Config
    contract: Contract
    choice: TaskChoice
    # One line per column: what it became and why (conveyor.contract.Inferred.lines).
    columns: tuple[str, ...] = ()
    # Each features.derived entry init proposed, and why.
    derived: tuple[tuple[dict[str, Any], str], ...] = ()


def infer_task(target: pd.Series) -> TaskChoice:
    """Classification for text, true/false or at most :data:`MAX_CLASSES` distinct whole numbers; else regression."""
    values = target.dropna()
    name, distinct = repr(str(target.name)), values.nunique()
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return TaskChoice("classification", f"{name} holds text or true/false values: {distinct} classes")
    if distinct <= MAX_CLASSES and bool((values % 1 == 0).all()):
        return TaskChoice(
            "classification", f"{name} holds {distinct} distinct whole numbers (at most {MAX_CLASSES} are classes)"
        )
    return TaskChoice("regression", f"{name} holds numbers with {distinct} distinct values")


def check_target(y: pd.Series, task: Task) -> None:
    """Raise :class:`InitError` naming the column unless the target ``y`` can be learned as ``task``."""
    target = str(y.name)
    if int(y.isna().sum()):
        raise InitError(
            f"--target {target!r}: {int(y.isna().sum())} row(s) have no label; remove them (validate refuses them)"
        )
    if y.nunique() < 2:
        raise InitError(f"--target {target!r} has a single value ({y.tolist()[0]!r}); there is nothing to learn")
    if task == "regression" and (pd.api.types.is_bool_dtype(y) or not pd.api.types.is_numeric_dtype(y)):
        raise InitError(f"--target {target!r} is not numeric (e.g. {y.tolist()[0]!r}); regression needs numbers")


def gate_settings(y: pd.Series, task: Task) -> dict[str, Any]:
    """Thresholds :data:`MARGIN` above chance, and what is compared with the champion (see the module doc)."""
    if task == "classification":
        chance = 1 / y.nunique()
        return {
            "thresholds": {"balanced_accuracy": {"min": math.floor((chance + MARGIN) * 100) / 100}},
            "compare": ["balanced_accuracy", "log_loss"],
            "tolerance": 0.01,
        }
    spread = float(pd.to_numeric(y).std())
    return {
        "thresholds": {"r2": {"min": MARGIN}},
        "compare": ["rmse"],
        "tolerance": float(f"{0.01 * spread:.2g}"),
    }


def target_transform(y: pd.Series, task: Task, asked: TargetTransform = "auto") -> Literal["none", "log"]:
    """``model.target_transform``: ``log`` for a strictly positive regression target skewed beyond :data:`LOG_SKEW`."""
    if asked != "auto":
        return asked
    if task != "regression":
        return "none"
    values = pd.to_numeric(y, errors="coerce").dropna().to_numpy(dtype="float64")
    return "log" if len(values) > 2 and values.min() > 0 and _skewness(values) > LOG_SKEW else "none"


def _skewness(values: NDArray[np.float64]) -> float:
    """The skewness of ``values``: the mean cubed standardized deviation (0 for a symmetric sample)."""
    spread = values.std()
    return float(np.mean(((values - values.mean()) / spread) ** 3)) if spread > 0 else 0.0


# A text column that is not a feature as it is: dates (most values parse) get date parts; short
# codes repeated often enough to learn from (distinct values under this share of the rows, no
# spaces) a cross-fitted target encoding; the rest is left alone (free text, names, IDs).
DATE_SHARE = 0.9
ENCODED_DISTINCT_SHARE = 0.5


def propose_derived(df: pd.DataFrame, contract: Contract, *, target: str) -> list[tuple[dict[str, Any], str]]:
    """``features.derived`` for the columns the contract keeps out of the model, each with why.

    A column of dates (the contract's ``datetime`` type, or text of which at least
    :data:`DATE_SHARE` parses as ISO 8601) gets ``date_parts``; free ``text`` gets TF-IDF; a
    category too wide for one-hot but repeated (under :data:`ENCODED_DISTINCT_SHARE` distinct,
    no spaces) gets ``target_encoding``. Keys (the contract's ``unique`` and ``id`` columns) get nothing.
    """
    from conveyor.model.transformers import as_datetimes

    keys = {name for key in contract.unique for name in key} | set(contract.columns_of("id"))
    # Dates and text are never model inputs as they are, whatever their `feature` flag says.
    inputs = {*contract.numeric_columns(), *contract.categorical_columns()}
    proposed: list[tuple[dict[str, Any], str]] = []
    for name, spec in contract.columns.items():
        if name == target or name in keys or name in inputs or spec.is_numeric or name not in df.columns:
            continue
        values = df[name].dropna()
        if not len(values):
            continue
        kind = str(spec.type)
        parsed = float(as_datetimes(values.head(1000)).notna().mean())
        if kind == "datetime" or parsed >= DATE_SHARE:
            proposed.append(({"kind": "date_parts", "column": name}, f"{parsed:.0%} of its values are dates"))
        elif kind == "text":
            proposed.append(({"kind": "text", "column": name, "max_features": 100}, "free text"))
        else:
            text = values.astype(str)
            share = text.nunique() / len(text)
            if share < ENCODED_DISTINCT_SHARE and not bool(text.str.contains(r"\s").mean() > 0.5):
                proposed.append(
                    ({"kind": "target_encoding", "column": name}, f"{text.nunique()} codes, too many to one-hot")
                )
    return proposed


def cv_margin(std: float, *, score: float | None = None, test_rows: int | None = None) -> float:
    """How far below the winner's cross-validated score the gate's threshold sits.

    Two fold standard deviations, and at least 0.02 (a test split is noisier than the mean of
    folds). For a share of rows (``score`` in [0, 1], e.g. balanced accuracy) on a test split of
    ``test_rows``, also two of its binomial standard errors: on 100 test rows a model that is
    right 85% of the time scores 0.85 ± 0.07 on any one split, and the gate must not reject it
    for the rows the split happened to draw.
    """
    margin = max(2 * std, 0.02)
    if score is not None and test_rows and 0.0 <= score <= 1.0:
        margin = max(margin, 2 * math.sqrt(score * (1 - score) / test_rows))
    return margin


def retarget(
    df: pd.DataFrame,
    params: str,
    *,
    source: str,
    target: str,
    task: Task | None = None,
    max_categories: int = 50,
    bakeoff_s: float = 0.0,
    transform: TargetTransform = "auto",
    csv_format: CsvFormat | None = None,
) -> Retargeted:
    """The contract of ``df`` and ``params`` (the text of ``params.yaml``) rewritten for ``target``.

    ``csv_format``: how the CSV ``df`` came from is written (``data.csv``); None for Parquet.

    ``bakeoff_s`` > 0 runs the bake-off on the train split within about that many seconds and
    writes its winner (see the module doc). Raises :class:`InitError` naming the column when
    ``target`` cannot be learned as the task, and :class:`conveyor.config.ConfigError` when the
    rest of ``params`` is not valid.
    """
    if target not in df.columns:
        columns = [str(c) for c in df.columns]
        close = difflib.get_close_matches(target, columns, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"columns are {columns}"
        raise InitError(f"--target {target!r} is not a column of the data; {hint}")
    choice = TaskChoice(task, f"--task {task}") if task is not None else infer_task(df[target])
    check_target(df[target], choice.task)
    inferred = infer(df, target=target, max_categories=max_categories)
    contract = inferred.contract
    estimator, estimator_params = ESTIMATORS[choice.task]
    gate = gate_settings(df[target], choice.task)
    settings: dict[tuple[str, ...], Any] = {
        ("data", "source"): source,
        ("data", "query"): None,
        ("data", "range_column"): None,  # data.query's column; a file has none
        ("data", "target"): target,
        **_csv_settings(csv_format or CsvFormat()),
        ("task",): choice.task,
        ("features", "numeric"): None,
        ("features", "categorical"): None,
        ("features", "drop"): [],
        ("model", "estimator"): estimator,
        ("model", "params"): estimator_params,
        ("gate", "thresholds"): gate["thresholds"],
        ("gate", "compare"): gate["compare"],
        ("gate", "tolerance"): gate["tolerance"],
    }
    if choice.task == "classification":
        settings["split", "stratify"] = bool(df[target].value_counts().min() >= 2)
    existing = yaml.safe_load(params) or {}
    model_section = existing.get("model") if isinstance(existing, dict) else None
    log = target_transform(df[target], choice.task, transform)
    if choice.task == "regression":
        settings["model", "target_transform"] = log
    elif "target_transform" in (model_section or {}):
        settings["model", "target_transform"] = REMOVE  # a classifier has no target transform
    features_section = existing.get("features") if isinstance(existing, dict) else None
    proposed = propose_derived(df, contract, target=target)
    if proposed:
        settings["features", "derived"] = [item for item, _ in proposed]
    elif "derived" in (features_section or {}):
        settings["features", "derived"] = REMOVE  # they named the old table's columns
    comments: dict[tuple[str, ...], str] = dict(COMMENTS[choice.task])
    if log == "log":
        comments["model", "target_transform"] = (
            f"init: {target!r} is positive and skewed (skewness "
            f"{_skewness(pd.to_numeric(df[target]).to_numpy(dtype='float64')):.1f}): "
            "fitted on the log scale, so no prediction is negative"
        )
    text = edit_yaml(params, settings, comments=comments, source="params.yaml")
    if bakeoff_s > 0:
        text = _with_bakeoff_winner(df, text, contract, budget_s=bakeoff_s)
    return Retargeted(
        text, parse_config(yaml.safe_load(text)), contract, choice, tuple(inferred.lines()), tuple(proposed)
    )


def _with_bakeoff_winner(df: pd.DataFrame, text: str, contract: Contract, *, budget_s: float) -> str:
    """``text`` with the bake-off's winner as ``model`` and gate thresholds from its cross-validated score."""
    from conveyor.ops.bakeoff import bake_off
    from conveyor.stages.split import split

    cfg = parse_config(yaml.safe_load(text), check_params=False)
    stratify = cfg.split.stratify and cfg.task == "classification"
    train, test = split(df, cfg.split, target=cfg.data.target, stratify=stratify)
    result = bake_off(train, cfg, contract, budget_s=budget_s, seed=cfg.split.seed)
    winner = result.winner
    assert winner.score is not None  # BakeOff's winner is scored
    # r2 is no share of rows: its margin is the folds' alone.
    margin = cv_margin(winner.std, score=winner.score if cfg.task == "classification" else None, test_rows=len(test))
    threshold = math.floor((winner.score - margin) * 100) / 100
    scores = "; ".join(candidate.describe(result.metric) for candidate in result.candidates)
    settings: dict[tuple[str, ...], Any] = {
        ("model", "estimator"): winner.estimator,
        ("model", "params"): winner.params,
        ("gate", "thresholds"): {result.metric: {"min": threshold}},
    }
    comments: dict[tuple[str, ...], str] = {
        ("model", "estimator"): f"init: the bake-off's winner on {result.metric}",
        ("model", "params"): (
            f"init bake-off, {winner.folds}-fold CV on {result.rows} train-split rows in {result.seconds:.0f} s: {scores}"
        ),
        ("gate", "thresholds"): (
            f"every one must hold (init: the winner's CV {result.metric} {winner.score:.3f} "
            f"less {margin:.3f} for fold and test-split noise, rounded down)"
        ),
    }
    return edit_yaml(text, settings, comments=comments, source="params.yaml")


def _csv_settings(csv_format: CsvFormat) -> dict[tuple[str, ...], Any]:
    # Quoted, as params.yaml writes them: a bare `;` or tab is easy to misread, and `,` reads as a list in flow style.
    return {
        ("data", "csv", "delimiter"): DoubleQuotedScalarString(csv_format.delimiter),
        ("data", "csv", "decimal"): DoubleQuotedScalarString(csv_format.decimal),
        ("data", "csv", "encoding"): csv_format.encoding,
        ("data", "csv", "missing"): list(csv_format.missing),
    }


def edit_yaml(
    text: str,
    settings: Mapping[tuple[str, ...], Any],
    *,
    comments: Mapping[tuple[str, ...], str],
    source: str,
) -> str:
    """``text`` with each key path in ``settings`` set (or removed, for :data:`REMOVE`), its comments and layout kept.

    Lists become flow sequences (``[a, b]``), mappings block mappings of flow mappings, as
    ``params.yaml`` writes them; ``comments`` replace the end-of-line comment of their key.
    """
    try:
        yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: {yaml_problem(exc)}") from None
    document = _round_trip()
    root = document.load(text)
    if not isinstance(root, CommentedMap):
        raise ConfigError(f"{source}: expected a mapping of sections at the top level")
    for path, value in settings.items():
        parent = _section(root, path[:-1], source=source)
        key = path[-1]
        if value is REMOVE:
            parent.pop(key, None)
            continue
        old = parent.get(key)
        parent[key] = _node(value, top=True)
        _keep_trailing_blank_lines(old, parent[key])
    for path, comment in comments.items():
        parent = _section(root, path[:-1], source=source)
        token = parent.ca.items.get(path[-1], [None, None, None])[2]
        parent.yaml_add_eol_comment(f"# {comment}", path[-1], column=token.column if token is not None else 32)
    out = text_io.StringIO()
    document.dump(root, out)
    return out.getvalue()


def _round_trip() -> YAML:
    document = YAML()
    document.width = 120
    document.preserve_quotes = True
    document.representer.add_representer(
        type(None), lambda representer, _: representer.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    return document


def _section(root: CommentedMap, path: Sequence[str], *, source: str) -> CommentedMap:
    node = root
    for key in path:
        if node.get(key) is None:
            node[key] = CommentedMap()
        node = node[key]
        if not isinstance(node, CommentedMap):
            raise ConfigError(f"{source}: {'.'.join(path)}: expected a mapping of keys")
    return node


def _node(value: Any, *, top: bool = False) -> Any:
    # PyYAML (YAML 1.1) reads `yes`, `on` or `1e3` as other than text: such strings are quoted.
    if isinstance(value, str):
        return value if _reads_back(value) and value.strip() == value else DoubleQuotedScalarString(value)
    if isinstance(value, list):
        sequence = CommentedSeq(_node(item) for item in value)
        sequence.fa.set_flow_style()
        return sequence
    if isinstance(value, dict):
        mapping = CommentedMap((key, _node(item)) for key, item in value.items())
        if not top:
            mapping.fa.set_flow_style()
        return mapping
    return value


def _reads_back(text: str) -> bool:
    try:
        return bool(yaml.safe_load(text) == text)
    except yaml.YAMLError:  # a tab, a lone `%`: not even YAML on their own
        return False


def _keep_trailing_blank_lines(old: Any, new: Any) -> None:
    # A block mapping owns the blank lines after it (on its last key's comment): carried over, so
    # replacing `model.params` does not glue `gate:` to it.
    if not (isinstance(old, CommentedMap) and old and isinstance(new, CommentedMap) and new):
        return
    last = list(old)[-1]
    if isinstance(old[last], CommentedMap) and not old[last].fa.flow_style():
        _keep_trailing_blank_lines(old[last], new)
        return
    token = old.ca.items.get(last, [None, None, None])[2]
    if token is not None and "\n\n" in token.value:
        blank = "\n" * (len(token.value) - len(token.value.rstrip("\n")))
        new.ca.items[list(new)[-1]] = [None, None, CommentToken(blank, CommentMark(0), None), None]


def read_as_asked(
    data: str,
    *,
    delimiter: str | None = None,
    decimal: Literal[".", ","] | None = None,
    encoding: str = "utf-8",
    missing: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, CsvFormat | None]:
    """The table ``data`` and how it was read (None for Parquet), for init and ``schema infer``.

    A CSV is read with ``delimiter`` and ``decimal`` where given, else as :func:`conveyor.io.sniff_csv`
    finds them, in ``encoding``; with ``missing`` as missing-value markers where given, else with
    those :func:`missing_markers` finds in a first read.
    """
    csv_format = csv_format_of(data, delimiter=delimiter, decimal=decimal, encoding=encoding)
    if csv_format is not None and missing is not None:
        csv_format = csv_format.model_copy(update={"missing": tuple(missing)})
    df = io.read_source(data, csv_format=csv_format, named_by="--data")
    if csv_format is None or missing is not None:
        return df, csv_format
    markers = missing_markers(df)
    if not markers:
        return df, csv_format
    csv_format = csv_format.model_copy(update={"missing": markers})
    return io.read_source(data, csv_format=csv_format, named_by="--data"), csv_format


# What may stand for "no value" in a column of numbers: one to three punctuation marks (?, -, ., --).
MARKER = re.compile(r"[^\w\s]{1,3}")


def missing_markers(df: pd.DataFrame) -> tuple[str, ...]:
    """The markers of missing values in ``df``: in a text column whose other values are all numbers,
    a value of punctuation alone (``?``, ``-``, ``.``, ``--``) in at most half its rows.

    Such a column would otherwise be text, and too wide for a category: no model input at all.
    """
    found: set[str] = set()
    for name in df.columns:
        column = df[name]
        if column.dtype.kind in "biufcmM":
            continue
        values = column.dropna().astype(str)
        others = values[pd.to_numeric(values.str.strip(), errors="coerce").isna()]
        if not len(others) or len(others) * 2 > len(values) or len(others) == len(values):
            continue
        tokens = set(others.unique())
        if all(MARKER.fullmatch(token.strip()) for token in tokens):
            found |= tokens
    return tuple(sorted(found))


def csv_format_of(
    data: str, *, delimiter: str | None, decimal: Literal[".", ","] | None, encoding: str
) -> CsvFormat | None:
    """How to read ``data``: None for Parquet; for a CSV, what is given, the rest as the file's first lines show."""
    if is_parquet(data):
        return None
    try:
        sniffed = (
            io.sniff_csv(data, encoding=encoding)
            if delimiter is None or decimal is None
            else CsvFormat(encoding=encoding)
        )
        return CsvFormat(
            delimiter=sniffed.delimiter if delimiter is None else delimiter,
            decimal=sniffed.decimal if decimal is None else decimal,
            encoding=encoding,
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        flag = str(error["loc"][0]) if error["loc"] else "decimal"
        raise InitError(f"--{flag}: {error['msg'].removeprefix('Value error, ')}") from None
    except OSError:
        return CsvFormat(encoding=encoding)  # reading it says what is wrong, naming the file


def portable_source(data: str, *, root: Path) -> str:
    """``data`` relative to ``root`` (the repository) when it is an absolute path inside it, so a clone finds it."""
    path = Path(data)
    if path.is_absolute() and path.resolve().is_relative_to(root):
        return path.resolve().relative_to(root).as_posix()
    return data


def run(
    *,
    data: str,
    target: str,
    task: Task | None,
    params: Path,
    max_categories: int,
    bakeoff_s: float = 0.0,
    transform: TargetTransform = "auto",
    delimiter: str | None = None,
    decimal: Literal[".", ","] | None = None,
    encoding: str = "utf-8",
    missing: Sequence[str] | None = None,
) -> Retargeted:
    """Read ``data`` and ``params``, then write the retargeted ``params`` and the contract at its ``data.schema``.

    A CSV is read as :func:`read_as_asked` reads it, and how goes to ``data.csv``.
    """
    try:
        text = params.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{params}: file not found; init rewrites the template's params.yaml") from None
    source = portable_source(data, root=params.resolve().parent)
    df, csv_format = read_as_asked(data, delimiter=delimiter, decimal=decimal, encoding=encoding, missing=missing)
    result = retarget(
        df,
        text,
        source=source,
        target=target,
        task=task,
        max_categories=max_categories,
        bakeoff_s=bakeoff_s,
        transform=transform,
        csv_format=csv_format,
    )
    io.write_contract(result.contract, result.config.data.schema_path)
    io.write_bytes(result.params.encode("utf-8"), params)
    return result
