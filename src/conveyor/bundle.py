"""The packaged format: the bundle's files, written with every file hashed, verified, loaded; the package report.

The package stage writes a *bundle* into the BentoML model's directory: the skops model, the
ONNX model when it passed the parity check, the data contract, ``conveyor.json``, the monitor's
reference sample (``reference.parquet``) and, last, ``sha256sums.txt`` with the SHA-256 of each
of them. :meth:`Bundle.load` checks every file against its hash before anything reads it, and a
file the sums do not list is never read. ``reports/package.json`` names the model and bento the
stage made; :func:`read_package_report` is its one reader.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor import io
from conveyor.artifacts import BundleInfo, PackageReport
from conveyor.config import PredictionLogConfig, ServeConfig
from conveyor.contract import Contract
from conveyor.errors import ArtifactError, ConveyorError
from conveyor.model.features import FeatureSpec, spec_from_card

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

__all__ = [
    "CHECKSUMS_FILE",
    "MODEL_FILE",
    "MODEL_NAME",
    "ONNX_FILE",
    "PACKAGE_REPORT",
    "REFERENCE_FILE",
    "Bundle",
    "BundleError",
    "missing_from_store",
    "read_package_report",
    "reference_sample",
    "verify_bundle",
    "write_bundle",
]

# The BentoML model's name; its version is a content hash (see conveyor.stages.package).
MODEL_NAME = "conveyor-model"
MODEL_FILE = "model.skops"
ONNX_FILE = "model.onnx"
CONTRACT_FILE = "contract.yaml"
INFO_FILE = "conveyor.json"
REFERENCE_FILE = "reference.parquet"
CHECKSUMS_FILE = "sha256sums.txt"
PACKAGE_REPORT = Path("reports/package.json")
REPACKAGE = "re-package (dvc repro --force package)"


class BundleError(ArtifactError):
    """A packaged bundle that cannot be used: a file missing or not what was packaged."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def reference_sample(train: pd.DataFrame, *, columns: tuple[str, ...], rows: int, seed: int) -> pd.DataFrame:
    """At most ``rows`` rows of the training split (a seeded sample), restricted to ``columns``."""
    kept = train[list(columns)]
    return kept.sample(n=rows, random_state=seed) if len(kept) > rows else kept


def write_bundle(
    directory: Path,
    *,
    model: Pipeline,
    onnx: bytes | None,
    contract: Contract,
    info: BundleInfo,
    reference: pd.DataFrame,
) -> None:
    """Write everything the service and the monitor need into ``directory`` (a BentoML model's path).

    ``reference`` is the monitor's sample of the training split (:func:`reference_sample`). Last
    comes ``sha256sums.txt`` (the format ``sha256sum -c`` reads) with the hash of every other file.
    """
    io.save_model(model, directory / MODEL_FILE)
    names = [MODEL_FILE, CONTRACT_FILE, INFO_FILE, REFERENCE_FILE]
    if onnx is not None:
        io.write_bytes(onnx, directory / ONNX_FILE)
        names.append(ONNX_FILE)
    io.write_contract(contract, directory / CONTRACT_FILE)
    io.write_artifact(info, directory / INFO_FILE)
    io.write_table(reference, directory / REFERENCE_FILE)
    sums = "".join(f"{_sha256(directory / name)}  {name}\n" for name in sorted(names))
    (directory / CHECKSUMS_FILE).write_text(sums, encoding="utf-8")


def verify_bundle(directory: Path) -> frozenset[str]:
    """The names of the bundle's files, each checked against its recorded hash.

    Raises :class:`BundleError` naming the first file that is missing or not as packaged.
    """
    sums = directory / CHECKSUMS_FILE
    if not sums.is_file():
        raise BundleError(f"{sums}: missing, so the bundle cannot be verified; {REPACKAGE}")
    names = []
    for line in sums.read_text(encoding="utf-8").splitlines():
        expected, name = line.split("  ", 1)
        path = directory / name
        if not path.is_file():
            raise BundleError(f"{path}: missing from the packaged bundle; {REPACKAGE}")
        if _sha256(path) != expected:
            raise BundleError(
                f"{path}: corrupt, its SHA-256 differs from the one recorded at package time; {REPACKAGE}"
            )
        names.append(name)
    return frozenset(names)


@dataclass(frozen=True)
class Bundle:
    """A verified packaged model directory: its ``conveyor.json`` and contract, the rest read on demand."""

    directory: Path
    info: BundleInfo
    contract: Contract
    files: frozenset[str]

    @classmethod
    def load(cls, directory: Path) -> Bundle:
        """Verify every file against its recorded hash, then read the light parts (no model yet)."""
        files = verify_bundle(directory)
        try:
            return cls(
                directory,
                io.read_artifact(directory / INFO_FILE, BundleInfo),
                io.read_contract(directory / CONTRACT_FILE),
                files,
            )
        except ConveyorError as error:
            raise BundleError(str(error)) from None

    def path(self, name: str) -> Path:
        """The path of the verified file ``name``; :class:`BundleError` if the bundle's sums do not list it."""
        if name not in self.files:
            raise BundleError(f"{self.directory / CHECKSUMS_FILE}: lists no {name}; {REPACKAGE} with this version")
        return self.directory / name

    @property
    def serve(self) -> ServeConfig:
        """The ``serve`` settings the model was packaged with."""
        return self.info.serve

    @property
    def prediction_log(self) -> PredictionLogConfig:
        """The ``monitor.log_*`` settings the model was packaged with."""
        return self.info.prediction_log

    @property
    def columns(self) -> tuple[str, ...]:
        """The model's input columns: numeric, categorical, then the derived features' own, as the pipeline takes them."""
        return self.spec.columns

    @property
    def spec(self) -> FeatureSpec:
        """The model's input columns by kind."""
        return spec_from_card(self.info.features)

    @property
    def other_columns(self) -> tuple[str, ...]:
        """The contract's columns a record may carry besides the model's (all but the target): checked, logged, unused."""
        return tuple(name for name in self.contract.columns if name not in self.columns and name != self.info.target)

    @property
    def bool_labels(self) -> bool:
        """Whether the target is a ``bool`` column, so that the service answers JSON ``true``/``false``."""
        spec = self.contract.columns.get(self.info.target)
        return self.is_classifier and spec is not None and spec.type == "bool"

    @property
    def is_classifier(self) -> bool:
        """Whether the model predicts classes (and so has ``predict_proba``)."""
        return self.info.task == "classification"

    def model(self) -> Pipeline:
        """The scikit-learn pipeline (``model.skops``)."""
        return io.load_model(self.path(MODEL_FILE))

    def onnx(self) -> bytes:
        """The ONNX model's bytes (``model.onnx``), present when ``info.inference`` chose ONNX."""
        return io.read_bytes(self.path(ONNX_FILE))

    def reference(self) -> pd.DataFrame:
        """The monitor's reference: the sample of the training split kept at package time."""
        return io.read_table(self.path(REFERENCE_FILE))


def read_package_report(path: Path = PACKAGE_REPORT) -> PackageReport:
    """``reports/package.json``: the model and bento this checkout's package stage made."""
    return io.read_artifact(path, PackageReport)


def missing_from_store(report: PackageReport) -> list[str]:
    """Which of the report's model and bento this machine's BentoML store (``$BENTOML_HOME``) lacks."""
    import bentoml

    missing = []
    for kind, tag, get in (
        ("model", report.model_tag, bentoml.models.get),
        ("bento", report.bento_tag, bentoml.bentos.get),
    ):
        try:
            get(tag)
        except bentoml.exceptions.NotFound:
            missing.append(f"{kind} {tag}")
    return missing
