"""``engine: dask``: the data stages partition by partition on a Dask cluster (docs/scale.md).

:mod:`~conveyor.engine.hashsplit` is shared with the pandas engine and imports no Dask; every
other module here is imported only by a stage that runs with ``engine: dask``.
"""

__all__ = ["cluster", "evaluate", "hashsplit", "ingest", "split", "tables", "train", "validate"]
