"""gate: accept the model only if every threshold holds and it does not regress against the champion.

The gate first makes sure it judges the model evaluate scored: the model file's hash must equal
the one in ``reports/evaluation.json``, and the file must be a whole skops archive (evaluate
loaded these very bytes, and package loads them again). Then every threshold must hold.

The champion is the model committed at ``gate.baseline_rev`` (``main`` by default), fetched with
DVC's API and scored on the *current* test split, so both models are judged on the same rows
(with ``engine: dask`` partition by partition, as evaluate scored the candidate).
Only these cases leave the thresholds to decide alone, and ``reports/champion.json`` says which:
no such revision (a first run), a revision that does not track the model, a model in neither the
DVC cache nor a remote, the same model (on ``baseline_rev`` itself), and a champion that predicts
another target or task (after ``conveyor init`` retargeted the template). A champion that exists
but cannot be scored on this data (a contract column removed, a file refused by the trusted-types
check) is ``incompatible``: the model is rejected unless ``gate.incompatible_champion`` is
``thresholds_only``. Any other failure propagates: the gate never skips the comparison quietly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from conveyor import io
from conveyor.artifacts import Champion, ChampionStatus, Check, EvaluationRecord, GateVerdict, ModelIdentity
from conveyor.config import Config, GateConfig
from conveyor.errors import ClusterError, ConveyorError
from conveyor.model.registry import Task, higher_is_better
from conveyor.provenance import resolve_revision

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

__all__ = [
    "Absent",
    "GateRejected",
    "ModelMismatch",
    "champion_checks",
    "champion_scorer",
    "check_model",
    "decide",
    "find_champion",
    "run",
    "threshold_checks",
]


class GateRejected(ConveyorError):
    """The model did not pass the gate; the message lists why."""


class ModelMismatch(ConveyorError):
    """The model file is not the one evaluate scored, or it does not load."""


def threshold_checks(metrics: Mapping[str, float], cfg: GateConfig) -> list[Check]:
    """One check per bound in ``gate.thresholds``; a metric that is missing fails its check."""
    checks = []
    for name, bound in cfg.thresholds.items():
        value = metrics.get(name)
        if bound.min is not None:
            checks.append(_at_least("threshold", name, value, bound.min, None))
        if bound.max is not None:
            checks.append(_at_most("threshold", name, value, bound.max, None))
    return checks


def champion_checks(
    metrics: Mapping[str, float], baseline: Mapping[str, float], cfg: GateConfig, *, task: Task
) -> list[Check]:
    """Each metric in ``gate.compare`` (default: the thresholded ones) may regress by at most ``tolerance``."""
    checks = []
    for name in cfg.compare or tuple(cfg.thresholds):
        value, reference = metrics.get(name), baseline[name]
        if higher_is_better(task, name):
            checks.append(_at_least("champion", name, value, reference - cfg.tolerance, reference))
        else:
            checks.append(_at_most("champion", name, value, reference + cfg.tolerance, reference))
    return checks


CheckKind = Literal["threshold", "champion"]


def _at_least(kind: CheckKind, metric: str, value: float | None, bound: float, baseline: float | None) -> Check:
    passed = value is not None and value >= bound
    return Check(kind=kind, metric=metric, value=value, bound=bound, direction=">=", baseline=baseline, passed=passed)


def _at_most(kind: CheckKind, metric: str, value: float | None, bound: float, baseline: float | None) -> Check:
    passed = value is not None and value <= bound
    return Check(kind=kind, metric=metric, value=value, bound=bound, direction="<=", baseline=baseline, passed=passed)


def decide(evaluation: EvaluationRecord, champion: Champion, cfg: GateConfig) -> GateVerdict:
    """The verdict: every threshold and every champion check passed, and the champion was usable; pure."""
    checks = threshold_checks(evaluation.metrics, cfg)
    champion_ok = all(check.passed for check in champion.checks) and (
        champion.status != "incompatible" or cfg.incompatible_champion == "thresholds_only"
    )
    accepted = champion_ok and all(check.passed for check in checks)
    return GateVerdict(accepted=accepted, model_sha256=evaluation.model_sha256, checks=checks)


def find_champion(
    *,
    model_sha256: str,
    model_path: Path,
    card_path: Path,
    score_on_test: Callable[[Pipeline], Mapping[str, float]],
    metrics: Mapping[str, float],
    cfg: Config,
    root: Path,
) -> Champion:
    """Fetch the model committed at ``gate.baseline_rev``, score it with ``score_on_test`` and compare (see module doc).

    ``score_on_test`` gives a model's metrics on the test split (:func:`champion_scorer`): only a
    champion that is scored needs it.
    """
    rev = cfg.gate.baseline_rev

    def without(status: ChampionStatus, reason: str, champion_sha256: str | None = None) -> Champion:
        return Champion(
            rev=rev,
            status=status,
            model_sha256=champion_sha256,
            metrics=None,
            reason=reason,
            challenger_sha256=model_sha256,
        )

    fetched = _fetch(rev, model_path.as_posix(), card_path.as_posix(), root=root)
    if isinstance(fetched, Absent):
        return without(fetched.status, fetched.reason)
    data, identity = fetched
    champion_sha256 = None if data is None else hashlib.sha256(data).hexdigest()
    if champion_sha256 == model_sha256:
        return without("same_model", f"the model at {rev} is this same model: nothing to compare", champion_sha256)
    # Before the model file: after `conveyor init` the old model is seldom in the cache, and its
    # card (tracked in git) says all there is to say.
    predicts = None if identity is None else ModelIdentity.model_validate_json(identity)
    if predicts is not None and (predicts.task, predicts.target) != (cfg.task, cfg.data.target):
        reason = (
            f"the model at {rev} predicts {predicts.target!r} ({predicts.task}), this one {cfg.data.target!r} "
            f"({cfg.task}): nothing comparable, thresholds alone decide"
        )
        return without("other_target", reason, champion_sha256)
    if data is None:
        return without(
            "not_in_cache",
            f"the model committed at {rev} is in neither the DVC cache nor a remote "
            f"(`dvc pull {model_path.as_posix()}` on {rev} restores it); thresholds alone decide",
        )
    try:
        model = io.model_from_bytes(data, source=f"{model_path.as_posix()}@{rev}")
        baseline = dict(score_on_test(model))
    except ClusterError:
        raise  # the cluster failed, not the champion: no verdict on a model that was never scored
    except ConveyorError as exc:
        consequence = (
            "thresholds alone decide (gate.incompatible_champion: thresholds_only)"
            if cfg.gate.incompatible_champion == "thresholds_only"
            else "rejected; set gate.incompatible_champion: thresholds_only to let thresholds alone decide"
        )
        return without("incompatible", f"the model at {rev} cannot be scored on this data ({exc}); {consequence}")
    return Champion(
        rev=rev,
        status="scored",
        model_sha256=champion_sha256,
        metrics=baseline,
        reason=f"model at {rev} scored on the current test split",
        checks=champion_checks(metrics, baseline, cfg.gate, task=cfg.task),
        challenger_sha256=model_sha256,
    )


class Absent(NamedTuple):
    """Why there is no champion model to score: a documented no-champion case."""

    status: ChampionStatus
    reason: str


def _fetch(rev: str, path: str, card: str, *, root: Path) -> tuple[bytes | None, bytes | None] | Absent:
    """The model file (None when in no cache or remote) and its ``model.json`` at ``rev``, or why there is none."""
    from dvc.api import DVCFileSystem

    found = resolve_revision(rev, root)
    if found is None:
        return Absent("no_revision", f"no git revision {rev!r} here: first run, so thresholds alone decide")
    fs = DVCFileSystem(str(root), rev=found[1])
    try:
        if not fs.exists(path):
            return Absent("not_tracked", f"{rev} does not track {path}; thresholds alone decide")
        identity = _read_or_none(fs, card) if fs.exists(card) else None
        return _read_or_none(fs, path), identity
    finally:
        fs.close()


def _read_or_none(fs: Any, path: str) -> bytes | None:
    # A DVC-tracked file that is in neither the cache nor a remote reads as FileNotFoundError.
    try:
        return bytes(fs.read_bytes(path))
    except FileNotFoundError:
        return None


def champion_scorer(cfg: Config, test: Path) -> Callable[[Pipeline], dict[str, float]]:
    """A model's metrics on the ``test`` split, by the engine that scored the candidate on it.

    With ``engine: dask`` partition by partition on the cluster, as evaluate did (the test split
    is never held whole); else the pandas engine's :func:`conveyor.model.metrics.score`. Both are
    imported only once a champion is scored: without one, gate needs neither scikit-learn nor Dask.
    """

    def on_dask(model: Pipeline) -> dict[str, float]:
        from conveyor.engine.evaluate import score_test_split

        return score_test_split(cfg, model, test)

    def on_pandas(model: Pipeline) -> dict[str, float]:
        from conveyor.model.metrics import score

        return score(model, io.read_table(test), target=cfg.data.target, task=cfg.task)

    return on_dask if cfg.engine == "dask" else on_pandas


def check_model(model_path: Path, evaluation: EvaluationRecord, *, source: Path) -> str:
    """The model's SHA-256, after checking it is the file evaluate scored and a whole skops archive."""
    model_sha256 = io.file_sha256(model_path)
    if model_sha256 != evaluation.model_sha256:
        raise ModelMismatch(
            f"{model_path}: not the model evaluate scored ({source} names sha256 {evaluation.model_sha256[:12]}…, "
            f"the file has {model_sha256[:12]}…); run `dvc repro` so evaluate scores this model"
        )
    io.check_model_archive(model_path)
    return model_sha256


