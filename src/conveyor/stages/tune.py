"""tune: search the estimator's params with Optuna, scoring each trial by cross-validation on the train split.

The stage sees the train split only (``dvc.yaml`` gives it nothing else), so the test split stays
a held-out judge for evaluate and the gate. Each trial fits the whole Conveyor pipeline (features
+ estimator, ``model.params`` with the trial's values over them) on ``tune.cv_folds`` folds,
stratified for classification, and scores the held-out fold with :mod:`conveyor.model.metrics`; a trial
whose running mean falls below the median of earlier trials at the same fold is pruned. The first
trial is ``model.params`` itself, so the result never scores worse in CV than the params it replaces.

The sampler is TPE seeded with ``tune.seed``: with ``n_jobs: 1`` and no ``storage`` the same data
and params give the same trials and the same best params. With ``storage`` the study lives in a
database that several processes fill together: each stops once the study holds ``tune.trials``
trials, and the result is computed from the stored trials, so any process run later reproduces
it without running a trial.

With ``tune.enabled: false`` the stage writes ``model.params`` through unchanged. On that path this
module imports neither Optuna, scikit-learn, pandas nor dvclive (each a second or more), so the
stage costs about what the ``conveyor`` command itself does to start.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import secrets
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from conveyor import io
from conveyor.artifacts import Direction, Trial, TrialStateName, TunedParams, TuningReport
from conveyor.config import Config, Distribution
from conveyor.errors import ConveyorError

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from conveyor.contract import Contract

__all__ = [
    "Outcome",
    "Place",
    "TuneError",
    "check_folds",
    "cross_validate",
    "direction",
    "importance",
    "incumbent_params",
    "open_storage",
    "open_study",
    "optimize",
    "passthrough",
    "progress_wanted",
    "run",
    "study_name",
    "suggest",
    "summarize",
    "train_sample",
    "tune",
    "worker",
    "write_plots",
]

# Trials scored before pruning starts, and folds a trial always completes before it can be pruned.
PRUNER_STARTUP_TRIALS = 5
PRUNER_WARMUP_FOLDS = 1


class TuneError(ConveyorError):
    """The study cannot run or produced nothing usable; the message names the setting to change."""


@dataclass(frozen=True)
class Outcome:
    """What one run of the stage produced, and how long it took (for the summary line only)."""

    tuned: TunedParams
    report: TuningReport
    new_trials: int
    seconds: float


def passthrough(cfg: Config) -> tuple[TunedParams, TuningReport]:
    """The artifacts of a disabled stage: ``model.params`` as they are, no study."""
    params = dict(cfg.model.params)
    return (
        TunedParams(tuned=False, estimator=cfg.model.estimator, params=params),
        TuningReport(enabled=False, estimator=cfg.model.estimator, base_params=params, best_params=params),
    )


def direction(cfg: Config) -> Direction:
    """``maximize`` or ``minimize``: the direction of the tuned metric in the metric registry."""
    from conveyor.model.registry import higher_is_better

    return "maximize" if higher_is_better(cfg.task, cfg.tune_metric) else "minimize"


def study_name(df: pd.DataFrame, cfg: Config) -> str:
    """A name that changes whenever the objective does: the data, the features, the model, the search.

    ``trials``, ``timeout_s``, ``n_jobs`` and ``storage`` are left out: raising ``trials`` continues
    the same study in a shared storage instead of starting over.
    """
    from conveyor.provenance import params_hash

    objective = {
        "data": io.table_hash(df),
        "target": cfg.data.target,
        "task": cfg.task,
        "features": cfg.features.recipe(),
        "model": cfg.model.recipe(),
        "metric": cfg.tune_metric,
        "cv_folds": cfg.tune.cv_folds,
        "seed": cfg.tune.seed,
        "space": {
            k: v.model_dump(mode="json") for k, v in cfg.tune.search_space(cfg.task, cfg.model.estimator).items()
        },
    }
    return f"conveyor-{params_hash(objective)[:16]}"


def suggest(trial: optuna.Trial, name: str, distribution: Distribution) -> Any:
    """The trial's value for parameter ``name``, drawn from ``distribution``."""
    if distribution.choices is not None:
        return trial.suggest_categorical(name, list(distribution.choices))
    low, high = distribution.bounds
    if distribution.is_integer:
        return trial.suggest_int(name, int(low), int(high), log=distribution.log)
    return trial.suggest_float(name, float(low), float(high), log=distribution.log)


