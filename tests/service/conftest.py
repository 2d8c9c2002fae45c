"""A packaged bundle built in process: the engine tests need no model store and no server."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers_service import make_bundle

from conveyor import io
from conveyor.config import Config
from conveyor.contract import Contract
from conveyor.serving import Bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, params: Config, contract: Contract) -> Bundle:
    """The default model (logistic regression, served through ONNX) as a bundle on disk."""
    data = io.read_source(str(Path(__file__).resolve().parents[2] / "data" / "penguins.csv"))
    return make_bundle(tmp_path_factory.mktemp("bundle"), params, contract, data)