def run(
    cfg: Config,
    *,
    model_path: Path,
    card_path: Path,
    test: Path,
    evaluation: Path,
    out: Path,
    champion_out: Path,
) -> GateVerdict:
    """Decide, write ``champion_out`` then ``out``, then raise :class:`GateRejected` if not accepted."""
    record = io.read_artifact(evaluation, EvaluationRecord)
    if io.file_sha256(test) != record.test_sha256:
        raise ModelMismatch(f"{test}: not the test split evaluate scored ({evaluation}); run `dvc repro`")
    model_sha256 = check_model(model_path, record, source=evaluation)
    champion = find_champion(
        model_sha256=model_sha256,
        model_path=model_path,
        card_path=card_path,
        score_on_test=champion_scorer(cfg, test),
        metrics=record.metrics,
        cfg=cfg,
        root=Path.cwd(),
    )
    verdict = decide(record, champion, cfg.gate)
    io.write_artifact(champion, champion_out)
    io.write_artifact(verdict, out)
    if not verdict.accepted:
        failed = [*verdict.failed, *(check for check in champion.checks if not check.passed)]
        reasons = [f"  {check}" for check in failed]
        if champion.status == "incompatible" and cfg.gate.incompatible_champion == "reject":
            reasons.append(f"  champion: {champion.reason}")
        raise GateRejected(f"model rejected by the gate ({out}, {champion_out}):\n" + "\n".join(reasons))
    return verdict
