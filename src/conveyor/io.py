"""The one module that reads and writes datasets, models, contracts and reports.

Models are stored with skops, which loads only the types the estimator registry trusts
(:func:`conveyor.model.registry.trusted_types`) and refuses anything else, instead of pickle,
which would run whatever code a tampered file carries.
"""

from __future__ import annotations

import csv
import hashlib
import io as bytes_io
import json
import math
import os
import stat
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from conveyor.contract import Contract, contract_to_dict, parse_contract
from conveyor.errors import ArtifactError, ContractError, DataError, describe_errors, yaml_problem
from conveyor.model.registry import trusted_types
from conveyor.urls import redact_url

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

__all__ = [
    "atomic_path",
    "file_sha256",
    "load_model",
    "model_bytes",
    "model_from_bytes",
    "move_into_place",
    "parse_json",
    "read_artifact",
    "read_bytes",
    "read_contract",
    "read_json",
    "read_source",
    "read_table",
    "save_model",
    "table_hash",
    "write_artifact",
    "write_bytes",
    "write_contract",
    "write_json",
    "write_table",
    "write_text",
]

ArtifactT = TypeVar("ArtifactT", bound=BaseModel)
# Said wherever a file a stage wrote for another is missing or corrupt.
REBUILD = "run `dvc repro` to rebuild it"


# --- datasets -------------------------------------------------------------------------------


def read_source(
    source: str, *, query: str | None = None, sql: bool = False, named_by: str = "data.source in params.yaml"
) -> pd.DataFrame:
    """Read the raw table from a local CSV/Parquet path, an fsspec URL, or a SQL database.

    Unreadable input (empty, malformed, not UTF-8, unknown format) raises :class:`DataError`
    naming the source and the problem; a missing, folder or special file also names ``named_by``,
    where the path came from (a key or a command-line flag).
    """
    import pandas as pd

    if sql:
        return _read_sql(source, query or "")
    _require_regular_file(source, named_by)
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


def _require_regular_file(source: str, named_by: str) -> None:
    # A FIFO, device or socket would block the reader (and DVC's hashing) forever with no message.
    if "://" in source:
        return
    try:
        mode = os.stat(source).st_mode
    except FileNotFoundError:
        raise DataError(f"{source}: file not found ({named_by})") from None
    if stat.S_ISDIR(mode):
        raise DataError(f"{source}: is a folder; {named_by} must name a CSV or Parquet file, or a URL")
    if not stat.S_ISREG(mode):
        raise DataError(
            f"{source}: not a regular file (a pipe, device or socket); {named_by} must name a file or a URL"
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
    never a torn one that the next stage would read. The temporary name is hidden and carries
    the process id; a leftover from a killed run is removed by the next write of the same file.
    """

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        stale.unlink(missing_ok=True)
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


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


# The file a declared plot folder holds when its stage has no plot for it (the other task's plots,
# tuning switched off). `dvc plots show/diff` reports a declared folder that is missing as an
# error, and git (hence a baseline revision) keeps no empty folder; `.dvcignore` hides this file
# from DVC, so the folder exists and shows nothing: no empty figure, no error. No plot file can
# take this name: plot names never start with a dot.
PLOT_PLACEHOLDER = ".no-plot"


def write_plot_placeholder(folder: Path, reason: str) -> None:
    """Mark ``folder`` as a declared plot folder with nothing to show, saying why in the file."""
    write_text(f"{reason}\n", folder / PLOT_PLACEHOLDER)


def read_bytes(path: str | Path) -> bytes:
    """A file's bytes; a missing file or a folder in its place is an :class:`ArtifactError` naming it."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{path}: not found; {REBUILD}") from None
    except IsADirectoryError:
        raise ArtifactError(f"{path}: is a folder where a file should be; remove it, then {REBUILD}") from None


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes: which exact model or table a report is about.

    A folder (a partitioned table, ``engine: dask``) hashes its files' names and bytes, in name order.
    """
    folder = Path(path)
    if not folder.is_dir():
        return hashlib.sha256(read_bytes(path)).hexdigest()
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(folder).as_posix()}\0{file_sha256(file)}\0".encode())
    return digest.hexdigest()


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
    """Load a pipeline saved by :func:`save_model`, refusing any type the registry does not trust."""
    return model_from_bytes(read_bytes(path), source=str(path))


def model_from_bytes(data: bytes, *, source: str = "model") -> Pipeline:
    """Load a skops-serialized pipeline from memory, refusing untrusted types and corrupt archives."""
    import skops.io as sio
    from sklearn.pipeline import Pipeline

    try:
        untrusted = set(sio.get_untrusted_types(data=data))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{source}: not a readable skops model ({type(exc).__name__}: {exc}); {REBUILD}") from None
    refused = sorted(untrusted - trusted_types())
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
