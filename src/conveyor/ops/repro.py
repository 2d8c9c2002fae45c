"""Reproducibility across machines: is the committed ``dvc.lock`` current, and did a rerun move a result?

What "reproducible" promises (the README's "Reproducibility"):

- **Inputs, exactly.** The committed ``dvc.lock`` is current for every stage's command, params and
  the files it reads that no stage writes (code, data, contract). That holds on every machine.
- **Results, within a stated tolerance.** A rerun on another machine gives outputs equal to the
  committed ones within :data:`RELATIVE_TOLERANCE` / :data:`ABSOLUTE_TOLERANCE` on every number
  in a tracked JSON report, with identical non-numeric content. OpenBLAS picks a kernel per CPU,
  and each kernel rounds the last digits differently: a difference below the tolerance is that
  rounding, not a change.
- **Machine-dependent bytes, named.** A cached output labelled ``machine-dependent`` in
  ``dvc.yaml`` (the model file: its floats are that rounding) may differ in bytes; the fields that
  only name those bytes (:data:`MACHINE_DEPENDENT_FIELDS`) may differ with it, and a
  ``model_sha256`` must then name the model this run wrote. Every other cached output (the data
  files) must be byte-identical.

On one machine the same code, data and params still give byte-identical outputs (tested).
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from conveyor.errors import ConveyorError

__all__ = [
    "ABSOLUTE_TOLERANCE",
    "MACHINE_DEPENDENT_FIELDS",
    "MACHINE_DEPENDENT_LABEL",
    "RELATIVE_TOLERANCE",
    "Outcome",
    "Problem",
    "check",
    "json_differences",
    "lock_problems",
    "numbers_close",
    "summary",
]

# A kernel's rounding moves a result in its 15th-17th significant digit (log_loss
# 0.041739977711749525 against 0.04173997771174948); a real change moves it far more.
RELATIVE_TOLERANCE = 1e-9
# For numbers near zero, where a relative bound means nothing (a parity difference of 2.7e-07
# computed as the difference of two nearly equal probabilities moves by 2e-16).
ABSOLUTE_TOLERANCE = 1e-12
# The dvc.yaml label of a cached output whose bytes depend on the machine's floating point.
MACHINE_DEPENDENT_LABEL = "machine-dependent"
# Fields of tracked reports that are digests or tags of the machine-dependent bytes.
MACHINE_DEPENDENT_FIELDS = frozenset({"model_sha256", "model_tag", "bento_tag"})

_RERUN = "run `dvc repro` and commit dvc.lock with the outputs it rewrites"


@dataclass(frozen=True)
class Problem:
    """One way the rerun disagrees with the commit: the stage, the file, and what differs."""

    stage: str
    path: str
    what: str

    def __str__(self) -> str:
        return f"stage {self.stage}: {self.path}: {self.what}"


@dataclass(frozen=True)
class Outcome:
    """What :func:`check` found: problems (none means reproducible) and what differed within the rules."""

    problems: tuple[Problem, ...]
    within_tolerance: tuple[str, ...]
    machine_dependent: tuple[str, ...]


def numbers_close(a: float, b: float) -> bool:
    """Whether two results are the same number up to floating-point rounding (the stated tolerance)."""
    return math.isclose(a, b, rel_tol=RELATIVE_TOLERANCE, abs_tol=ABSOLUTE_TOLERANCE)


def json_differences(committed: Any, current: Any, *, where: str = "") -> list[str]:
    """Where two parsed JSON documents differ beyond the tolerance, as ``key.path: old → new`` lines.

    Numbers compare with :func:`numbers_close`; everything else (strings, booleans, keys, list
    lengths) must be identical. Fields in :data:`MACHINE_DEPENDENT_FIELDS` are skipped here:
    :func:`check` holds them to what this machine's model file says.
    """
    if _is_number(committed) and _is_number(current):
        return [] if numbers_close(float(committed), float(current)) else [f"{where or '.'}: {committed} → {current}"]
    if isinstance(committed, dict) and isinstance(current, dict):
        if committed.keys() != current.keys():
            gone, new = sorted(committed.keys() - current.keys()), sorted(current.keys() - committed.keys())
            return [f"{where or '.'}: keys differ (only committed: {gone}, only now: {new})"]
        return [
            line
            for key in committed
            if key not in MACHINE_DEPENDENT_FIELDS
            for line in json_differences(committed[key], current[key], where=f"{where}.{key}" if where else key)
        ]
    if isinstance(committed, list) and isinstance(current, list):
        if len(committed) != len(current):
            return [f"{where or '.'}: {len(committed)} items → {len(current)}"]
        return [
            line
            for index, (old, new) in enumerate(zip(committed, current, strict=True))
            for line in json_differences(old, new, where=f"{where}[{index}]")
        ]
    same = type(committed) is type(current) and committed == current
    return [] if same else [f"{where or '.'}: {committed!r} → {current!r}"]


def _is_number(value: Any) -> bool:
    # JSON true/false parse as bool, a subclass of int: they are not numbers to round.
    return isinstance(value, int | float) and not isinstance(value, bool)


def lock_problems(committed: Mapping[str, Any], current: Mapping[str, Any]) -> list[Problem]:
    """Where the committed ``dvc.lock`` is stale for its inputs: commands, params, and deps no stage writes.

    Both arguments are parsed ``dvc.lock`` files; ``current`` is the one ``dvc repro`` just wrote.
    A dependency another stage writes is not an input: its rerun is judged as that stage's output.
    """
    old_stages, new_stages = committed.get("stages", {}), current.get("stages", {})
    produced = [out["path"] for stage in new_stages.values() for out in stage.get("outs", [])]
    problems = [
        Problem(name, "dvc.lock", f"stage is not in the committed dvc.lock; {_RERUN}")
        for name in new_stages
        if name not in old_stages
    ]
    for name, new in new_stages.items():
        old = old_stages.get(name)
        if old is None:
            continue
        if old.get("cmd") != new.get("cmd"):
            problems.append(Problem(name, "dvc.yaml", f"the command changed since dvc.lock was committed; {_RERUN}"))
        for params_file, values in new.get("params", {}).items():
            before = old.get("params", {}).get(params_file, {})
            problems += [
                Problem(name, params_file, f"{key} changed since dvc.lock was committed; {_RERUN}")
                for key in _changed_keys(before, values)
            ]
        old_deps = {dep["path"]: dep for dep in old.get("deps", [])}
        for dep in new.get("deps", []):
            path = dep["path"]
            if any(_within(path, out) for out in produced):
                continue
            before = old_deps.get(path)
            if before is None:
                problems.append(Problem(name, path, f"a new dependency, not in the committed dvc.lock; {_RERUN}"))
            elif before.get("md5") != dep.get("md5"):
                problems.append(
                    Problem(name, path, f"changed since dvc.lock was committed (dvc.lock is stale); {_RERUN}")
                )
        for path in old_deps.keys() - {dep["path"] for dep in new.get("deps", [])}:
            problems.append(
                Problem(name, path, f"no longer a dependency, but the committed dvc.lock lists it; {_RERUN}")
            )
    return problems


def _changed_keys(before: Any, after: Any, prefix: str = "") -> list[str]:
    """The dotted params keys whose values differ (a stage that reads a whole section records it nested)."""
    if isinstance(before, dict) and isinstance(after, dict):
        return [
            changed
            for key in sorted(before.keys() | after.keys())
            for changed in _changed_keys(before.get(key), after.get(key), f"{prefix}.{key}" if prefix else key)
        ]
    return [] if before == after else [prefix]


def _within(path: str, out: str) -> bool:
    return path == out or path.startswith(out.rstrip("/") + "/")


def check(root: Path, *, rev: str = "HEAD") -> Outcome:
    """Compare the workspace after ``dvc repro`` with revision ``rev``, by the rules in this module's docstring.

    Raises :class:`ConveyorError` when ``root`` has no ``dvc.lock`` or ``rev`` cannot be read.
    """
    lock_path = root / "dvc.lock"
    if not lock_path.is_file():
        raise ConveyorError(f"{lock_path}: missing; run `dvc repro` first")
    current = yaml.safe_load(lock_path.read_text(encoding="utf-8"))
    committed = yaml.safe_load(_git(root, "show", f"{rev}:dvc.lock"))
    labelled, unreproduced = _workspace(root)
    problems = [
        Problem(stage, "dvc.lock", "not reproduced in this workspace (`dvc status` lists it); run `dvc repro` first")
        for stage in unreproduced
    ]
    problems += lock_problems(committed, current)
    within: list[str] = []
    machine: list[str] = []
    model_digests = {_sha256(root / path) for path in labelled if (root / path).is_file()}
    tracked = set(_git(root, "ls-files", "-z").split("\0")) - {""}
    old_outs = {out["path"]: out for stage in committed.get("stages", {}).values() for out in stage.get("outs", [])}
    owned: set[str] = {"dvc.lock"}
    for name, stage in current.get("stages", {}).items():
        for out in stage.get("outs", []):
            path = out["path"]
            files = sorted(file for file in tracked if _within(file, path))
            owned.update(files)
            if not files:
                before = old_outs.get(path, {}).get("md5")
                if before == out.get("md5"):
                    continue
                if path in labelled:
                    machine.append(path)
                else:
                    problems.append(Problem(name, path, f"a cached output changed (md5 {before} → {out.get('md5')})"))
                continue
            for file in files:
                found = _compare_tracked(root, rev, file, model_digests)
                if found == []:
                    within.append(file)
                problems += [Problem(name, file, what) for what in found or ()]
    for file in _modified(root):
        if file not in owned:
            problems.append(Problem("-", file, f"differs from {rev} and no stage writes it: commit or revert it"))
    return Outcome(tuple(problems), tuple(within), tuple(machine))


def _compare_tracked(root: Path, rev: str, file: str, model_digests: set[str]) -> list[str] | None:
    """How tracked ``file`` differs from ``rev`` beyond the rules: None if byte-identical, [] if within them."""
    old = _git_bytes(root, "show", f"{rev}:{file}")
    path = root / file
    if not path.is_file():
        return ["tracked in git, but `dvc repro` did not write it"]
    new = path.read_bytes()
    if old == new:
        return None
    if not file.endswith(".json"):
        return ["differs from the commit (not JSON, so compared byte for byte)"]
    try:
        old_doc, new_doc = json.loads(old), json.loads(new)
    except ValueError as exc:
        return [f"not JSON: {exc}"]
    lines = json_differences(old_doc, new_doc)
    lines += [
        f"{key}: {value} names no model file this run wrote"
        for key, value in _fields(new_doc, "model_sha256")
        if model_digests and value not in model_digests
    ]
    if not lines:
        return []
    shown = "; ".join(lines[:3]) + (f"; and {len(lines) - 3} more" if len(lines) > 3 else "")
    return [f"moved beyond the tolerance (relative {RELATIVE_TOLERANCE:g}, absolute {ABSOLUTE_TOLERANCE:g}): {shown}"]


def _fields(document: Any, name: str, where: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(document, dict):
        for key, value in document.items():
            at = f"{where}.{key}" if where else key
            if key == name:
                yield at, value
            yield from _fields(value, name, at)
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from _fields(value, name, f"{where}[{index}]")


def _workspace(root: Path) -> tuple[set[str], list[str]]:
    """The outputs labelled machine-dependent, and the stages ``dvc status`` says are not reproduced."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        labelled = {
            out.def_path
            for stage in repo.index.stages
            for out in stage.outs
            if MACHINE_DEPENDENT_LABEL in out.annot.labels
        }
        # An always_changed stage (source) is listed by every `dvc status`; what it writes is
        # tracked, so a changed source shows as a modified file instead.
        always_runs = {stage.name for stage in repo.index.stages if stage.always_changed}
        # dvc status names stages as "dvc.yaml:<stage>" or "<stage>"; only names are shown here.
        named = [name.rpartition(":")[2] for name in repo.status()]
        unreproduced = [name for name in named if name not in always_runs]
    return labelled, unreproduced


