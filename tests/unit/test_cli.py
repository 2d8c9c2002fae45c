"""`python -m conveyor --help` lists every command of the public contract."""

from __future__ import annotations

import re
import subprocess
import sys

PIPELINE_COMMANDS = ("ingest", "validate", "split", "tune", "train", "evaluate", "gate", "schema")


def test_help_lists_the_commands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: conveyor")
    # argparse lists each command on its own line, indented, followed by its help text.
    listed = {line.split()[0] for line in result.stdout.splitlines() if re.match(r"^    \w", line)}
    assert set(PIPELINE_COMMANDS) <= set(listed)


def test_a_command_without_its_paths_is_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", "train"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert "--data" in result.stderr
