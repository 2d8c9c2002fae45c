"""The one module that reads and writes datasets, models, contracts and reports.

Models are stored with skops, which loads only the types on :data:`TRUSTED_TYPES` and refuses
anything else, instead of pickle, which would run whatever code a tampered file carries.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import pandas as pd
import yaml

from conveyor.config import yaml_problem
from conveyor.contract import Contract, ContractError, contract_to_dict, parse_contract

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline


class DataError(ValueError):
    """Data that cannot be read or does not meet its contract; the message says where and why."""


# Every type a Conveyor pipeline is made of, beyond what skops trusts by default. A model file
# that needs anything else is refused with the type's name.
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.ensemble._forest.RandomForestRegressor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.impute._base.SimpleImputer",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.linear_model._ridge.Ridge",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.MinMaxScaler",
    "sklearn.preprocessing._data.RobustScaler",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._encoders.OneHotEncoder",
    "sklearn.preprocessing._encoders.OrdinalEncoder",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._classes.DecisionTreeRegressor",
    "sklearn.tree._tree.Tree",
    "sklearn._loss.link.Interval",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn.utils._bunch.Bunch",
    "builtins.slice",
    "numpy.dtype",
    # lightgbm and xgboost (scikit-learn API): the estimator, its booster, lightgbm's parameter map.
    "collections.OrderedDict",
    "conveyor.estimators.XGBClassifier",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMClassifier",
    "lightgbm.sklearn.LGBMRegressor",
    "xgboost.core.Booster",
    "xgboost.sklearn.XGBRegressor",
    "numpy.random._mt19937.MT19937",
    "numpy.random.mtrand.RandomState",
)


# --- datasets -------------------------------------------------------------------------------


def read_source(source: str, *, query: str | None = None, sql: bool = False) -> pd.DataFrame:
    """Read the raw table from a local CSV/Parquet path, an fsspec URL, or a SQL database.

    Unreadable input (empty, malformed, not UTF-8, unknown format) raises :class:`DataError`
    naming the source and the problem.
    """
    if sql:
        return _read_sql(source, query or "")
    suffix = Path(source.split("?", 1)[0]).suffix.lower()
    try:
        if suffix in {".parquet", ".pq"}:
            return pd.read_parquet(source)
        if suffix in {".csv", ".txt", ".gz"} or not suffix:
            return pd.read_csv(source, encoding="utf-8", encoding_errors="strict", on_bad_lines="error")
    except FileNotFoundError:
        raise DataError(f"{source}: file not found") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{source}: the file is empty (no header, no rows)") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{source}: malformed CSV: {exc}".strip()) from None
    except UnicodeDecodeError:
        raise DataError(f"{source}: not UTF-8 text{_first_bad_byte(source)}; re-save it as UTF-8") from None
    except csv.Error as exc:
        raise DataError(f"{source}: malformed CSV: {exc}") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{source}: cannot be read: {exc}") from None
    raise DataError(f"{source}: unknown format {suffix!r}; expected .csv or .parquet, or a SQLAlchemy URL")


def _first_bad_byte(source: str) -> str:
    # The decoder's offset is relative to the parser's chunk; the line number is what people need.
    path = Path(source)
    if not path.is_file() or path.suffix == ".gz":
        return ""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return f" (byte {data[exc.start]:#04x} on line {line})"
    return ""


def _read_sql(url: str, query: str) -> pd.DataFrame:
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError) as exc:
        # A malformed URL or a database driver that is not installed.
        raise DataError(f"{redact_url(url)}: cannot use this SQLAlchemy URL: {exc}") from None
    try:
        with engine.connect() as connection:
            return pd.read_sql_query(sqlalchemy.text(query), connection)
    except (sqlalchemy.exc.SQLAlchemyError, pd.errors.DatabaseError) as exc:
        # pandas wraps errors of the query itself; SQLAlchemy's (and the driver's) say what went wrong.
        cause = exc.__cause__ if isinstance(exc.__cause__, sqlalchemy.exc.SQLAlchemyError) else exc
        reason = cause.orig if isinstance(cause, sqlalchemy.exc.DBAPIError) else cause
        first_line = (str(reason).strip().splitlines() or [""])[0]
        raise DataError(f"{redact_url(url)}: query failed: {type(reason).__name__}: {first_line}") from None
    finally:
        engine.dispose()


def redact_url(source: str) -> str:
    """``source`` with any password in it replaced by ``***``: reports are committed and shown in PRs."""
    parts = urlsplit(source)
    if parts.password is None:
        return source
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a Parquet file written by :func:`write_table`."""
    return pd.read_parquet(path)