def _modified(root: Path) -> list[str]:
    listed = _git(root, "status", "--porcelain", "-z", "--untracked-files=no")
    return [entry[3:] for entry in listed.split("\0") if entry]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _git(root: Path, *args: str) -> str:
    return _git_bytes(root, *args).decode("utf-8")


def _git_bytes(root: Path, *args: str) -> bytes:
    result = subprocess.run(["git", *args], cwd=root, capture_output=True, check=False)
    if result.returncode != 0:
        raise ConveyorError(f"git {' '.join(args)}: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout


def summary(outcome: Outcome) -> Sequence[str]:
    """The lines ``conveyor check-repro`` prints for ``outcome``."""
    if outcome.problems:
        return [f"check-repro: {problem}" for problem in outcome.problems]
    lines = ["check-repro: dvc.lock is current for every stage's inputs"]
    if outcome.within_tolerance:
        lines.append(
            f"check-repro: {len(outcome.within_tolerance)} tracked report(s) differ from the commit only within "
            f"relative {RELATIVE_TOLERANCE:g} / absolute {ABSOLUTE_TOLERANCE:g} (this machine's floating point): "
            + ", ".join(outcome.within_tolerance)
        )
    if outcome.machine_dependent:
        lines.append(
            "check-repro: machine-dependent bytes (another CPU kernel, not a change): "
            + ", ".join(outcome.machine_dependent)
        )
    if not outcome.within_tolerance and not outcome.machine_dependent:
        lines.append("check-repro: every output is byte-identical to the commit")
    return lines
