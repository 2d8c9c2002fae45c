"""An in-process Dask cluster for the engine's fast tests (the slow test starts real processes)."""

from __future__ import annotations

from collections.abc import Iterator

import dask
import pytest
from distributed import Client, LocalCluster

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