def write_table(df: pd.DataFrame, path: str | Path) -> None:
    """Write ``df`` as Parquet, creating parent folders."""
    _parent(path)
    df.to_parquet(path, index=False)


def table_hash(df: pd.DataFrame) -> str:
    """A content hash of a table: same values, columns and dtypes give the same hash.

    It does not depend on the file format, so a CSV and a Parquet copy of the same data agree.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps([[str(c), str(t)] for c, t in df.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return digest.hexdigest()


# --- contracts ------------------------------------------------------------------------------


def read_contract(path: str | Path) -> Contract:
    """Load a data contract from YAML."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: data contract not found (data.schema in params.yaml)") from None
    except yaml.YAMLError as exc:
        raise ContractError(f"{path}: {yaml_problem(exc)}") from None
    return parse_contract(raw, source=str(path))


def write_contract(contract: Contract, path: str | Path) -> None:
    """Write a data contract as YAML."""
    _parent(path)
    text = yaml.safe_dump(contract_to_dict(contract), sort_keys=False, allow_unicode=True)
    Path(path).write_text(text, encoding="utf-8")


# --- models ---------------------------------------------------------------------------------


def save_model(model: Pipeline, path: str | Path) -> None:
    """Save a fitted pipeline with skops."""
    import skops.io as sio  # here, not at the top: stages that never touch a model skip its 1-2 s import

    _parent(path)
    sio.dump(model, path)


def load_model(path: str | Path) -> Pipeline:
    """Load a pipeline saved by :func:`save_model`, refusing any type not on ``TRUSTED_TYPES``."""
    return model_from_bytes(Path(path).read_bytes(), source=str(path))


def model_from_bytes(data: bytes, *, source: str = "model") -> Pipeline:
    """Load a skops-serialized pipeline from memory, refusing untrusted types."""
    import skops.io as sio
    from sklearn.pipeline import Pipeline

    untrusted = set(sio.get_untrusted_types(data=data))
    refused = sorted(untrusted - set(TRUSTED_TYPES))
    if refused:
        raise DataError(f"{source}: refusing to load types that are not trusted: {refused}")
    model = sio.loads(data, trusted=sorted(untrusted))
    if not isinstance(model, Pipeline):
        raise DataError(f"{source}: expected a scikit-learn Pipeline, found {type(model).__name__}")
    return model


def write_bytes(data: bytes, path: str | Path) -> None:
    """Write an opaque model file (such as an ONNX model), creating parent folders."""
    _parent(path)
    Path(path).write_bytes(data)


def read_bytes(path: str | Path) -> bytes:
    """Read an opaque model file written by :func:`write_bytes`."""
    return Path(path).read_bytes()


# --- reports --------------------------------------------------------------------------------


def write_json(data: Mapping[str, Any], path: str | Path) -> None:
    """Write a report as indented JSON; NaN and infinities become ``null`` (JSON has neither)."""
    _parent(path)
    Path(path).write_text(json.dumps(_finite(data), indent=2, sort_keys=False) + "\n", encoding="utf-8")


def read_json(path: str | Path) -> Any:
    """Read a JSON report."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def parse_json(text: str) -> Any:
    """Parse JSON that a tool printed; ``Infinity`` and ``NaN`` (which DVC emits) become ``None``."""
    return _finite(json.loads(text))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _parent(path: str | Path) -> None:
    os.makedirs(Path(path).parent, exist_ok=True)
