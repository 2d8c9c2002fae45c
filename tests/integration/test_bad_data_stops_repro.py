"""``dvc repro`` on corrupted data stops at ingest or validate, says why, and changes nothing downstream."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import clone_of, run
from helpers_corrupt import corruption


def locked_stages(repo: Path) -> dict[str, Any]:
    """The ``stages`` entries of ``dvc.lock``."""
    stages: dict[str, Any] = yaml.safe_load((repo / "dvc.lock").read_text(encoding="utf-8"))["stages"]
    return stages


@pytest.mark.slow
# One of each kind: a column check, a dataset check, an unreadable file (the fast table has them all).
@pytest.mark.parametrize("name", ["above_max", "leakage_column", "extra_field_in_row"])
def test_corrupted_source_stops_the_pipeline(reproduced_repo: Path, tmp_path: Path, name: str) -> None:
    case = corruption(name)
    repo = clone_of(reproduced_repo, tmp_path / "repo")
    model = (repo / "models" / "model.skops").read_bytes()
    before = locked_stages(repo)
    validation_before = (repo / "reports" / "validation.json").read_text(encoding="utf-8")
    case.write(repo / "data" / "penguins.csv")

    result = run(repo, "dvc", "repro", check=False)

    assert result.returncode != 0
    assert f"failed to reproduce '{case.stage}'" in result.stderr
    assert f"conveyor {case.stage}: error: " in result.stderr
    for expected in case.expected:
        assert expected in result.stderr
    after = locked_stages(repo)
    # Every stage from the failing one on (split, train, evaluate, gate, package, …) keeps its lock entry.
    stages = list(before)
    untouched = stages[stages.index(case.stage) :]
    assert {"train", "evaluate", "gate"} <= set(untouched)
    for stage in untouched:
        assert after[stage] == before[stage], stage
    assert (repo / "models" / "model.skops").read_bytes() == model
    report = (repo / "reports" / "validation.json").read_text(encoding="utf-8")
    if case.stage == "validate":
        assert yaml.safe_load(report)["passed"] is False
    else:
        assert report == validation_before
