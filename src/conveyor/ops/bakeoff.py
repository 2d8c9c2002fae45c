"""The bake-off ``conveyor init`` runs: a linear model against gradient boosting, on the train split only.

Each candidate (:data:`CANDIDATES`) is the whole Conveyor pipeline (features + estimator), scored
by ``folds``-fold cross-validation (stratified for classification) on at most ``max_rows`` rows
of the train split, seeded: the same data gives the same scores and the same winner. The test
split is never read, so the gate's judgement stays unbiased.

Time-boxed: folds run in turn (the cheap linear model first) and none starts once ``budget_s``
seconds have gone; a candidate scored on fewer folds says so, one with none is ``skipped``.
The score is balanced accuracy (classification: every class counts, whatever its size) or r2
(regression); the winner is the best mean score.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from conveyor.config import Config, ModelConfig
from conveyor.contract import Contract
from conveyor.model.features import model_frame, resolve_features, target_values
from conveyor.model.registry import Task

__all__ = ["CANDIDATES", "METRIC", "BakeOff", "Candidate", "bake_off"]

# Valid params for each estimator, tuned by nobody: defaults that are good on tables of 1k-100k rows.
CANDIDATES: dict[Task, tuple[tuple[str, dict[str, Any]], ...]] = {
    "classification": (
        ("logistic_regression", {"C": 1.0, "max_iter": 1000}),
        ("hist_gradient_boosting", {"learning_rate": 0.1, "max_iter": 200, "max_leaf_nodes": 31}),
        ("lightgbm", {"n_estimators": 200, "learning_rate": 0.05, "num_leaves": 31, "verbose": -1}),
    ),
    "regression": (
        ("ridge", {"alpha": 1.0}),
        ("hist_gradient_boosting", {"learning_rate": 0.1, "max_iter": 200, "max_leaf_nodes": 31}),
        ("lightgbm", {"n_estimators": 200, "learning_rate": 0.05, "num_leaves": 31, "verbose": -1}),
    ),
}
METRIC: dict[Task, str] = {"classification": "balanced_accuracy", "regression": "r2"}


@dataclass(frozen=True)
class Candidate:
    """One estimator's cross-validated result: mean and spread of the score over the folds it ran."""

    estimator: str
    params: dict[str, Any]
    scores: tuple[float, ...]
    seconds: float
    folds: int

    @property
    def score(self) -> float | None:
        """The mean fold score; None when no fold ran (the budget ran out first)."""
        return float(np.mean(self.scores)) if self.scores else None

    @property
    def std(self) -> float:
        """The standard deviation of the fold scores (0 for fewer than two)."""
        return float(np.std(self.scores, ddof=1)) if len(self.scores) > 1 else 0.0

    def describe(self, metric: str) -> str:
        """One line for params.yaml's comments: ``hist_gradient_boosting: balanced_accuracy 0.912 ± 0.010 (5 folds, 3.1 s)``."""
        if self.score is None:
            return f"{self.estimator}: skipped (the budget ran out before it started)"
        partial = "" if len(self.scores) == self.folds else f" of {self.folds}"
        return (
            f"{self.estimator}: {metric} {self.score:.3f} ± {self.std:.3f} "
            f"({len(self.scores)}{partial} folds, {self.seconds:.1f} s)"
        )


@dataclass(frozen=True)
class BakeOff:
    """Every candidate's result and the winner (the best mean score)."""

    metric: str
    rows: int
    candidates: tuple[Candidate, ...]
    seconds: float
    winner: Candidate = field(init=False)

    def __post_init__(self) -> None:
        scored = [c for c in self.candidates if c.score is not None]
        if not scored:
            raise ValueError("no candidate was scored")
        object.__setattr__(self, "winner", max(scored, key=lambda c: c.score if c.score is not None else -np.inf))


def bake_off(
    train: pd.DataFrame,
    cfg: Config,
    contract: Contract,
    *,
    budget_s: float = 45.0,
    folds: int = 3,
    max_rows: int = 20_000,
    seed: int = 42,
    candidates: tuple[tuple[str, Mapping[str, Any]], ...] | None = None,
) -> BakeOff:
    """Cross-validate each candidate on ``train`` (the train split, target included) as ``cfg`` builds it.

    ``cfg`` gives the task, target, features and ``model.target_transform``; each candidate
    replaces ``model.estimator`` and ``model.params``. The first fold of the first candidate
    always runs, so there is a winner however small the budget.
    """
    from sklearn.model_selection import KFold, StratifiedKFold
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    from conveyor.model.pipeline import build_pipeline

    start = time.perf_counter()
    task, metric = cfg.task, METRIC[cfg.task]
    sample = train.sample(n=max_rows, random_state=seed) if len(train) > max_rows else train
    spec = resolve_features(cfg.features, contract, target=cfg.data.target)
    x = model_frame(sample, spec).reset_index(drop=True)
    y = target_values(sample, cfg.data.target, task=task)
    if task == "classification":
        counts = pd.Series(y).value_counts()
        splits = max(2, min(folds, int(counts.min())))
        splitter: Any = StratifiedKFold(n_splits=splits, shuffle=True, random_state=seed)
    else:
        splits = folds
        splitter = KFold(n_splits=splits, shuffle=True, random_state=seed)
    fold_rows = list(splitter.split(x, y))
    results: list[Candidate] = []
    # One thread: on a shared machine OpenMP's spinning threads cost far more than they give
    # (a 13k-row HistGradientBoosting fit took 1.2 s on one thread, 116 s on two, load 9 on 2 cores).
    with threadpool_limits(limits=1):
        for estimator, params in candidates or CANDIDATES[task]:
            # lightgbm runs its own OpenMP pool: one thread for the bake-off only, not in the params written.
            threads = {"n_jobs": 1} if estimator == "lightgbm" else {}
            model = ModelConfig(
                estimator=estimator, params=dict(params) | threads, target_transform=cfg.model.target_transform
            )
            began, scores = time.perf_counter(), list[float]()
            for train_rows, test_rows in fold_rows:
                elapsed = time.perf_counter() - start
                # Stop before a fold that would end past the budget (judged by this candidate's
                # folds so far); the very first fold always runs, so there is a winner.
                per_fold = (time.perf_counter() - began) / len(scores) if scores else 0.0
                if (results or scores) and elapsed + per_fold > budget_s:
                    break
                pipeline = build_pipeline(spec, cfg.features, model, task=task, seed=seed)
                pipeline.fit(x.iloc[train_rows], y[train_rows])
                scores.append(_score(pipeline, x.iloc[test_rows], y[test_rows], task=task, metric=metric))
            seconds = time.perf_counter() - began
            results.append(Candidate(estimator, dict(params), tuple(scores), seconds, splits))
    return BakeOff(metric=metric, rows=len(sample), candidates=tuple(results), seconds=time.perf_counter() - start)


def _score(pipeline: Any, x: pd.DataFrame, y: NDArray[Any], *, task: Task, metric: str) -> float:
    """``metric`` of the fitted ``pipeline`` on one held-out fold, as evaluate computes it."""
    from conveyor.model.metrics import classification_metrics, regression_metrics

    predicted = pipeline.predict(x)
    if task == "classification":
        values = classification_metrics(y, predicted, pipeline.predict_proba(x), pipeline.classes_)
    else:
        values = regression_metrics(y, predicted)
    return values[metric]
