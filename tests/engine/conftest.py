"""An in-process Dask cluster for the engine's fast tests (the slow test starts real processes)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dask
import pytest
from distributed import Client, LocalCluster

from conveyor.engine import cluster
from conveyor.engine.cluster import SETTINGS


@pytest.fixture(scope="session")
def dask_client() -> Iterator[Client]:
    """One worker thread in this process, with the stages' Dask settings; shared by the session."""
    with (
        dask.config.set(SETTINGS),
        LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        yield client


@pytest.fixture
def on_test_client(dask_client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Dask stages' cluster replaced by the tests' in-process one."""

    @contextmanager
    def connect(cfg: Any, *, stage: str) -> Iterator[Client]:
        yield dask_client

    monkeypatch.setattr(cluster, "connect", connect)
