"""Service test helpers: a packaged bundle built in process, without BentoML."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from conveyor.compiled import compile_pipeline
from conveyor.config import Config
from conveyor.contract import Contract
from conveyor.serving import Bundle, write_bundle
from conveyor.stages import package
from conveyor.stages.train import metadata, train


def make_bundle(directory: Path, cfg: Config, contract: Contract, data: pd.DataFrame) -> Bundle:
    """Train on ``data`` and write the bundle the package stage would write, without BentoML."""
    pipeline = train(data, cfg, contract)
    onnx, inference = compile_pipeline(pipeline, data, task=cfg.task, tolerance=cfg.serve.proba_tolerance)
    meta = metadata(pipeline, data, cfg, seconds=0.0, root=directory)
    info = package.bundle_info(meta, {"accepted": True}, {"accuracy": 1.0}, cfg, inference) | {
        "model_tag": "conveyor-model:test"
    }
    write_bundle(directory, model=pipeline, onnx=onnx, contract=contract, info=info)
    return Bundle.load(directory)
