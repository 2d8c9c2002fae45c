"""The one module that reads and writes datasets, models, contracts and reports.

Models are stored with skops, which loads only the types on :data:`TRUSTED_TYPES` and refuses
anything else, instead of pickle, which would run whatever code a tampered file carries.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io as bytes_io
import json
import math
import os
import secrets
import stat
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from conveyor.config import describe_errors, yaml_problem
from conveyor.contract import Contract, contract_to_dict, parse_contract
from conveyor.errors import ArtifactError, ContractError, DataError
from conveyor.urls import redact_url

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

ArtifactT = TypeVar("ArtifactT", bound=BaseModel)
# Said wherever a file a stage wrote for another is missing or corrupt.
REBUILD = "run `dvc repro` to rebuild it"


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
    import pandas as pd

    if sql:
        return _read_sql(source, query or "")
    _require_regular_file(source)
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


def _require_regular_file(source: str) -> None:
    # A FIFO, device or socket would block the reader (and DVC's hashing) forever with no message.
    if "://" in source:
        return
    try:
        mode = os.stat(source).st_mode
    except FileNotFoundError:
        raise DataError(f"{source}: file not found (data.source in params.yaml)") from None
    if stat.S_ISDIR(mode):
        raise DataError(f"{source}: is a folder; data.source must name a CSV or Parquet file, or a URL")
    if not stat.S_ISREG(mode):
        raise DataError(
            f"{source}: not a regular file (a pipe, device or socket); data.source must name a file or a URL"
        )


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
    import pandas as pd
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


# --- writing: every output appears whole or not at all ----------------------------------------


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed onto ``path`` only if the block succeeds.

    A stage killed mid-write (``kill -9``, a full disk) then leaves the previous file or none,
    never a torn one that the next stage would read. The temporary name is hidden and unique to
    this write (process id and a random part), so concurrent writers of one file never touch each
    other's; a leftover whose process has died is removed by the next write of the same file.
    A file system that refuses the write (full, read-only, over quota) is an :class:`ArtifactError`
    naming ``path``, and the previous file stays.
    """

    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise disk_error(target.parent, exc) from None
    _remove_dead_writers_temporaries(target)
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        yield temporary
        os.replace(temporary, target)
    except OSError as exc:
        if exc.errno not in DISK_ERRNOS:
            raise
        raise disk_error(target, exc) from None
    finally:
        with suppress(OSError):
            temporary.unlink(missing_ok=True)


# What a file system says when it cannot take a write: full, over quota, too large, read-only,
# not permitted, or failing.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO})


def disk_error(path: str | Path, exc: OSError) -> ArtifactError:
    """One line for a write the file system refused: the path, the reason, and that nothing was replaced."""
    reason = exc.strerror or type(exc).__name__
    return ArtifactError(f"{path}: cannot write: {reason}; the previous file, if any, is unchanged")


def _remove_dead_writers_temporaries(target: Path) -> None:
    # Only a temporary whose writer has exited is stale: a live one belongs to a concurrent write.
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        pid = stale.name.rpartition(".tmp-")[2].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            with suppress(OSError):
                stale.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def write_bytes(data: bytes, path: str | Path) -> None:
    """Write a file whole (see :func:`atomic_path`), creating parent folders."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def move_into_place(source: Path, target: Path) -> None:
    """Rename a finished file onto ``target`` (same file system: atomic), creating its folder."""
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)


def write_text(text: str, path: str | Path) -> None:
    """Write a UTF-8 text file whole (see :func:`atomic_path`)."""
    write_bytes(text.encode("utf-8"), path)


def read_bytes(path: str | Path) -> bytes:
    """A file's bytes; a missing file or a folder in its place is an :class:`ArtifactError` naming it."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{path}: not found; {REBUILD}") from None
    except IsADirectoryError:
        raise ArtifactError(f"{path}: is a folder where a file should be; remove it, then {REBUILD}") from None


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes: which exact model or table a report is about."""
    return hashlib.sha256(read_bytes(path)).hexdigest()


# --- tables written by the stages ------------------------------------------------------------


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a Parquet file written by :func:`write_table`."""
    import pandas as pd
    import pyarrow as pa

    try:
        return pd.read_parquet(path)
    except FileNotFoundError:
        raise ArtifactError(f"{path}: not found; {REBUILD}") from None
    except IsADirectoryError:
        raise ArtifactError(f"{path}: is a folder where a file should be; remove it, then {REBUILD}") from None
    except (pa.ArrowException, OSError) as exc:
        raise ArtifactError(f"{path}: not a readable Parquet file ({exc}); {REBUILD}") from None


def write_table(df: pd.DataFrame, path: str | Path) -> None:
    """Write ``df`` as Parquet, whole or not at all."""

    with atomic_path(path) as temporary:
        df.to_parquet(temporary, index=False)