def cross_validate(df: pd.DataFrame, cfg: Config, contract: Contract, trial: optuna.Trial) -> float:
    """The trial's mean fold score; reports each running mean so that the pruner can stop it early."""
    import optuna
    from sklearn.model_selection import KFold, StratifiedKFold

    from conveyor.model.features import model_frame, resolve_features, target_values
    from conveyor.model.metrics import score
    from conveyor.model.pipeline import build_pipeline

    space = cfg.tune.search_space(cfg.task, cfg.model.estimator)
    params = dict(cfg.model.params) | {name: suggest(trial, name, d) for name, d in space.items()}
    model = cfg.model.model_copy(update={"params": params})
    spec = resolve_features(cfg.features, contract, target=cfg.data.target)
    y = target_values(df, cfg.data.target, task=cfg.task)
    splitter = StratifiedKFold if cfg.task == "classification" else KFold
    folds = splitter(n_splits=cfg.tune.cv_folds, shuffle=True, random_state=cfg.tune.seed).split(df, y)
    values: list[float] = []
    for fold, (fit_rows, score_rows) in enumerate(folds):
        pipeline = build_pipeline(spec, cfg.features, model, task=cfg.task, seed=cfg.split.seed)
        pipeline.fit(model_frame(df.iloc[fit_rows], spec), y[fit_rows])
        metrics = score(pipeline, df.iloc[score_rows], target=cfg.data.target, task=cfg.task)
        values.append(metrics[cfg.tune_metric])
        trial.report(statistics.fmean(values), fold)
        if trial.should_prune():
            raise optuna.TrialPruned(f"fold {fold}: running mean {statistics.fmean(values):.4f}")
    trial.set_user_attr("fold_values", values)
    return statistics.fmean(values)


def worker() -> str:
    """Who runs a trial (host, process, run), stored with it: workers sharing a study are told apart."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _sampler_seed(cfg: Config, index: int) -> int:
    # Workers must not draw the same points. The stage's own processes (tune.n_jobs) are told
    # apart by their index; processes sharing a storage do not know of each other, so each mixes
    # in who it is.
    if cfg.tune.storage is None:
        return cfg.tune.seed + index
    return hash((cfg.tune.seed, worker())) % 2**32


@dataclass(frozen=True)
class Place:
    """Where a study lives, in a form any process can open: in memory, an RDB URL, or a journal file."""

    name: str
    url: str | None = None
    journal: Path | None = None

    def storage(self) -> optuna.storages.BaseStorage | None:
        """The study's storage (None: in this process's memory)."""
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        if self.url is not None:
            return open_storage(self.url)
        if self.journal is not None:
            return JournalStorage(JournalFileBackend(str(self.journal)))
        return None


# Workers starting together on an empty database both create Optuna's tables; PostgreSQL lets
# one win and refuses the other with an IntegrityError. The loser finds the tables on a retry.
STORAGE_ATTEMPTS = 4


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's storage at ``url``, its tables created if need be; :class:`TuneError` if it cannot be reached."""
    import optuna
    import sqlalchemy

    from conveyor.urls import redact_url

    for attempt in range(1, STORAGE_ATTEMPTS + 1):
        try:
            return optuna.storages.RDBStorage(url)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == STORAGE_ATTEMPTS:
                raise
            time.sleep(0.2 * attempt)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.ArgumentError, ImportError) as exc:
            first_line = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0]
            raise TuneError(f"tune.storage: cannot open {redact_url(url)}: {first_line}") from None
    raise AssertionError("unreachable: the last attempt returns or raises")


