"""The tune stage: what it costs disabled and enabled, parallel trials, and what tuning buys.

- Disabled: the ``conveyor tune`` process (it only copies ``model.params``) and a forced
  ``dvc repro --single-item tune``, against ``dvc status`` (DVC's fixed cost) as baseline.
- Enabled: 30 trials of 5-fold cross-validation for logistic regression on the default data,
  with ``n_jobs: 1`` and ``n_jobs: 2`` (a ratio, since absolute times drift on a shared machine),
  and the held-out study below in one and two processes.
- Held-out value: on a generated noisy binary dataset, the test metric of lightgbm with its
  default params against lightgbm with the params a 30-trial study picked on the train split.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from pipeline import _run, _seconds, fresh_copy
from sklearn.datasets import make_classification

from conveyor.config import Config, load_config, parse_config
from conveyor.contract import infer_contract
from conveyor.model.metrics import score
from conveyor.stages import tune
from conveyor.stages.split import split
from conveyor.stages.train import train, with_tuned_params

ROOT = Path(__file__).resolve().parent.parent
TRIALS = 30
FOLDS = 5


def _tune_params(repo: Path, **tune_settings: Any) -> Path:
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    raw["tune"] |= tune_settings
    path = repo / f"params-{'-'.join(f'{k}{v}' for k, v in tune_settings.items())}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _tune_seconds(repo: Path, params: Path) -> float:
    return _seconds(
        repo, "conveyor", "tune", f"--params={params}", "--data=data/split/train.parquet",
        f"--out={repo / 'bench-tuned.json'}", f"--report={repo / 'bench-tuning.json'}", f"--plots={repo / 'bench-plots'}",
    )  # fmt: skip


def measure_stage(runs: int) -> dict[str, list[float]]:
    """Seconds per run: the disabled stage, the forced single-stage repro, ``dvc status``, enabled studies."""
    timings: dict[str, list[float]] = {
        "disabled_process": [], "disabled_repro": [], "dvc_status": [], "trials_n_jobs_1": [], "trials_n_jobs_2": [],
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-tune-") as tmp:
        repo = fresh_copy(Path(tmp), "repo")
        _run(repo, "dvc", "repro", "split")
        disabled = _tune_params(repo, enabled=False)
        one = _tune_params(repo, enabled=True, trials=TRIALS, cv_folds=FOLDS, n_jobs=1)
        two = _tune_params(repo, enabled=True, trials=TRIALS, cv_folds=FOLDS, n_jobs=2)
        for _ in range(runs):
            timings["disabled_process"].append(_tune_seconds(repo, disabled))
            timings["disabled_repro"].append(_seconds(repo, "dvc", "repro", "--force", "--single-item", "tune"))
            timings["dvc_status"].append(_seconds(repo, "dvc", "status"))
            timings["trials_n_jobs_1"].append(_tune_seconds(repo, one))
            timings["trials_n_jobs_2"].append(_tune_seconds(repo, two))
    return timings


def noisy_binary(rows: int = 2000) -> pd.DataFrame:
    """A binary table with 20 numeric features (6 informative) and 15% of labels flipped."""
    x, y = make_classification(
        n_samples=rows, n_features=20, n_informative=6, n_redundant=4, flip_y=0.15, class_sep=0.8, random_state=0
    )
    df = pd.DataFrame(x, columns=[f"x{i:02d}" for i in range(x.shape[1])])
    df["label"] = pd.Series(y).map({0: "no", 1: "yes"})
    return df


def held_out(params: Config) -> dict[str, Any]:
    """Test metrics of untuned and tuned lightgbm on :func:`noisy_binary`; the study sees the train split only."""
    df = noisy_binary()
    contract = infer_contract(df, target="label", max_categories=50)
    raw = params.model_dump(mode="json", by_alias=True)
    raw["data"] |= {"target": "label"}
    raw["features"] |= {"drop": []}
    # One thread per fit: the study itself is the unit of work here, and the machine is shared.
    raw["model"] = {"estimator": "lightgbm", "params": {"random_state": 0, "verbose": -1, "n_jobs": 1}}
    raw["tune"] |= {"enabled": True, "trials": TRIALS, "cv_folds": FOLDS}
    cfg = parse_config(raw, source="benchmark params")
    train_df, test_df = split(df, cfg.split, target="label", stratify=True)
    started = time.perf_counter()
    outcome = tune.tune(train_df, cfg, contract)
    seconds = time.perf_counter() - started
    # The same study in two processes: long enough (tens of seconds) for the second process's
    # start-up to be paid back, unlike the few seconds of logistic regression above.
    started = time.perf_counter()
    tune.tune(train_df, cfg.model_copy(update={"tune": cfg.tune.model_copy(update={"n_jobs": 2})}), contract)
    parallel_seconds = time.perf_counter() - started
    untuned = score(train(train_df, cfg, contract), test_df, target="label", task="classification")
    tuned_cfg = with_tuned_params(cfg, outcome.tuned)
    tuned = score(train(train_df, tuned_cfg, contract), test_df, target="label", task="classification")
    return {
        "rows": {"train": len(train_df), "test": len(test_df)},
        "metric": cfg.tune_metric,
        "study_seconds": seconds,
        "parallel_study_seconds": parallel_seconds,
        "cv_best": outcome.report.best_value,
        "cv_std": outcome.report.best_std,
        "best_params": outcome.report.best_params,
        "untuned": untuned,
        "tuned": tuned,
    }


def main(results_dir: Path, *, runs: int = 3) -> str:
    """Run the tuning benchmark; write raw figures to ``results_dir`` and return a Markdown section."""
    timings = measure_stage(runs)
    value = held_out(load_config(ROOT / "params.yaml"))
    (results_dir / "tuning.json").write_text(json.dumps({"timings": timings, "held_out": value}, indent=2))
    median = {name: statistics.median(values) for name, values in timings.items()}
    rows = [
        ("`conveyor tune`, disabled (one process)", median["disabled_process"], "", "< 1 s"),
        (
            "`dvc repro --force --single-item tune`, disabled",
            median["disabled_repro"],
            f"{median['disabled_repro'] / median['dvc_status']:.2f}x `dvc status`",
            "",
        ),
        ("baseline: `dvc status`", median["dvc_status"], "1.00x", ""),
        (f"{TRIALS} trials, {FOLDS}-fold CV, logistic regression, `n_jobs: 1`", median["trials_n_jobs_1"], "1.00x", "< 60 s"),
        (
            "the same, `n_jobs: 2`",
            median["trials_n_jobs_2"],
            f"{median['trials_n_jobs_2'] / median['trials_n_jobs_1']:.2f}x `n_jobs: 1`",
            "",
        ),
    ]  # fmt: skip
    metric = value["metric"]
    shown = ("f1_macro", "roc_auc", "log_loss")
    lines = [
        f"## Tuning (default data, median of {runs} runs)",
        "",
        "| scenario | seconds | ratio | target |",
        "|---|---|---|---|",
        *(f"| {name} | {seconds:.2f} | {ratio} | {target} |" for name, seconds, ratio, target in rows),
        "",
        f"Held out: lightgbm on a generated noisy binary table ({value['rows']['train']} train / "
        f"{value['rows']['test']} test rows, 15% of labels flipped). The study ({TRIALS} trials, {FOLDS}-fold CV "
        f"of {metric} on the train split, {value['study_seconds']:.1f} s) reached {value['cv_best']:.4f} "
        f"± {value['cv_std']:.4f}. With `n_jobs: 2` the same study took {value['parallel_study_seconds']:.1f} s "
        f"({value['parallel_study_seconds'] / value['study_seconds']:.2f}x).",
        "",
        "| test split | " + " | ".join(shown) + " |",
        "|---|" + "---|" * len(shown),
        *(
            f"| {name} | " + " | ".join(f"{value[name][m]:.4f}" for m in shown) + " |"
            for name in ("untuned", "tuned")
        ),
        "",
        "Chosen params: " + ", ".join(f"`{k}={v:.4g}`" if isinstance(v, float) else f"`{k}={v}`" for k, v in value["best_params"].items()),
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    print(main(out))
