"""``python -m conveyor`` runs the CLI."""

import sys

from conveyor.cli import main

sys.exit(main())