def open_study(place: Place, cfg: Config, *, index: int = 0) -> optuna.Study:
    """The study at ``place``: created, or opened if another run or worker created it."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        study_name=place.name,
        storage=place.storage(),
        sampler=optuna.samplers.TPESampler(seed=_sampler_seed(cfg, index)),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=PRUNER_WARMUP_FOLDS),
        direction=direction(cfg),
        load_if_exists=True,
    )


def optimize(study: optuna.Study, df: pd.DataFrame, cfg: Config, contract: Contract, *, progress: bool) -> int:
    """Run trials until the study holds ``tune.trials`` (or ``timeout_s`` passes); return how many this process ran."""
    import optuna
    from optuna.trial import TrialState
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    # A trial enqueued but not yet run (model.params, see tune) is one of those to run.
    begun = [t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING]
    remaining = cfg.tune.trials - len(begun)
    if remaining <= 0:
        return 0
    me = worker()

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", me)
        return cross_validate(df, cfg, contract, trial)

    # Parallel trials are processes: each keeps to one native thread (BLAS, OpenMP) so that
    # n_jobs processes use n_jobs cores rather than fighting over them.
    threads = 1 if cfg.tune.n_jobs > 1 else None
    with warnings.catch_warnings(), threadpool_limits(limits=threads):
        # Part of a search: a trial whose solver stops early is scored like any other, not reported.
        warnings.simplefilter("ignore", ConvergenceWarning)
        study.optimize(
            objective,
            n_trials=remaining,
            timeout=cfg.tune.timeout_s,
            # Other workers add trials to a shared study too: stop when it holds enough.
            callbacks=[optuna.study.MaxTrialsCallback(cfg.tune.trials, states=None)],
            show_progress_bar=progress,
        )
    return sum(1 for t in study.trials if t.user_attrs.get("worker") == me and t.state != TrialState.RUNNING)


def incumbent_params(cfg: Config) -> dict[str, Any]:
    """The values ``model.params`` gives the searched parameters, where they lie inside the space."""
    space = cfg.tune.search_space(cfg.task, cfg.model.estimator)
    return {
        name: cfg.model.params[name]
        for name, distribution in space.items()
        if name in cfg.model.params and distribution.contains(cfg.model.params[name])
    }


def importance(study: optuna.Study, seed: int) -> dict[str, float]:
    """Each searched parameter's share of the variation in the score (fANOVA), largest first."""
    import optuna
    from optuna.trial import TrialState

    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if len(complete) < 2:
        return {}
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    return {k: float(v) for k, v in optuna.importance.get_param_importances(study, evaluator=evaluator).items()}


def summarize(study: optuna.Study, cfg: Config) -> tuple[TunedParams, TuningReport]:
    """The artifacts for ``study``, computed from its stored trials alone."""
    from optuna.trial import TrialState

    trials = [
        Trial(
            number=t.number,
            state=cast("TrialStateName", t.state.name.lower()),
            params=t.params,
            value=t.value if t.state == TrialState.COMPLETE else None,
            fold_values=t.user_attrs.get("fold_values", []),
        )
        for t in sorted(study.trials, key=lambda t: t.number)
    ]
    if not any(t.state == TrialState.COMPLETE for t in study.trials):
        raise TuneError(
            f"tune: none of the study's {len(trials)} trial(s) completed; raise tune.trials or tune.timeout_s"
        )
    best = study.best_trial
    folds = best.user_attrs["fold_values"]
    params = dict(cfg.model.params) | best.params
    tuned = TunedParams(
        tuned=True,
        estimator=cfg.model.estimator,
        params=params,
        metric=cfg.tune_metric,
        best_value=best.value,
        trials=len(trials),
    )
    report = TuningReport(
        enabled=True,
        study=study.study_name,
        estimator=cfg.model.estimator,
        metric=cfg.tune_metric,
        direction=direction(cfg),
        cv_folds=cfg.tune.cv_folds,
        base_params=dict(cfg.model.params),
        best_params=params,
        best_value=best.value,
        best_std=statistics.pstdev(folds),
        best_trial=best.number,
        importance=importance(study, cfg.tune.seed),
        trials=trials,
    )
    return tuned, report


def check_folds(df: pd.DataFrame, cfg: Config) -> None:
    """Raise :class:`TuneError` naming ``tune.cv_folds`` when the train split cannot be cut into that many folds."""
    folds = cfg.tune.cv_folds
    if len(df) < folds:
        raise TuneError(f"tune.cv_folds: {folds} folds need at least {folds} train rows, found {len(df)}")
    if cfg.task == "classification":
        counts = df[cfg.data.target].astype(str).value_counts()
        if counts.min() < folds:
            raise TuneError(
                f"tune.cv_folds: {folds} stratified folds need at least {folds} train rows of each class; "
                f"{counts.idxmin()!r} has {counts.min()}"
            )


def _worker(place: Place, df: pd.DataFrame, cfg: Config, contract: Contract, index: int) -> int:
    """One of the stage's extra processes (``tune.n_jobs``): trials until the shared study holds enough."""
    return optimize(open_study(place, cfg, index=index), df, cfg, contract, progress=False)


