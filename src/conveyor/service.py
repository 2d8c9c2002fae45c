"""The BentoML service: the model that passed the gate, behind a strict, typed HTTP API.

``bentoml serve`` at the repository root (or ``make serve``) serves the model this checkout's
package stage saved (its tag is in ``reports/package.json``; ``CONVEYOR_MODEL_TAG`` picks another
version); inside a bento, the model the bento carries. Everything but the BentoML wiring lives in :mod:`conveyor.serving`.

Import-time work is light on purpose (the bundle's JSON and contract only): the request model,
limits and worker settings must exist before the class is decorated. The model itself is loaded
once per worker in ``__init__``, warmed up, and then ``gc.freeze()`` moves everything loaded so
far out of the collector's sight, which took single-record p99 from 82 ms to 12 ms here.
"""

import gc
import os
from pathlib import Path
from typing import Annotated, Any

import bentoml
from pydantic import Field
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from conveyor import io
from conveyor.serving import Bundle, Engine, RequestGuard

MODEL_NAME = "conveyor-model"
PACKAGE_REPORT = Path("reports/package.json")


def model_tag() -> str:
    """``CONVEYOR_MODEL_TAG``, else the model this checkout packaged, else the newest one.

    Not simply the newest: switching back to a branch whose model is already in the store
    re-packages nothing, so "latest" would still be the other branch's model. A bento has no
    ``reports/`` and carries one model, which "latest" then names.
    """
    if tag := os.environ.get("CONVEYOR_MODEL_TAG"):
        return tag
    if PACKAGE_REPORT.is_file():
        return str(io.read_json(PACKAGE_REPORT)["model_tag"])
    return f"{MODEL_NAME}:latest"


MODEL = bentoml.models.BentoModel(model_tag())
_stored = MODEL.stored
if _stored is None:
    raise RuntimeError(
        f"no BentoML model {MODEL.tag} in {os.environ.get('BENTOML_HOME', '~/bentoml')}: run `make run` (dvc repro) first"
    )
BUNDLE = Bundle.load(Path(_stored.path))
SERVE = BUNDLE.serve

# Native thread pools read these when they start; set before any model is loaded in this worker.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, str(SERVE.threads))

Record = BUNDLE.record_model
Records = Annotated[
    list[Record],  # type: ignore[valid-type]
    Field(
        min_length=1,
        max_length=SERVE.max_records,
        description=f"1 to {SERVE.max_records} records, each with every model input column",
        examples=[[BUNDLE.example()]],
    ),
]
JSON_APIS = ("/predict", "/predict_proba") if BUNDLE.is_classifier else ("/predict",)


@bentoml.service(
    name="conveyor",
    workers=SERVE.workers,
    threads=max(4, SERVE.threads),
    traffic={"timeout": 30},
    envs=[{"name": "PYTHONPATH", "value": "/home/bentoml/bento/src/src"}],
    labels={"project": "conveyor"},
)
class Conveyor:
    """Predictions from the accepted model, typed from the data contract."""

    model = MODEL

    def __init__(self) -> None:
        threadpool_limits(limits=SERVE.threads)
        self.engine = Engine(BUNDLE)
        self.engine.warm_up()
        gc.collect()
        gc.freeze()

    @bentoml.api(  # type: ignore[untyped-decorator]
        batchable=SERVE.batching, max_batch_size=SERVE.max_batch_size, max_latency_ms=SERVE.max_latency_ms
    )
    def predict(self, records: Records) -> list[Any]:
        """One prediction per record: a class label (classification) or a value (regression)."""
        return self.engine.predict(records)

    @bentoml.api  # type: ignore[untyped-decorator]
    def predict_proba(self, records: Records) -> list[dict[str, float]]:
        """For each record, the probability of every class (classification models only)."""
        if not BUNDLE.is_classifier:
            raise bentoml.exceptions.InvalidArgument("predict_proba needs a classification model")
        return self.engine.predict_proba(records)

    @bentoml.api(route="/metadata")  # type: ignore[untyped-decorator]
    def metadata(self) -> dict[str, Any]:
        """The served model's tag, commit, data hash, metrics, inference path, features and contract."""
        return self.engine.metadata()


Conveyor.add_asgi_middleware(  # type: ignore[attr-defined]
    RequestGuard, paths=JSON_APIS, fields=("records",), max_body_bytes=SERVE.max_body_bytes
)
