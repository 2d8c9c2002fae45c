"""Where a model came from: git revision, library versions, content hashes of its inputs."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

__all__ = ["canonical_json", "git", "git_revision", "library_versions", "params_hash", "resolve_revision"]

LIBRARIES = ("scikit-learn", "pandas", "numpy", "skops", "conveyor")


def git_revision(root: Path | str = ".", *, outputs: Sequence[str | Path] = ()) -> str:
    """The commit checked out at ``root``, with ``-dirty`` when tracked files differ from it.

    ``outputs`` are files the running stage writes: DVC deletes a stage's outputs before it runs
    it, so a git-tracked output (``models/model.json``) would otherwise always look changed.
    ``unknown`` outside a git repository, so a model trained from an export is still traceable
    through its data and params hashes.
    """
    head = git(root, "rev-parse", "HEAD")
    if head is None:
        return "unknown"
    # dvc.lock and reports change during every `dvc repro`; they are outputs, not the code.
    excluded = [f":!{path}" for path in ("dvc.lock", "reports", *outputs)]
    dirty = git(root, "status", "--porcelain", "--untracked-files=no", "--", ".", *excluded)
    return head + ("-dirty" if dirty else "")


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries a saved model depends on."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def canonical_json(value: Any) -> bytes:
    """``value`` as JSON bytes that do not depend on key order, for hashing."""
    return json.dumps(value, sort_keys=True, default=str).encode()


def params_hash(params: dict[str, Any]) -> str:
    """A stable hash of a params mapping (key order does not matter)."""
    return hashlib.sha256(canonical_json(params)).hexdigest()


def git(root: Path | str, *args: str) -> str | None:
    """``git ARGS`` in ``root``: its stripped output, or None when it fails (no repository, no such rev)."""
    result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def resolve_revision(rev: str, root: Path | str) -> tuple[str, str] | None:
    """The name that resolved and its commit: ``rev`` itself, else ``origin/<rev>``.

    A CI checkout of a pull request has ``origin/main`` but no local ``main``; the gate and the
    report must both find the same baseline there.
    """
    for candidate in (rev, f"origin/{rev}"):
        commit = git(root, "rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}")
        if commit:
            return candidate, commit
    return None
