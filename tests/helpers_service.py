"""Service test helpers: a packaged bundle built in process, without BentoML."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from conveyor.artifacts import EvaluationRecord
from conveyor.compiled import compile_pipeline
from conveyor.config import Config
from conveyor.contract import Contract
from conveyor.serving import Bundle, write_bundle
from conveyor.stages import package
from conveyor.stages.train import model_card, train


def make_bundle(directory: Path, cfg: Config, contract: Contract, data: pd.DataFrame) -> Bundle:
    """Train on ``data`` and write the bundle the package stage would write, without BentoML."""
    pipeline = train(data, cfg, contract)
    onnx, inference = compile_pipeline(pipeline, data, task=cfg.task, tolerance=cfg.serve.proba_tolerance)
    evaluation = EvaluationRecord(model_sha256="0" * 64, test_sha256="0" * 64, metrics={"accuracy": 1.0})
    info = package.bundle_info(model_card(pipeline, data, cfg), evaluation, cfg, inference) | {
        "model_tag": "conveyor-model:test",
        "git_revision": "0" * 40,
    }
    write_bundle(directory, model=pipeline, onnx=onnx, contract=contract, info=info)
    return Bundle.load(directory)
