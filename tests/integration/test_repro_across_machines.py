"""`conveyor check-repro` (`make check-repro`) across CPUs: two OpenBLAS kernels stand for two machines.

A kernel rounds the last digits of the model's floats its own way, as another CPU does: the
committing "machine" and a fresh clone on the other one must agree within the stated tolerance,
and the check must still catch a stale ``dvc.lock`` and a result that really moved.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import commit_all, copy_repo, run

pytestmark = pytest.mark.slow

COMMITTER, OTHER_MACHINE = "Haswell", "Sandybridge"


def _model_md5(repo: Path) -> str:
    lock = yaml.safe_load((repo / "dvc.lock").read_text(encoding="utf-8"))
    return str(next(out["md5"] for out in lock["stages"]["train"]["outs"] if out["path"] == "models/model.skops"))


@pytest.fixture(scope="module")
def other_machine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh clone reproduced on another kernel than the one its ``dvc.lock`` was committed from."""
    committer = copy_repo(tmp_path_factory.mktemp("committer"))
    run(committer, "dvc", "repro", "--force", env={"OPENBLAS_CORETYPE": COMMITTER}, timeout=600)
    commit_all(committer, f"outputs reproduced on {COMMITTER}")
    clone = tmp_path_factory.mktemp("clone") / "repo"
    run(clone.parent, "git", "clone", "--quiet", str(committer), str(clone))
    run(clone, "dvc", "repro", env={"OPENBLAS_CORETYPE": OTHER_MACHINE}, timeout=600)
    assert _model_md5(clone) != _model_md5(committer), (
        f"OPENBLAS_CORETYPE={OTHER_MACHINE} gave {COMMITTER}'s model bytes: this test needs an x86-64 OpenBLAS "
        "whose kernels round differently, or it proves nothing"
    )
    return clone


def test_another_kernel_passes_with_the_model_named_machine_dependent(other_machine: Path) -> None:
    result = run(other_machine, "conveyor", "check-repro")
    assert "dvc.lock is current for every stage's inputs" in result.stdout
    assert "machine-dependent bytes" in result.stdout
    assert "models/model.skops" in result.stdout
    # The rerun really differed in tracked reports (else the tolerance was never exercised).
    assert "reports/metrics.json" in result.stdout


def test_a_result_beyond_the_tolerance_fails_naming_the_file_and_stage(other_machine: Path) -> None:
    metrics_file = other_machine / "reports/metrics.json"
    rerun = metrics_file.read_text(encoding="utf-8")
    moved = json.loads(rerun)
    moved["log_loss"] *= 1 + 1e-6
    metrics_file.write_text(json.dumps(moved), encoding="utf-8")
    try:
        result = run(other_machine, "conveyor", "check-repro", check=False)
    finally:
        metrics_file.write_text(rerun, encoding="utf-8")
    assert result.returncode == 1
    assert "stage evaluate: reports/metrics.json: moved beyond the tolerance" in result.stderr
    assert "log_loss" in result.stderr


def test_a_stale_lock_fails_naming_the_stage_and_the_input(other_machine: Path, tmp_path: Path) -> None:
    clone = tmp_path / "stale"
    run(tmp_path, "git", "clone", "--quiet", str(other_machine), str(clone))
    params = clone / "params.yaml"
    params.write_text(params.read_text(encoding="utf-8").replace("seed: 42", "seed: 7", 1), encoding="utf-8")
    commit_all(clone, "a params change committed without dvc repro: dvc.lock is stale")
    run(clone, "dvc", "repro", env={"OPENBLAS_CORETYPE": OTHER_MACHINE}, timeout=600)
    result = run(clone, "conveyor", "check-repro", check=False)
    assert result.returncode == 1
    assert "stage split: params.yaml: split.seed changed since dvc.lock was committed" in result.stderr
