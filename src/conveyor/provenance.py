"""Where a model came from: git revision, library versions, content hashes of its inputs."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

LIBRARIES = ("scikit-learn", "pandas", "numpy", "skops", "conveyor")


def git_revision(root: Path | str = ".", *, outputs: Sequence[str | Path] = ()) -> str:
    """The commit checked out at ``root``, with ``-dirty`` when tracked files differ from it.

    ``outputs`` are files the running stage writes: DVC deletes a stage's outputs before it runs
    it, so a git-tracked output (``models/model.json``) would otherwise always look changed.
    ``unknown`` outside a git repository, so a model trained from an export is still traceable
    through its data and params hashes.
    """

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)

    head = git("rev-parse", "HEAD")
    if head.returncode != 0:
        return "unknown"
    # dvc.lock and reports change during every `dvc repro`; they are outputs, not the code.
    excluded = [f":!{path}" for path in ("dvc.lock", "reports", *outputs)]
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", *excluded).stdout.strip()
    return head.stdout.strip() + ("-dirty" if dirty else "")


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries a saved model depends on."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def params_hash(params: dict[str, Any]) -> str:
    """A stable hash of a params mapping (key order does not matter)."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()
