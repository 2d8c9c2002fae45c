"""The README's commands work as printed: each block marked ``<!-- tested: NAME -->`` runs line by line.

They run in a copy of the repository with a PATH of system directories and the interpreter's
only, as on a fresh machine. The copy shares this checkout's ``.venv`` and ``.tools`` (building
them again would only repeat ``make setup``, which ``.ci/run`` proves on a fresh clone).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, copy_repo

from conveyor import io
from conveyor.artifacts import GateVerdict, PackageReport

pytestmark = pytest.mark.slow

MARKER = re.compile(r"<!-- tested: (?P<name>[\w-]+)[^>]*-->\s*```bash\n(?P<body>.*?)```", re.DOTALL)


def marked_blocks() -> dict[str, list[str]]:
    """Each marked block's commands, comments after two spaces and a ``#`` stripped, by block name."""
    files = (
        [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
        if (ROOT / "docs").is_dir()
        else [ROOT / "README.md"]
    )
    blocks: dict[str, list[str]] = {}
    for file in files:
        for match in MARKER.finditer(file.read_text(encoding="utf-8")):
            lines = [re.sub(r"\s+#.*$", "", line).strip() for line in match["body"].splitlines()]
            blocks[match["name"]] = [line for line in lines if line]
    return blocks


def system_path() -> str:
    """Only system directories and the interpreter's: no venv, no globally installed dvc or uv."""
    interpreter = Path(os.path.realpath(sys.base_prefix)) / "bin"
    return os.pathsep.join(
        [str(interpreter), "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
    )


@pytest.fixture
def fresh_copy(tmp_path: Path) -> Path:
    repo = copy_repo(tmp_path / "repo")
    for environment in (".venv", ".tools"):
        (repo / environment).symlink_to(ROOT / environment)
    # The shared venv must not be re-synced from the copy (that would point its editable install here).
    planned = subprocess.run(["make", "-n", "setup"], cwd=repo, capture_output=True, text=True, check=True).stdout
    assert "uv sync" not in planned, f"make setup would re-sync the shared .venv from the copy:\n{planned}"
    return repo


def run_as_printed(repo: Path, commands: list[str], home: Path) -> None:
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("VIRTUAL_ENV", "PYTEST", "CONDA"))
    } | {"PATH": system_path(), "HOME": str(home)}
    for command in commands:
        result = subprocess.run(
            ["bash", "-c", command], cwd=repo, env=environment, capture_output=True, text=True, timeout=600, check=False
        )
        assert result.returncode == 0, (
            f"{command!r} exited {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )


def test_the_marked_blocks_are_there() -> None:
    blocks = marked_blocks()
    assert blocks["quickstart"] == ["make run", "make test"], "the quickstart is exactly two commands"
    assert "retarget" in blocks


def test_the_quickstart_runs_as_printed(fresh_copy: Path, tmp_path: Path) -> None:
    run_command, test_command = marked_blocks()["quickstart"]
    run_as_printed(fresh_copy, [run_command], tmp_path)
    assert io.read_artifact(fresh_copy / "reports/gate.json", GateVerdict).accepted
    # `make test` is this suite: CI runs it on a fresh clone after `make run`, as printed.
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert ci.index(run_command) < ci.index(test_command)


def test_the_retarget_recipe_runs_as_printed(fresh_copy: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    rng = np.random.default_rng(0)
    rows = 400
    tenure = rng.integers(1, 72, rows)
    charges = rng.normal(70, 20, rows).round(2)
    plan = rng.choice(["basic", "plus", "pro"], rows)
    churned = (rng.random(rows) < 1 / (1 + np.exp((tenure - 24) / 8))).astype(int)
    pd.DataFrame({"tenure": tenure, "monthly_charges": charges, "plan": plan, "churned": churned}).to_csv(
        home / "churn.csv", index=False
    )
    run_as_printed(fresh_copy, marked_blocks()["retarget"], home)
    assert io.read_artifact(fresh_copy / "reports/gate.json", GateVerdict).accepted
    assert io.read_artifact(fresh_copy / "reports/package.json", PackageReport).bento_tag
    assert "churned" in (fresh_copy / "params.yaml").read_text(encoding="utf-8")
