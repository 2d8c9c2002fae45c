"""Run one of the repository's Makefile targets in any folder, with this test environment."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import BIN, ROOT, run


def make(cwd: Path, *args: str | Path, tools: Path = BIN, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``make -f <repo>/Makefile ARGS`` in ``cwd``.

    ``-o setup`` treats the environment as installed (it is this one: ``BIN``, or the folder of
    stand-ins given as ``tools``), so what runs is the target's own recipe, as in CI after
    ``make setup``. With ``check=False`` a failing target is returned, not a test failure.
    """
    return run(
        cwd, "make", "--no-print-directory", "-f", ROOT / "Makefile", "-o", "setup", *args, f"BIN={tools}", check=check
    )
