"""Where a Dask stage runs: a ``LocalCluster`` it starts (``dask.address: null``) or an existing scheduler.

One :func:`connect` per stage process. It prints the dashboard link once, and :func:`compute`
shows Dask's progress bar while a graph runs when the output is a terminal (never in logs).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dask
from distributed import Client, LocalCluster, progress

from conveyor.config import DaskConfig
from conveyor.errors import ClusterError

__all__ = ["SETTINGS", "ClusterError", "compute", "connect"]

# pandas' pyarrow-backed strings lose the missing category in OneHotEncoder; the stages keep
# object columns, as the pandas engine's frames after features.model_frame.
SETTINGS = {"dataframe.convert-string": False}


@contextmanager
def connect(cfg: DaskConfig, *, stage: str) -> Iterator[Client]:
    """A client on ``dask.address``, or on a LocalCluster of ``dask.workers`` processes started for this block.

    Start it under ``if __name__ == "__main__"`` (the ``conveyor`` command does): the workers are
    new processes that import the caller's main module.
    """
    # Workers the LocalCluster starts inherit the setting through the environment.
    os.environ["DASK_DATAFRAME__CONVERT_STRING"] = "False"
    with dask.config.set(SETTINGS):
        if cfg.address is None:
            cluster = LocalCluster(
                n_workers=cfg.workers,
                threads_per_worker=cfg.threads_per_worker,
                memory_limit=cfg.memory_limit,
                processes=True,
                dashboard_address="127.0.0.1:0",
            )
            with cluster, Client(cluster) as client:
                _announce(client, stage, f"a LocalCluster of {cfg.workers} worker(s)")
                yield client
            return
        try:
            client = Client(cfg.address, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f"dask.address: cannot reach the scheduler at {cfg.address} ({exc})") from None
        with client:
            workers = len(client.scheduler_info(n_workers=-1)["workers"])
            _announce(client, stage, f"the scheduler at {cfg.address} ({workers} worker(s))")
            yield client


def _announce(client: Client, stage: str, where: str) -> None:
    print(f"{stage}: dask on {where}; dashboard {client.dashboard_link}", file=sys.stderr)


def compute(client: Client, *collections: Any) -> tuple[Any, ...]:
    """Compute Dask collections on ``client`` together, with a progress bar at a terminal."""
    futures = client.compute(list(collections))
    if sys.stdout.isatty():
        progress(futures)
    return tuple(client.gather(futures))
