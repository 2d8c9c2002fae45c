"""package: the accepted model into the BentoML model store, then the bento from ``bentofile.yaml``.

Runs only when ``reports/gate.json`` says the model was accepted. The BentoML model carries a
bundle (see :mod:`conveyor.bundle`): the skops pipeline, the ONNX model when it matched
scikit-learn on the whole test split, the data contract, the monitor's reference sample, and
``conveyor.json`` with the commit it was packaged from, its provenance, gate metrics and the
``serve`` and ``monitor.log_*`` settings; for a model trained from a feature store (ingest's
report says so), what the service fetches online (:func:`online_features`).

Model and bento versions are content hashes (of everything but the commit), so re-running with
nothing changed finds both in the store and adds nothing, and ``reports/package.json`` is the same
wherever the same model is packaged. The store lives in ``$BENTOML_HOME`` (default ``~/bentoml``), outside
the repository: if it was wiped, ``dvc repro --force package`` fills it again. Each entry is saved
whole and checked when found (:mod:`conveyor.store`): one torn by a kill or a disk is replaced.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from conveyor import io, provenance, store
from conveyor.artifacts import (
    BundleInfo,
    EvaluationRecord,
    FeatureStoreJoin,
    GateVerdict,
    InferenceChoice,
    IngestReport,
    ModelCard,
    OnlineFeaturesInfo,
    PackageReport,
)
from conveyor.bundle import MODEL_NAME, reference_sample, write_bundle
from conveyor.config import Config
from conveyor.contract import Contract, contract_to_dict
from conveyor.errors import ConveyorError
from conveyor.model.features import spec_of
from conveyor.model.onnx import compile_pipeline
from conveyor.provenance import canonical_json

__all__ = [
    "Contents",
    "PackageRefused",
    "bundle_info",
    "check_gate",
    "content_version",
    "contents",
    "labels",
    "online_features",
    "prediction_buckets",
    "run",
    "source_digest",
    "store_metadata",
]

if TYPE_CHECKING:
    import pandas as pd
    from numpy.typing import ArrayLike
    from sklearn.pipeline import Pipeline

BENTO_NAME = "conveyor"


class PackageRefused(ConveyorError):
    """The gate did not accept the model (or never ran), so nothing is packaged."""


def check_gate(verdict: GateVerdict, model_sha256: str, *, source: Path, model_path: Path) -> None:
    """Raise :class:`PackageRefused` unless the gate accepted exactly this model file."""
    if not verdict.accepted:
        failed = [str(check) for check in verdict.failed] or ["the champion comparison (see reports/champion.json)"]
        raise PackageRefused(f"{source}: the gate did not accept this model, nothing packaged; failed: {failed}")
    if verdict.model_sha256 != model_sha256:
        raise PackageRefused(
            f"{model_path}: not the model the gate accepted ({source} names sha256 {verdict.model_sha256[:12]}…); "
            "run `dvc repro` so the gate judges this model"
        )


# ONNX is checked against scikit-learn on at most this many seeded test rows: a conversion that
# differs shows on far fewer, and the package stage's memory stays bounded at any table size.
PARITY_ROWS = 200_000
# Buckets the service counts regression predictions in: the training target's deciles.
PREDICTION_QUANTILES = tuple(q / 10 for q in range(1, 10))


def prediction_buckets(target: ArrayLike | None) -> list[float] | None:
    """Upper edges of the value buckets for ``conveyor_predictions_total`` (regression), rounded to 4 digits."""
    import numpy as np

    values = np.asarray([] if target is None else target, dtype=np.float64)
    if values.size == 0:
        return None
    edges = np.quantile(values, PREDICTION_QUANTILES)
    return sorted({float(f"{edge:.4g}") for edge in edges})


def online_features(join: FeatureStoreJoin, inputs: Sequence[str], cfg: Config) -> OnlineFeaturesInfo:
    """What the service of a model trained from ``join`` fetches online: those of its ``inputs`` the feature service provides."""
    return OnlineFeaturesInfo(
        feature_service=join.feature_service,
        entity_keys=list(join.entity_keys),
        features=[feature for feature in join.features if feature in inputs],
        server_url=cfg.feature_store.server_url,
    )


def bundle_info(
    card: ModelCard,
    evaluation: EvaluationRecord,
    cfg: Config,
    inference: InferenceChoice,
    *,
    target: ArrayLike | None = None,
    online: OnlineFeaturesInfo | None = None,
) -> BundleInfo:
    """The bundle's ``conveyor.json``; its tag and the commit are filled in once the content is hashed.

    ``target`` is the training split's target (regression only), for the prediction buckets;
    ``online`` what the service fetches from the feature store (:func:`online_features`), if the
    training table came from one.
    """
    return BundleInfo(
        model_tag="",
        git_revision="",
        provenance=card.provenance,
        task=card.task,
        target=card.target,
        estimator=card.estimator,
        features=card.features,
        classes=card.classes,
        metrics=evaluation.metrics,
        serve=cfg.serve,
        inference=inference,
        prediction_log=cfg.monitor.prediction_log(),
        prediction_buckets=prediction_buckets(target) if card.task == "regression" else None,
        online_features=online,
    )


def content_version(*parts: bytes) -> str:
    """A version string from content: the same inputs give the same BentoML version."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:20]


