"""gate: accept the model only if every threshold holds and it does not regress against the champion.

The champion is the model committed at ``gate.baseline_rev`` (``main`` by default), fetched with
DVC's API and scored on the *current* test split, so both models are judged on the same rows.
With no champion (first run, no git, or its model not in any cache or remote) the thresholds
alone decide, and ``reports/gate.json`` says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from conveyor import io
from conveyor.config import Config, GateConfig
from conveyor.metrics import score
from conveyor.provenance import resolve_revision
from conveyor.registry import Task, higher_is_better


@dataclass(frozen=True)
class Check:
    """One gate check: a threshold (``baseline`` is None) or a comparison with the champion."""

    kind: str
    metric: str
    value: float | None
    bound: float
    direction: str
    baseline: float | None
    passed: bool

    def __str__(self) -> str:
        value = "missing" if self.value is None else f"{self.value:.4f}"
        against = "" if self.baseline is None else f" (champion {self.baseline:.4f})"
        return f"{self.kind} {self.metric}: {value}, needs {self.direction} {self.bound:.4f}{against}"


@dataclass(frozen=True)
class Champion:
    """The baseline model's identity and, when it could be scored, its metrics."""

    rev: str
    commit: str | None
    metrics: dict[str, float] | None
    reason: str


class GateRejected(ValueError):
    """The model did not pass the gate; the message lists the failed checks.

    A ``ValueError`` like every other verdict on the user's data or model, so the CLI prints the
    reasons as one message instead of a traceback.
    """


def decide(metrics: Mapping[str, Any], cfg: GateConfig, *, task: Task, champion: Champion | None) -> dict[str, Any]:
    """The gate verdict as the content of ``reports/gate.json``; pure."""
    checks = [
        check
        for name, bound in cfg.thresholds.items()
        for check in _threshold_checks(metrics, name, bound.min, bound.max)
    ]
    if champion is not None and champion.metrics is not None:
        compared = cfg.compare or tuple(cfg.thresholds)
        checks += [_champion_check(metrics, champion.metrics, name, cfg.tolerance, task) for name in compared]
    accepted = all(check.passed for check in checks)
    return {
        "accepted": accepted,
        "checks": [asdict(check) for check in checks],
        "champion": None if champion is None else asdict(champion),
        "decided_by": "thresholds and champion"
        if champion is not None and champion.metrics is not None
        else "thresholds only",
    }


def _value(metrics: Mapping[str, Any], name: str) -> float | None:
    value = metrics.get(name)
    return float(value) if isinstance(value, (int, float)) else None


def _threshold_checks(metrics: Mapping[str, Any], name: str, low: float | None, high: float | None) -> list[Check]:
    value = _value(metrics, name)
    checks = []
    if low is not None:
        checks.append(Check("threshold", name, value, low, ">=", None, value is not None and value >= low))
    if high is not None:
        checks.append(Check("threshold", name, value, high, "<=", None, value is not None and value <= high))
    return checks


def _champion_check(
    metrics: Mapping[str, Any], baseline: Mapping[str, float], name: str, tolerance: float, task: Task
) -> Check:
    value, reference = _value(metrics, name), baseline[name]
    if higher_is_better(task, name):
        bound = reference - tolerance
        return Check("champion", name, value, bound, ">=", reference, value is not None and value >= bound)
    bound = reference + tolerance
    return Check("champion", name, value, bound, "<=", reference, value is not None and value <= bound)


def find_champion(model_path: Path, test: pd.DataFrame, cfg: Config, *, root: Path) -> Champion:
    """Fetch the model committed at ``gate.baseline_rev`` and score it on ``test``.

    A revision that does not exist, one that does not track the model, and a model that is in
    neither the local DVC cache nor a remote all mean "no champion". Any other failure (a remote
    that cannot be reached, say) propagates: the gate must not quietly skip the comparison.
    """
    from dvc.api import DVCFileSystem

    rev = cfg.gate.baseline_rev
    found = resolve_revision(rev, root)
    if found is None:
        return Champion(rev, None, None, f"no git revision {rev!r} here: first run, so thresholds alone decide")
    commit = found[1]
    path = model_path.as_posix()
    fs = DVCFileSystem(str(root), rev=commit)
    try:
        if not fs.exists(path):
            return Champion(rev, commit, None, f"{rev} does not track {path}; thresholds alone decide")
        data = fs.read_bytes(path)
    except FileNotFoundError:
        return Champion(
            rev,
            commit,
            None,
            f"the model committed at {rev} is in neither the DVC cache nor a remote "
            f"(`dvc pull {path}` on {rev} restores it); thresholds alone decide",
        )
    finally:
        fs.close()
    try:
        model = io.model_from_bytes(data, source=f"{path}@{rev}")
        metrics = score(model, test, target=cfg.data.target, task=cfg.task)
    except (ValueError, KeyError) as exc:
        return Champion(
            rev,
            commit,
            None,
            f"the model at {rev} cannot be scored on this test split ({exc}); thresholds alone decide",
        )
    return Champion(rev, commit, metrics, f"model at {rev} scored on the current test split")


def run(cfg: Config, *, model_path: Path, test: Path, metrics: Path, out: Path) -> dict[str, Any]:
    """Decide, write ``out``, then raise :class:`GateRejected` if the model was not accepted."""
    root = Path.cwd()
    champion = find_champion(model_path, io.read_table(test), cfg, root=root)
    verdict = decide(io.read_json(metrics), cfg.gate, task=cfg.task, champion=champion)
    io.write_json(verdict, out)
    if not verdict["accepted"]:
        failed = "\n".join(f"  {Check(**c)}" for c in verdict["checks"] if not c["passed"])
        raise GateRejected(f"model rejected by the gate ({out}):\n{failed}")
    return verdict
