"""Revisions as the gate and the report find them, in a local clone and in a CI checkout."""

from __future__ import annotations

from pathlib import Path

from conveyor.provenance import canonical_json, resolve_revision
from tests.conftest import commit_all, run


def test_a_ci_checkout_finds_the_baseline_as_origin_main(tmp_path: Path) -> None:
    run(tmp_path, "git", "init", "--quiet", "--initial-branch=feature")
    commit_all(tmp_path, "first")
    # A pull request's checkout: the base branch exists only as a remote-tracking ref.
    run(tmp_path, "git", "update-ref", "refs/remotes/origin/main", "HEAD")
    head = run(tmp_path, "git", "rev-parse", "HEAD").stdout.strip()

    assert resolve_revision("main", tmp_path) == ("origin/main", head)
    assert resolve_revision("feature", tmp_path) == ("feature", head)
    assert resolve_revision("no-such-branch", tmp_path) is None


def test_outside_git_nothing_resolves(tmp_path: Path) -> None:
    assert resolve_revision("main", tmp_path) is None


def test_canonical_json_ignores_key_order() -> None:
    assert canonical_json({"b": 1, "a": [2]}) == canonical_json({"a": [2], "b": 1})