def source_digest(bentofile: Path) -> bytes:
    """What the bento ships besides the model, as bytes to hash: the bentofile, its pinned
    requirements and every file its ``include`` patterns match (names included)."""
    root = bentofile.parent
    options = yaml.safe_load(io.read_bytes(bentofile)) or {}
    files = {bentofile}
    requirements = (options.get("python") or {}).get("requirements_txt")
    if requirements:
        files.add(root / requirements)
    for pattern in options.get("include") or ():
        files.update(path for path in root.glob(pattern) if path.is_file() and "__pycache__" not in path.parts)
    return b"\0".join(str(f.relative_to(root)).encode() + b"\0" + io.read_bytes(f) for f in sorted(files))


def labels(info: BundleInfo) -> dict[str, str]:
    """BentoML labels: short, string-valued, enough to find a model by where it came from."""
    return {
        "git_revision": info.git_revision,
        "data_hash": info.provenance.data_hash[:12],
        "params_hash": info.provenance.params_hash[:12],
        "estimator": info.estimator,
        "inference": info.inference.inference,
    }


def store_metadata(value: Any) -> Any:
    """``value`` without ``None`` entries: BentoML's model metadata accepts only basic types, and
    ``None`` appears legitimately (no classes in regression, no parity for a fallback)."""
    if isinstance(value, Mapping):
        return {k: store_metadata(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [store_metadata(v) for v in value]
    return value


@contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            del os.environ[name]
        else:
            os.environ[name] = previous


@dataclass(frozen=True)
class Contents:
    """What one bundle holds before it is written (see :func:`conveyor.bundle.write_bundle`)."""

    model: Pipeline
    onnx: bytes | None
    contract: Contract
    info: BundleInfo
    reference: pd.DataFrame

    def write(self, directory: Path) -> None:
        """Write the bundle into ``directory``, every file hashed."""
        write_bundle(
            directory,
            model=self.model,
            onnx=self.onnx,
            contract=self.contract,
            info=self.info,
            reference=self.reference,
        )


def contents(
    cfg: Config,
    *,
    model: Pipeline,
    model_bytes: bytes,
    contract: Contract,
    card: ModelCard,
    evaluation: EvaluationRecord,
    test: pd.DataFrame,
    train: pd.DataFrame,
    git_revision: str,
    join: FeatureStoreJoin | None = None,
    test_rows: int | None = None,
    train_target: pd.Series | None = None,
) -> Contents:
    """The bundle of an accepted model: its ONNX form if it matches, its info tagged by content, the reference.

    ``model_bytes`` are the model file's bytes (what the version hashes); ``test`` is the split
    the ONNX model must match scikit-learn on; ``train`` the split the reference is sampled from;
    ``join`` the feature store join ingest made (the bundle is then served with online features).
    A large split may come as the seeded sample this function would draw from it
    (:func:`conveyor.io.read_sample`), with ``test_rows`` the test split's size and ``train_target``
    the training split's whole target column (regression's prediction buckets read every value).
    """
    checked = test.sample(n=PARITY_ROWS, random_state=cfg.split.seed) if len(test) > PARITY_ROWS else test
    onnx, inference = compile_pipeline(
        model,
        checked,
        task=cfg.task,
        tolerance=cfg.serve.proba_tolerance,
        enabled=cfg.serve.inference == "auto",
        test_rows=len(test) if test_rows is None else test_rows,
    )
    if train_target is None:
        train_target = train[card.target]
    target = train_target.dropna().to_numpy() if card.task == "regression" else None
    online = online_features(join, spec_of(model).columns, cfg) if join is not None else None
    info = bundle_info(card, evaluation, cfg, inference, target=target, online=online)
    # Not the ONNX bytes: skl2onnx's output differs between processes (set ordering), while the
    # model, contract and parity report it is derived from do not. The monitor's reference sample
    # is in the bundle too: another size must not reuse a stored model.
    version = content_version(
        model_bytes,
        canonical_json(contract_to_dict(contract)),
        info.content(),
        str(cfg.monitor.reference_rows).encode(),
    )
    info = info.model_copy(update={"model_tag": f"{MODEL_NAME}:{version}", "git_revision": git_revision})
    reference = reference_sample(
        train, columns=(*spec_of(model).columns, cfg.data.target), rows=cfg.monitor.reference_rows, seed=cfg.split.seed
    )
    return Contents(model, onnx, contract, info, reference)


def run(
    cfg: Config,
    *,
    model_path: Path,
    metadata: Path,
    gate: Path,
    evaluation: Path,
    contract_path: Path,
    test: Path,
    train: Path,
    bentofile: Path,
    out: Path,
    ingest: Path | None = None,
) -> PackageReport:
    """Check the gate, save the model (if new), build the bento (if new), write ``out``.

    ``ingest`` is ingest's report: when it holds a feature store join, the bundle says so.
    """
    check_gate(io.read_artifact(gate, GateVerdict), io.file_sha256(model_path), source=gate, model_path=model_path)
    import bentoml

    root = bentofile.resolve().parent
    model = io.load_model(model_path)
    card = io.read_artifact(metadata, ModelCard)
    # Only the model's inputs and the target, and of those only the rows the bundle keeps: the
    # splits may be far larger than memory wants and hold columns the model never reads.
    needed = [*spec_of(model).columns, card.target]
    parity, test_rows = io.read_sample(test, columns=needed, rows=PARITY_ROWS, seed=cfg.split.seed)
    reference, _ = io.read_sample(train, columns=needed, rows=cfg.monitor.reference_rows, seed=cfg.split.seed)
    train_target = io.read_table(train, columns=[card.target])[card.target] if card.task == "regression" else None
    bundle = contents(
        cfg,
        model=model,
        model_bytes=io.read_bytes(model_path),
        contract=io.read_contract(contract_path),
        card=card,
        evaluation=io.read_artifact(evaluation, EvaluationRecord),
        test=parity,
        train=reference,
        git_revision=provenance.git_revision(root),
        join=io.read_artifact(ingest, IngestReport).feature_store if ingest is not None else None,
        test_rows=test_rows,
        train_target=train_target,
    )
    info, model_tag = bundle.info, bundle.info.model_tag
    version = model_tag.split(":", 1)[1]
    bento_tag = f"{BENTO_NAME}:{content_version(version.encode(), source_digest(bentofile.resolve()))}"

    def build(bentos: Any) -> None:
        # BentoML's build runs `uv` from PATH; this environment's own (a dev dependency) comes first,
        # so a machine with no global uv builds the same bento, whoever started this process.
        tools_first = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        with _environment("CONVEYOR_MODEL_TAG", model_tag), _environment("PATH", tools_first):
            bentoml.bentos.build_bentofile(
                str(bentofile.resolve()),
                version=bento_tag.split(":", 1)[1],
                build_ctx=str(root),
                labels=labels(info),
                _bento_store=bentos,
            )

    # Each entry is saved whole or not at all, and a torn one is replaced (see conveyor.store).
    with store.locked() as staging:
        store.save_model(
            model_tag,
            write=bundle.write,
            labels=labels(info),
            metadata=store_metadata(info.model_dump(mode="json")),
            staging=staging,
        )
        store.save_bento(bento_tag, build=build, staging=staging)
    report = PackageReport(
        model_tag=model_tag,
        bento_tag=bento_tag,
        provenance=info.provenance,
        inference=info.inference.inference,
        inference_reason=info.inference.reason,
        parity=info.inference.parity,
        metrics=info.metrics,
    )
    io.write_artifact(report, out)
    return report