def tune(df: pd.DataFrame, cfg: Config, contract: Contract, *, progress: bool = False) -> Outcome:
    """Tune on ``df`` (the train split, target included) and return the artifacts.

    With ``tune.n_jobs`` above 1, that many processes run trials (this one and ``n_jobs - 1``
    spawned ones): scikit-learn's Python-level work holds the GIL, so threads would take turns. They
    share the study through ``tune.storage``, or else a journal file that lives as long as the run.
    """
    check_folds(df, cfg)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="conveyor-tune-") as scratch:
        url = cfg.tune.storage_url
        journal = Path(scratch) / "study.journal" if url is None and cfg.tune.n_jobs > 1 else None
        place = Place(study_name(df, cfg), url=url, journal=journal)
        study = open_study(place, cfg)
        incumbent = incumbent_params(cfg)
        if incumbent and len(study.trials) < cfg.tune.trials:
            # The first trial is model.params itself: the study never picks params that score
            # worse in CV than the ones it replaces, and on a tie (the best trial is the first to
            # reach the best value) the current params stay. Workers of a shared study skip it.
            study.enqueue_trial(incumbent, skip_if_exists=True)
        ran = 0
        if cfg.tune.n_jobs > 1:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(cfg.tune.n_jobs - 1, mp_context=context) as pool:
                others = [pool.submit(_worker, place, df, cfg, contract, index) for index in range(1, cfg.tune.n_jobs)]
                ran = optimize(study, df, cfg, contract, progress=progress)
                ran += sum(other.result() for other in others)
        else:
            ran = optimize(study, df, cfg, contract, progress=progress)
        tuned, report = summarize(study, cfg)
    return Outcome(tuned, report, ran, time.perf_counter() - started)


# The two plots under <plots>/plots/custom/, as dvc.yaml declares them.
HISTORY_PLOT = "history/study"
IMPORTANCE_PLOT = "importance/params"


def write_plots(report: TuningReport, out: Path) -> None:
    """dvclive plots under ``out``: the score of each trial (with the best so far) and the parameter importances.

    Without trials (tuning disabled) both folders hold the placeholder, which ``dvc plots``
    shows as nothing: present rather than absent, so that git keeps the folder and a fresh clone
    does not rerun the stage to recreate it. That path writes no plot: importing dvclive takes 2 s.
    """
    if not report.trials:
        written = set()
        for name in (HISTORY_PLOT, IMPORTANCE_PLOT):
            folder = out / "plots" / "custom" / Path(name).parent
            io.write_plot_placeholder(folder, "No plot: tuning is off (tune.enabled: false).")
            written.add(folder / io.PLOT_PLACEHOLDER)
        # The folder persists (dvc.yaml): the placeholders are all it holds afterwards.
        io.remove_others(out, keep=written)
        return
    better = max if report.direction == "maximize" else min
    history, best = [], -math.inf if report.direction == "maximize" else math.inf
    for trial in report.trials:
        if trial.value is not None:
            best = better(best, trial.value)
            history.append({"trial": trial.number, "value": trial.value, "best": best})
    try:
        _log_with_dvclive(history, report, out)
    except (OSError, sqlite3.Error) as exc:
        reason = exc if isinstance(exc, OSError) else OSError(0, str(exc))
        raise io.disk_error(out, reason) from None


def _log_with_dvclive(history: list[dict[str, float]], report: TuningReport, out: Path) -> None:
    from dvclive.live import Live

    with Live(dir=str(out), dvcyaml=None, save_dvc_exp=False, report=None) as live:
        live.log_plot(HISTORY_PLOT, history, x="trial", y="value", template="scatter", title="Tuning: score per trial")
        live.log_plot(
            IMPORTANCE_PLOT,
            [{"param": k, "importance": v} for k, v in report.importance.items()],
            x="importance",
            y="param",
            template="bar_horizontal",
            title="Tuning: parameter importance (fANOVA)",
        )


def run(cfg: Config, *, data: Path, out: Path, report: Path, plots: Path, progress: bool = False) -> Outcome:
    """Tune on the train split at ``data`` (or pass ``model.params`` through); write the artifacts."""
    if cfg.tune.enabled:
        rows, train_rows = train_sample(data, cfg)
        outcome = tune(rows, cfg, io.read_contract(cfg.data.schema_path), progress=progress)
        counted = outcome.report.model_copy(update={"rows": len(rows), "train_rows": train_rows})
        outcome = replace(outcome, report=counted)
    else:
        outcome = Outcome(*passthrough(cfg), new_trials=0, seconds=0.0)
    io.write_artifact(outcome.tuned, out)
    io.write_artifact(outcome.report, report)
    write_plots(outcome.report, plots)
    return outcome


def train_sample(data: Path, cfg: Config) -> tuple[pd.DataFrame, int]:
    """The train rows to cross-validate on, and how many the split has: all of them, or a sample of
    ``tune.max_rows`` drawn with ``tune.seed`` (picked out of the Parquet batch by batch)."""
    if cfg.tune.max_rows is None:
        df = io.read_table(data)
        return df, len(df)
    return io.read_sample(data, columns=None, rows=cfg.tune.max_rows, seed=cfg.tune.seed)


def progress_wanted() -> bool:
    """Show Optuna's progress bar only to a person at a terminal, not in logs."""
    return sys.stderr.isatty()
