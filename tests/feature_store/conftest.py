"""Feast for the feature store tests and benchmark: its environment, example repositories, a feature server.

Importing Feast takes seconds (13-16 s cold), so the tests start each Feast process once per
module and only read what it wrote or answered.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from conveyor.artifacts import OnlineFeaturesInfo
from conveyor.bundle import MODEL_NAME, Bundle, write_bundle
from tests.conftest import ROOT, free_port, run, running

EXAMPLE = ROOT / "feature_repo"
# What a copy of the example repository needs (not its environment, not its generated store).
DEFINITIONS = ("feature_store.yaml", "penguins.py", ".feastignore")
FEAST_ENV = {"FEAST_USAGE": "False"}
# The model inputs the example's feature service provides: all of the default model's.
FEATURES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "island", "sex"]


@functools.cache
def feast_python() -> Path:
    """The Feast environment's interpreter, created from feature_repo/uv.lock if needed (a fresh machine)."""
    run(ROOT, "make", "--no-print-directory", "feast-env", timeout=900)
    python = EXAMPLE / ".venv" / "bin" / "python"
    assert python.is_file(), f"make feast-env did not create {python}"
    return python


def copy_definitions(destination: Path, *, with_sources: bool) -> Path:
    """A copy of the example repository's definitions in ``destination`` (and its sources if asked)."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in DEFINITIONS:
        shutil.copy2(EXAMPLE / name, destination / name)
    if with_sources:
        shutil.copytree(EXAMPLE / "data", destination / "data")
    else:
        (destination / "data").mkdir()
    return destination


@contextmanager
def served_example(workdir: Path) -> Iterator[tuple[str, Path]]:
    """``feast serve`` on 127.0.0.1 over a materialised copy of the example in ``workdir``: (its URL, the copy)."""
    python = feast_python()
    repo = copy_definitions(workdir / "repo", with_sources=True)
    run(repo, python, EXAMPLE / "materialize.py", "--repo", repo, "--apply", timeout=300, env=FEAST_ENV)
    port = free_port()
    command = [str(python.parent / "feast"), "serve", "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    with running(
        command, cwd=repo, env=os.environ | FEAST_ENV, port=port, log=workdir / "serve.log", ready_path="/health"
    ):
        yield f"http://127.0.0.1:{port}", repo


def newest_values(source: Path) -> pd.DataFrame:
    """Each entity's newest row of a Feast source file: what materialisation loads online."""
    table = pd.read_parquet(source).sort_values(["penguin_id", "event_timestamp"])
    return table.groupby("penguin_id").tail(1).set_index("penguin_id")


def online_model(bundle: Bundle, url: str) -> str:
    """``bundle`` stored as if trained from the example feature store, its feature server at ``url``; the tag."""
    import bentoml

    online = OnlineFeaturesInfo(
        feature_service="penguin_species", entity_keys=["penguin_id"], features=FEATURES, server_url=url
    )
    info = bundle.info.model_copy(update={"online_features": online})
    tag = f"{MODEL_NAME}:{hashlib.sha256(info.model_dump_json().encode()).hexdigest()[:16]}"
    with bentoml.models.create(tag) as model:
        write_bundle(
            Path(model.path),
            model=bundle.model(),
            onnx=bundle.onnx(),
            contract=bundle.contract,
            info=info.model_copy(update={"model_tag": tag}),
            reference=bundle.reference(),
        )
    return tag