def table_hash(df: pd.DataFrame) -> str:
    """A content hash of a table: same values, columns and dtypes give the same hash.

    It does not depend on the file format, so a CSV and a Parquet copy of the same data agree.
    """
    import pandas as pd

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
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder; data.schema in params.yaml must name the contract file") from None
    except yaml.YAMLError as exc:
        raise ContractError(f"{path}: {yaml_problem(exc)}") from None
    return parse_contract(raw, source=str(path))


def write_contract(contract: Contract, path: str | Path) -> None:
    """Write a data contract as YAML."""
    write_text(yaml.safe_dump(contract_to_dict(contract), sort_keys=False, allow_unicode=True), path)


# --- models ---------------------------------------------------------------------------------


def save_model(model: Pipeline, path: str | Path) -> None:
    """Save a fitted pipeline with skops, byte for byte the same for the same model (see :func:`model_bytes`)."""
    write_bytes(model_bytes(model), path)


def model_bytes(model: Pipeline) -> bytes:
    """``model`` as a skops archive whose bytes depend on the model alone.

    skops names array files and object references after Python object ids and stamps each zip
    entry with the current time, so two identical trainings would differ. Here ids become their
    order of first appearance in the schema, and every entry gets the same fixed time and mode.
    """
    import skops.io as sio  # here, not at the top: stages that never touch a model skip its 1-2 s import

    archive = zipfile.ZipFile(bytes_io.BytesIO(sio.dumps(model)))
    schema = json.loads(archive.read("schema.json"))
    numbering: dict[str, str] = {}

    def renumber(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: _renumbered(key, value, numbering, renumber) for key, value in node.items()}
        if isinstance(node, list):
            return [renumber(item) for item in node]
        return node

    normalized = renumber(schema)
    renamed = {original: new for original, new in numbering.items() if original in archive.namelist()}
    buffer = bytes_io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as out:
        _add_entry(out, "schema.json", json.dumps(normalized, indent=2).encode())
        for original, new in renamed.items():
            _add_entry(out, new, archive.read(original))
    return buffer.getvalue()


def _renumbered(key: str, value: Any, numbering: dict[str, str], renumber: Any) -> Any:
    # ``__id__`` values are object ids; ``file`` names are ids (arrays) or random UUIDs (xgboost's
    # booster): both become their order of first appearance, the file keeping its extension.
    if key == "__id__" and isinstance(value, int):
        return int(numbering.setdefault(str(value), str(len(numbering))))
    if key == "file" and isinstance(value, str):
        suffix = Path(value).suffix
        return numbering.setdefault(value, f"{len(numbering)}{suffix}")
    return renumber(value)


def _add_entry(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    entry.external_attr = 0o644 << 16
    archive.writestr(entry, data)


def load_model(path: str | Path) -> Pipeline:
    """Load a pipeline saved by :func:`save_model`, refusing any type not on ``TRUSTED_TYPES``."""
    return model_from_bytes(read_bytes(path), source=str(path))


def model_from_bytes(data: bytes, *, source: str = "model") -> Pipeline:
    """Load a skops-serialized pipeline from memory, refusing untrusted types and corrupt archives."""
    import skops.io as sio
    from sklearn.pipeline import Pipeline

    try:
        untrusted = set(sio.get_untrusted_types(data=data))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{source}: not a readable skops model ({type(exc).__name__}: {exc}); {REBUILD}") from None
    refused = sorted(untrusted - set(TRUSTED_TYPES))
    if refused:
        raise DataError(f"{source}: refusing to load types that are not trusted: {refused}")
    model = sio.loads(data, trusted=sorted(untrusted))
    if not isinstance(model, Pipeline):
        raise DataError(f"{source}: expected a scikit-learn Pipeline, found {type(model).__name__}")
    return model


# --- reports and artifacts ------------------------------------------------------------------


def write_json(data: Mapping[str, Any], path: str | Path) -> None:
    """Write a report as indented JSON; NaN and infinities become ``null`` (JSON has neither)."""
    write_text(json.dumps(_finite(data), indent=2, sort_keys=False) + "\n", path)


def read_json(path: str | Path) -> Any:
    """Read a JSON report; a missing or malformed file is an :class:`ArtifactError` naming it."""
    text = read_bytes(path).decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc}); {REBUILD}") from None


def write_artifact(artifact: BaseModel, path: str | Path) -> None:
    """Write one of :mod:`conveyor.artifacts`' models as indented JSON, whole or not at all."""
    write_json(artifact.model_dump(mode="json"), path)


def read_artifact(path: str | Path, kind: type[ArtifactT]) -> ArtifactT:
    """Read and validate an artifact; a missing, malformed or outdated file names itself and the fix."""
    raw = read_json(path)
    try:
        return kind.model_validate(raw)
    except ValidationError as exc:
        problems = describe_errors(exc, source=str(path), root=kind)
        problems = problems.replace("invalid settings:\n  ", "invalid fields: ").replace("\n  ", "; ")
        raise ArtifactError(f"{problems} (not a {kind.__name__}; {REBUILD})") from None


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
