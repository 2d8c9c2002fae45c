"""Service test helpers: a packaged bundle built in process, without BentoML, and requests to send it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from conveyor.artifacts import EvaluationRecord
from conveyor.model.onnx import compile_pipeline
from conveyor.config import Config
from conveyor.contract import Contract
from conveyor.serving.routes import Bundle, write_bundle
from conveyor.stages import package
from conveyor.stages.train import model_card, train


def make_bundle(directory: Path, cfg: Config, contract: Contract, data: pd.DataFrame) -> Bundle:
    """Train on ``data`` and write the bundle the package stage would write, without BentoML."""
    pipeline = train(data, cfg, contract)
    onnx, inference = compile_pipeline(pipeline, data, task=cfg.task, tolerance=cfg.serve.proba_tolerance)
    evaluation = EvaluationRecord(model_sha256="0" * 64, test_sha256="0" * 64, metrics={"accuracy": 1.0})
    target = data[cfg.data.target].tolist() if cfg.task == "regression" else None
    info = package.bundle_info(
        model_card(pipeline, data, cfg), evaluation, cfg, inference, model_tag="conveyor-model:test", target=target
    )
    info = info.model_copy(update={"git_revision": "0" * 40})
    write_bundle(directory, model=pipeline, onnx=onnx, contract=contract, info=info)
    return Bundle.load(directory)


GOOD = {
    "bill_length_mm": 39.1,
    "bill_depth_mm": 18.7,
    "flipper_length_mm": 181,
    "body_mass_g": 3750,
    "island": "Torgersen",
    "sex": "male",
}
JSON = {"content-type": "application/json"}
# (case, body, headers, status, the error type of the first problem in the response's detail)
BAD: list[tuple[str, Any, dict[str, str], int, str]] = [
    ("wrong type", {"records": [GOOD | {"bill_length_mm": "39.1"}]}, JSON, 400, "float_type"),
    ("missing field", {"records": [{k: v for k, v in GOOD.items() if k != "sex"}]}, JSON, 400, "missing"),
    ("unknown field", {"records": [GOOD | {"year": 2007}]}, JSON, 400, "extra_forbidden"),
    ("unknown top-level field", {"records": [GOOD], "explain": True}, JSON, 400, "extra_forbidden"),
    ("NaN", json.dumps({"records": [GOOD]}).replace("39.1", "NaN").encode(), JSON, 400, "finite_number"),
    ("out of range", {"records": [GOOD | {"body_mass_g": 80_000}]}, JSON, 400, "less_than_equal"),
    ("integer below its minimum", {"records": [GOOD | {"body_mass_g": 0}]}, JSON, 400, "greater_than_equal"),
    ("unseen category", {"records": [GOOD | {"island": "Atlantis"}]}, JSON, 400, "literal_error"),
    ("empty list", {"records": []}, JSON, 400, "too_short"),
    ("too many records", {"records": [GOOD] * 1001}, JSON, 400, "too_long"),
    ("not JSON", b"island=Dream", JSON, 400, "json_invalid"),
    ("empty body", b"", JSON, 400, "json_invalid"),
    ("not an object", b"[1, 2]", JSON, 400, "dict_type"),
    ("nested 1,000 deep", b"[" * 1000 + b"]" * 1000, JSON, 400, "json_invalid"),
    ("body over the limit", b"[" + b" " * 300_000 + b"]", JSON, 413, "too_large"),
    ("wrong content type", {"records": [GOOD]}, {"content-type": "text/csv"}, 415, "media_type"),
    ("no content type", {"records": [GOOD]}, {}, 415, "media_type"),
]
