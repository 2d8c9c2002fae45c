"""A scheduler that cannot be reached stops a Dask stage with one line naming ``dask.address``."""

from __future__ import annotations

import pytest

from conveyor.config import DaskConfig
from conveyor.engine.cluster import ClusterError, connect
from tests.conftest import free_port


def test_an_unreachable_scheduler_names_dask_address() -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    with (
        pytest.raises(ClusterError, match=rf"dask.address: cannot reach the scheduler at {address}"),
        connect(DaskConfig(address=address), stage="ingest"),
    ):
        pytest.fail("connected to nothing")
