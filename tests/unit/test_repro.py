"""The rules of `conveyor check-repro`: what counts as the same result, and what makes dvc.lock stale."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from conveyor import repro


@pytest.mark.parametrize(
    ("committed", "rerun", "same"),
    [
        (0.041739977711749525, 0.04173997771174948, True),  # two OpenBLAS kernels, measured
        (2.731152416446392e-07, 2.731152414225946e-07, True),  # a parity difference near zero
        (1234.5678901, 1234.5678901 * (1 + 5e-10), True),
        (0.0417, 0.0418, False),
        (1234.5678901, 1234.5678901 * (1 + 1e-8), False),
        (0.0, 1e-11, False),
    ],
)
def test_numbers_close_is_rounding_not_change(committed: float, rerun: float, same: bool) -> None:
    assert repro.numbers_close(committed, rerun) is same


def test_json_differences_names_the_key_path_beyond_the_tolerance() -> None:
    committed: dict[str, Any] = {"metrics": {"log_loss": 0.041739977711749525, "accuracy": 1.0}, "points": [{"x": 0.5}]}
    rerun: dict[str, Any] = {
        "metrics": {"log_loss": 0.04173997771174948, "accuracy": 1.0},
        "points": [{"x": 0.5 + 1e-15}],
    }
    assert repro.json_differences(committed, rerun) == []
    moved = copy.deepcopy(rerun)
    moved["points"][0]["x"] = 0.6
    assert repro.json_differences(committed, moved) == ["points[0].x: 0.5 → 0.6"]


@pytest.mark.parametrize(
    ("committed", "rerun", "expected"),
    [
        ({"accepted": True}, {"accepted": 1}, "accepted: True → 1"),  # true/false are not numbers
        ({"class": "Adelie"}, {"class": "Gentoo"}, "class: 'Adelie' → 'Gentoo'"),
        ({"a": 1}, {"b": 1}, ".: keys differ (only committed: ['a'], only now: ['b'])"),
        ({"rows": [1, 2]}, {"rows": [1]}, "rows: 2 items → 1"),
    ],
)
def test_json_differences_holds_non_numbers_to_identity(committed: Any, rerun: Any, expected: str) -> None:
    assert repro.json_differences(committed, rerun) == [expected]


def test_fields_naming_machine_dependent_bytes_are_left_to_check() -> None:
    committed = {"model_sha256": "aa", "model_tag": "m:1", "bento_tag": "b:1", "data_hash": "dd"}
    rerun = {"model_sha256": "bb", "model_tag": "m:2", "bento_tag": "b:2", "data_hash": "dd"}
    assert repro.json_differences(committed, rerun) == []
    assert repro.json_differences(committed, rerun | {"data_hash": "ee"}) == ["data_hash: 'dd' → 'ee'"]


LOCK: dict[str, Any] = {
    "schema": "2.0",
    "stages": {
        "split": {
            "cmd": "conveyor split",
            "deps": [
                {"path": "data/validated/data.parquet", "md5": "v1"},
                {"path": "src/conveyor/stages/split.py", "md5": "s1"},
            ],
            "params": {"params.yaml": {"split": {"seed": 42}}},
            "outs": [{"path": "data/split/train.parquet", "md5": "t1"}],
        },
        "validate": {
            "cmd": "conveyor validate",
            "deps": [{"path": "data/raw/data.parquet", "md5": "r1"}],
            "outs": [{"path": "data/validated/data.parquet", "md5": "v1"}],
        },
    },
}


def _changed(edit: str) -> dict[str, Any]:
    lock = copy.deepcopy(LOCK)
    split = lock["stages"]["split"]
    if edit == "cmd":
        split["cmd"] = "conveyor split --fast"
    elif edit == "params":
        split["params"]["params.yaml"]["split"]["seed"] = 7
    elif edit == "code":
        split["deps"][1]["md5"] = "s2"
    elif edit == "new dep":
        split["deps"].append({"path": "src/conveyor/io.py", "md5": "i1"})
    elif edit == "new stage":
        lock["stages"]["train"] = {"cmd": "conveyor train", "deps": [], "outs": []}
    return lock


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ("cmd", "stage split: dvc.yaml: the command changed"),
        ("params", "stage split: params.yaml: split.seed changed"),
        ("code", "stage split: src/conveyor/stages/split.py: changed since dvc.lock was committed"),
        ("new dep", "stage split: src/conveyor/io.py: a new dependency"),
        ("new stage", "stage train: dvc.lock: stage is not in the committed dvc.lock"),
    ],
)
def test_a_stale_lock_names_the_stage_and_the_input(edit: str, expected: str) -> None:
    problems = [str(problem) for problem in repro.lock_problems(LOCK, _changed(edit))]
    assert len(problems) == 1
    assert problems[0].startswith(expected)
    assert "run `dvc repro` and commit dvc.lock" in problems[0]


def test_a_dependency_another_stage_writes_is_judged_as_that_stage_output() -> None:
    rerun = copy.deepcopy(LOCK)
    rerun["stages"]["split"]["deps"][0]["md5"] = "v2"  # validate's output, recomputed
    assert repro.lock_problems(LOCK, rerun) == []
    assert repro.lock_problems(LOCK, LOCK) == []
