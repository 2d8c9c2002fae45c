"""``python -m conveyor`` runs the CLI."""

import sys

from conveyor.cli import main

# Guarded: engine: dask's LocalCluster starts its workers by importing the main module again.
if __name__ == "__main__":
    sys.exit(main())
