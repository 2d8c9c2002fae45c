"""The tune stage: the ``tune`` section's checks, the study on the train split only, reproducibility,
the disabled pass-through, and train fitting the tuned params."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
import yaml

from conveyor import cli, io
from conveyor.artifacts import TunedParams, TuningReport
from conveyor.bundle import read_package_report
from conveyor.config import Config
from conveyor.contract import Contract
from conveyor.errors import ArtifactError, ConfigError
from conveyor.model.registry import ESTIMATORS, check_estimator, default_space
from conveyor.stages import train, tune
from conveyor.stages.split import split
from tests.conftest import (
    BIN,
    ROOT,
    clone_of,
    commit_all,
    configured,
    edit_params,
    free_port,
    labelled,
    make,
    regression,
    run,
    stages_from,
    stages_run,
    tool_env,
)
from tests.stages.conftest import running_postgres

# Small enough to run in a second or two, large enough for TPE and the pruner to act.
SMALL = {"enabled": True, "trials": 8, "cv_folds": 3, "seed": 7}


def tuning(params: Config, **changes: Any) -> Config:
    """The repository's params with tuning enabled on a small study, plus ``changes``."""
    return configured(params, tune=SMALL | changes)


@pytest.fixture(scope="module")
def train_split(params: Config) -> pd.DataFrame:
    """The default data's train split, as the split stage writes it."""
    return split(io.read_source(str(ROOT / "data" / "penguins.csv")), params.split, target="species", stratify=True)[0]


# --- the tune section -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"C": {"low": 1.0, "high": 0.1}}, r"tune\.space\.C: low \(1\.0\) must be below high \(0\.1\)"),
        (
            {"C": {"low": 0.0, "high": 1.0, "log": True}},
            r"tune\.space\.C: a log scale \(log true\) needs low > 0, got 0\.0",
        ),
        ({"C": {"low": 0.1}}, r"tune\.space\.C: expected \{low, high\}"),
        ({"C": {"low": 0.1, "high": 1.0, "choices": [1]}}, r"tune\.space\.C: expected either"),
        ({"penalty": {"choices": []}}, r"tune\.space\.penalty\.choices"),
        ({"n_trees": {"low": 1, "high": 5}}, r"tune\.space\.n_trees: not a parameter of LogisticRegression"),
        ({"C": {"low": 0.1, "high": 1.0, "step": 0.1}}, r"tune\.space\.C\.step: unknown key; expected one of"),
    ],
)
def test_a_bad_space_names_its_key(params: Config, space: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        tuning(params, space=space)


def test_an_unknown_metric_names_the_key(params: Config) -> None:
    with pytest.raises(ConfigError, match=r"tune\.metric\.rmse: unknown metric for task classification"):
        tuning(params, metric="rmse")


def test_the_metric_defaults_to_the_gates_first_compared_metric(params: Config) -> None:
    assert params.gate.compare[0] == "f1_macro"
    assert params.tune_metric == "f1_macro"
    assert configured(params, gate={"compare": ["log_loss", "f1_macro"]}).tune_metric == "log_loss"
    assert configured(params, gate={"compare": []}).tune_metric == "f1_macro"
    assert tuning(params, metric="roc_auc").tune_metric == "roc_auc"


@pytest.mark.parametrize("case", [(t, n) for t, names in ESTIMATORS.items() for n in names], ids="-".join)
def test_every_estimator_has_a_default_space_of_its_own_parameters(case: tuple[Any, str]) -> None:
    task, name = case
    assert default_space(task, name)
    check_estimator(task, name, default_space(task, name), where="tune.space")


def test_a_plain_path_for_storage_means_a_sqlite_file(params: Config) -> None:
    assert tuning(params, storage="reports/optuna.db").tune.storage_url == "sqlite:///reports/optuna.db"
    url = "postgresql+psycopg://u:p@host/db"
    assert tuning(params, storage=url).tune.storage_url == url


# --- the study ----------------------------------------------------------------------------------


def test_a_seeded_study_is_reproducible_and_the_seed_matters(
    params: Config, contract: Contract, train_split: pd.DataFrame
) -> None:
    first = tune.tune(train_split, tuning(params), contract)
    again = tune.tune(train_split, tuning(params), contract)
    assert again.report == first.report
    assert again.tuned == first.tuned
    other = tune.tune(train_split, tuning(params, seed=8), contract)
    assert [t.params for t in other.report.trials] != [t.params for t in first.report.trials]


def test_the_study_searches_the_space_and_prunes(params: Config, contract: Contract, train_split: pd.DataFrame) -> None:
    outcome = tune.tune(train_split, tuning(params, trials=16), contract)
    report, tuned = outcome.report, outcome.tuned
    assert len(report.trials) == 16
    assert outcome.new_trials == 16
    states = {t.state for t in report.trials}
    assert states <= {"complete", "pruned"}
    assert "pruned" in states  # C spans 1e-3..1e2: the smallest values are hopeless after one fold
    low, high = (
        default_space("classification", "logistic_regression")["C"]["low"],
        default_space("classification", "logistic_regression")["C"]["high"],
    )
    assert all(low <= t.params["C"] <= high for t in report.trials)
    # The first trial is model.params itself; a later one replaces it only by scoring better.
    assert report.trials[0].params == {"C": 1.0}
    complete = [t for t in report.trials if t.state == "complete"]
    assert report.trials[0].state == "complete"
    assert report.best_value is not None
    assert report.trials[0].value is not None
    assert report.best_trial == 0 or report.best_value > report.trials[0].value
    assert report.best_value == max(t.value for t in complete if t.value is not None)
    best = next(t for t in complete if t.number == report.best_trial)
    assert len(best.fold_values) == 3
    assert report.best_value == pytest.approx(sum(best.fold_values) / 3)
    assert report.best_std is not None
    assert report.best_std >= 0
    # model.params stay; the tuned value replaces C only.
    assert tuned.params == {"C": best.params["C"], "max_iter": 1000}
    assert tuned.tuned
    assert tuned.trials == 16
    assert tuned.metric == "f1_macro"
    assert report.direction == "maximize"
    assert set(report.importance) == {"C"}


def test_model_params_start_the_study_only_where_the_space_can_hold_them(params: Config) -> None:
    assert tune.incumbent_params(tuning(params)) == {"C": 1.0}  # max_iter is not searched
    outside = configured(params, model={"params": {"C": 1000.0}}, tune=SMALL)
    assert tune.incumbent_params(outside) == {}
    space = {"C": {"low": 0.1, "high": 10.0}, "solver": {"choices": ["lbfgs", "saga"]}}
    chosen = configured(params, model={"params": {"C": 2.0, "solver": "saga"}}, tune=SMALL | {"space": space})
    assert tune.incumbent_params(chosen) == {"C": 2.0, "solver": "saga"}


def test_a_lower_is_better_metric_is_minimised(params: Config, contract: Contract, train_split: pd.DataFrame) -> None:
    report = tune.tune(train_split, tuning(params, metric="log_loss", trials=8), contract).report
    assert report.direction == "minimize"
    assert report.best_value == min(t.value for t in report.trials if t.value is not None)


def test_regression_minimises_rmse_on_plain_folds(params: Config, contract: Contract, penguins: pd.DataFrame) -> None:
    cfg = configured(regression(params, "ridge", alpha=1.0), tune=SMALL | {"trials": 5})
    assert cfg.tune_metric == "rmse"
    report = tune.tune(labelled(penguins, cfg), cfg, contract).report
    assert report.direction == "minimize"
    assert report.best_value == min(t.value for t in report.trials if t.value is not None)
    assert 150 < report.best_value < 600  # grams: body mass from the other measurements


def test_too_few_rows_of_a_class_for_the_folds_names_the_key(
    params: Config, contract: Contract, train_split: pd.DataFrame
) -> None:
    few = pd.concat(
        [train_split[train_split["species"] != "Chinstrap"], train_split[train_split["species"] == "Chinstrap"].head(2)]
    )
    with pytest.raises(
        tune.TuneError,
        match=r"^tune\.cv_folds: 3 stratified folds need at least 3 train rows of each class; 'Chinstrap' has 2$",
    ):
        tune.tune(few, tuning(params), contract)


def test_parallel_trials_run_in_two_processes_on_one_study(
    params: Config, contract: Contract, train_split: pd.DataFrame
) -> None:
    outcome = tune.tune(train_split, tuning(params, trials=10, n_jobs=2), contract)
    report = outcome.report
    # Each process stops when the study holds 10 trials; one may finish a trial it had begun.
    assert 10 <= len(report.trials) <= 11
    assert outcome.new_trials == len(report.trials)
    assert report.trials[0].params == {"C": 1.0}
    assert sorted(t.number for t in report.trials) == list(range(len(report.trials)))
    assert outcome.tuned.trials == len(report.trials)


def test_integer_and_categorical_spaces(params: Config, contract: Contract, train_split: pd.DataFrame) -> None:
    space = {"n_estimators": {"low": 5, "high": 20}, "criterion": {"choices": ["gini", "entropy"]}}
    cfg = configured(
        params,
        model={"estimator": "random_forest", "params": {"random_state": 0}},
        tune=SMALL | {"trials": 6, "space": space},
    )
    report = tune.tune(train_split, cfg, contract).report
    for trial in report.trials:
        assert isinstance(trial.params["n_estimators"], int)
        assert 5 <= trial.params["n_estimators"] <= 20
        assert trial.params["criterion"] in {"gini", "entropy"}
    assert report.best_params["random_state"] == 0


# --- the stage, as dvc runs it ------------------------------------------------------------------


def stage_files(root: Path) -> dict[str, Path]:
    """The tune command's output options, under ``root``."""
    return {
        "out": root / "models" / "tuned_params.json",
        "report": root / "reports" / "tuning.json",
        "plots": root / "reports" / "tuning",
    }


def run_stage(root: Path, params_file: Path, train_file: Path) -> dict[str, Path]:
    """``conveyor tune`` in process with outputs under ``root``; fails the test on a non-zero exit."""
    files = stage_files(root)
    options = [f"--{name}={path}" for name, path in files.items()]
    assert cli.main(["tune", f"--params={params_file}", f"--data={train_file}", *options]) == 0
    return files


def write_params(path: Path, cfg: Config) -> Path:
    """``cfg`` as a params file that the CLI reads."""
    path.write_text(json.dumps(cfg.model_dump(mode="json", by_alias=True)), encoding="utf-8")
    return path


def test_the_test_split_is_never_read(
    params: Config, train_split: pd.DataFrame, tmp_path: Path, in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stage runs where the pipeline keeps both splits, with the test split made unreadable:
    # garbage bytes, no permissions, and any read of it through Conveyor's io raising.
    cfg = tuning(params)
    (tmp_path / "data" / "split").mkdir(parents=True)
    io.write_table(train_split, tmp_path / "data" / "split" / "train.parquet")
    (tmp_path / "data").joinpath("contract.yaml").write_bytes((ROOT / cfg.data.schema_path).read_bytes())
    test_file = tmp_path / "data" / "split" / "test.parquet"
    test_file.write_bytes(b"not parquet")
    test_file.chmod(0)
    real_read = io.read_table

    def guarded(path: str | Path, **options: Any) -> pd.DataFrame:
        assert Path(path).name != "test.parquet", "tune read the test split"
        return real_read(path, **options)

    monkeypatch.setattr(io, "read_table", guarded)
    params_file = write_params(tmp_path / "params.yaml", cfg)
    with_guard = run_stage(tmp_path / "guarded", params_file, Path("data/split/train.parquet"))
    # The same study in a folder that has no test split at all gives the same bytes.
    test_file.unlink()
    without = run_stage(tmp_path / "without", params_file, Path("data/split/train.parquet"))
    for name in ("out", "report"):
        assert with_guard[name].read_bytes() == without[name].read_bytes()
    assert io.read_artifact(with_guard["out"], TunedParams).tuned


def test_a_train_split_past_max_rows_is_tuned_on_a_seeded_sample_that_the_report_counts(
    params: Config, train_split: pd.DataFrame, tmp_path: Path
) -> None:
    path = tmp_path / "train.parquet"
    io.write_table(train_split, path)
    cfg = tuning(params, max_rows=120, trials=3)
    rows, total = tune.train_sample(path, cfg)
    # pandas' own seeded sample, picked out of the file without reading it whole.
    expected = io.read_table(path).sample(n=120, random_state=cfg.tune.seed).reset_index(drop=True)
    pd.testing.assert_frame_equal(rows.reset_index(drop=True), expected)
    assert total == len(train_split)
    files = stage_files(tmp_path)
    outcome = tune.run(cfg, data=path, out=files["out"], report=files["report"], plots=files["plots"])
    report = io.read_artifact(files["report"], TuningReport)
    assert (report.rows, report.train_rows) == (120, len(train_split)) == (outcome.report.rows, total)
    # At most max_rows rows (or none set): the whole split, as it is.
    for whole in (tuning(params, max_rows=len(train_split)), tuning(params, max_rows=None)):
        rows, total = tune.train_sample(path, whole)
        pd.testing.assert_frame_equal(rows, io.read_table(path))
        assert total == len(train_split)


def test_disabled_passes_model_params_through(params: Config, tmp_path: Path) -> None:
    assert not params.tune.enabled
    files = run_stage(tmp_path, ROOT / "params.yaml", tmp_path / "no-such-train.parquet")
    tuned = io.read_artifact(files["out"], TunedParams)
    assert tuned == TunedParams(tuned=False, estimator="logistic_regression", params=dict(params.model.params))
    report = io.read_artifact(files["report"], TuningReport)
    assert not report.enabled
    assert report.trials == []
    # Both declared plot folders exist with nothing to show (see write_plots).
    custom = files["plots"] / "plots" / "custom"
    assert sorted(p.relative_to(custom).as_posix() for p in custom.rglob("*") if p.is_file()) == [
        f"history/{io.PLOT_PLACEHOLDER}",
        f"importance/{io.PLOT_PLACEHOLDER}",
    ]


def test_disabled_imports_neither_optuna_nor_scikit_learn(tmp_path: Path) -> None:
    # What keeps the disabled stage under a second as a process (measured in benchmarks/tune.py).
    params_file = ROOT / "params.yaml"
    argv = ["tune", f"--params={params_file}", "--data=unused"]
    argv += [f"--{name}={path}" for name, path in stage_files(tmp_path).items()]
    script = (
        "import sys; from conveyor.cli import main; "
        f"code = main({argv!r}); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'optuna', 'sklearn', 'dvclive', 'scipy'})); "
        "sys.exit(code)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_a_shared_storage_study_is_reproduced_from_its_stored_trials(
    params: Config, train_split: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tuning(params, trials=6, storage=str(tmp_path / "study.db"))
    train_file = tmp_path / "train.parquet"
    io.write_table(train_split, train_file)
    params_file = write_params(tmp_path / "params.json", cfg)
    first = run_stage(tmp_path / "first", params_file, train_file)
    assert "(6 run here" in capsys.readouterr().out
    second = run_stage(tmp_path / "second", params_file, train_file)
    assert "6 trials (0 run here" in capsys.readouterr().out
    for name in ("out", "report"):
        assert second[name].read_bytes() == first[name].read_bytes()
    # More trials continue the same study rather than starting over.
    more = write_params(tmp_path / "more.json", tuning(params, trials=8, storage=str(tmp_path / "study.db")))
    third = run_stage(tmp_path / "third", more, train_file)
    assert "8 trials (2 run here" in capsys.readouterr().out
    report = io.read_artifact(third["report"], TuningReport)
    assert report.trials[:6] == io.read_artifact(first["report"], TuningReport).trials


# --- train reads the tuned params ---------------------------------------------------------------


def test_train_fits_the_tuned_params_and_records_them(
    params: Config, contract: Contract, train_split: pd.DataFrame, tmp_path: Path, in_tmp: Path
) -> None:
    data = tmp_path / "train.parquet"
    io.write_table(train_split, data)
    tuned = TunedParams(
        tuned=True, estimator="logistic_regression", params={"C": 0.5}, metric="f1_macro", best_value=0.99, trials=30
    )
    (tmp_path / "tuned.json").write_text(tuned.model_dump_json(), encoding="utf-8")
    model = train.run(
        params,
        contract,
        data=data,
        model_out=tmp_path / "model.skops",
        metadata_out=tmp_path / "model.json",
        tuned_params=tmp_path / "tuned.json",
    )
    assert model.named_steps["estimator"].get_params()["C"] == 0.5
    assert model.named_steps["estimator"].get_params()["max_iter"] == 1000  # from model.params
    meta = io.read_json(tmp_path / "model.json")
    assert meta["tuning"] == {"tuned": True, "metric": "f1_macro", "best_value": 0.99, "trials": 30}
    assert meta["params"]["model"]["params"] == {"C": 0.5, "max_iter": 1000}


def test_train_refuses_params_tuned_for_another_estimator(params: Config, tmp_path: Path) -> None:
    tuned = TunedParams(tuned=True, estimator="random_forest", params={"n_estimators": 10})
    with pytest.raises(
        train.TrainError, match=r"model.estimator: 'logistic_regression', but the tuned params are for 'random_forest'"
    ):
        train.with_tuned_params(params, tuned)


def test_a_missing_or_foreign_artifact_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"tuned\.json: not found"):
        io.read_artifact(tmp_path / "tuned.json", TunedParams)
    (tmp_path / "gate.json").write_text('{"accepted": true}', encoding="utf-8")
    with pytest.raises(
        ArtifactError, match=r"gate\.json: 4 invalid fields: tuned: required key is missing; .* \(not a TunedParams;"
    ):
        io.read_artifact(tmp_path / "gate.json", TunedParams)


def test_an_unreachable_storage_names_the_key_without_the_password() -> None:
    url = f"postgresql+psycopg://conveyor:s3cret@127.0.0.1:{free_port()}/optuna"
    with pytest.raises(
        tune.TuneError, match=r"^tune\.storage: cannot open postgresql\+psycopg://conveyor:\*\*\*@"
    ) as caught:
        tune.open_storage(url)
    assert "s3cret" not in str(caught.value)


PASSWORD = "tun3-p4ss"


@pytest.mark.slow
def test_tuning_reruns_only_tune_and_what_follows_and_the_tuned_model_ships(
    reproduced_repo: Path, tmp_path: Path
) -> None:
    repo = clone_of(reproduced_repo, tmp_path / "repo")

    # Disabled, a tune setting reruns tune alone: its outputs do not change, so train is not rerun.
    edit_params(repo, lambda raw: raw["tune"].update({"trials": 12}))
    assert stages_run(run(repo, "dvc", "repro").stdout) == ["tune"]

    # From a weak C the study finds better params, so the model, and all that follows, changes.
    def weak_start_then_tune(raw: dict[str, Any]) -> None:
        raw["tune"].update({"enabled": True, "trials": 12})
        raw["model"]["params"]["C"] = 0.01

    edit_params(repo, weak_start_then_tune)
    output = run(repo, "dvc", "repro", timeout=600).stdout
    assert stages_run(output) == stages_from(repo, "tune")
    assert "tune: 12 trials (12 run here" in output
    tuned = io.read_artifact(repo / "models/tuned_params.json", TunedParams)
    assert tuned.tuned
    meta = io.read_json(repo / "models/model.json")
    assert meta["tuning"] == {"tuned": True, "metric": "f1_macro", "best_value": tuned.best_value, "trials": 12}
    assert meta["params"]["model"]["params"] == tuned.params
    assert io.read_json(repo / "reports/gate.json")["accepted"] is True
    assert read_package_report(repo / "reports/package.json").bento_tag
    for plot in ("history/study.json", "importance/params.json"):
        assert json.loads((repo / "reports/tuning/plots/custom" / plot).read_text(encoding="utf-8"))
    # The report's tuning section compares the tuned params with main's (model.params, untuned).
    commit_all(repo, "tuned")
    run(repo, "conveyor", "report", "--out", "report/report.md", "--gate", "reports/gate.json",
        "--champion", "reports/champion.json", "--validation", "reports/validation.json",
        "--tuning", "reports/tuning.json", "--baseline", "HEAD~1")  # fmt: skip
    markdown = (repo / "report/report.md").read_text(encoding="utf-8")
    assert "## Tuning" in markdown
    assert "| Param | candidate | `HEAD~1` |" in markdown
    assert "| C | " in markdown
    assert "tuning-plots-custom-history" in markdown


def _tune_command(params_file: Path, out: Path) -> list[str]:
    return [
        str(BIN / "conveyor"), "tune", f"--params={params_file}", f"--data={out.parent / 'train.parquet'}",
        f"--out={out / 'tuned_params.json'}", f"--report={out / 'tuning.json'}", f"--plots={out / 'plots'}",
    ]  # fmt: skip


@pytest.mark.slow
def test_two_workers_share_one_postgresql_study(params: Config, tmp_path: Path) -> None:
    train = split(io.read_source(str(ROOT / "data/penguins.csv")), params.split, target="species", stratify=True)[0]
    io.write_table(train, tmp_path / "train.parquet")
    with running_postgres(PASSWORD) as url:
        raw: dict[str, Any] = params.model_dump(mode="json", by_alias=True)
        raw["tune"] |= {"enabled": True, "trials": 16, "cv_folds": 3, "storage": url}
        params_file = tmp_path / "params.yaml"
        params_file.write_text(yaml.safe_dump(raw), encoding="utf-8")
        # The schema (data/contract.yaml) resolves against the repository, as in dvc repro.
        workers = [
            subprocess.Popen(
                _tune_command(params_file, tmp_path / f"worker-{n}"),
                cwd=ROOT,
                env=tool_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for n in (1, 2)
        ]
        outputs = [worker.communicate(timeout=300) for worker in workers]
        for worker, (out, err) in zip(workers, outputs, strict=True):
            assert worker.returncode == 0, f"{out}\n{err}"

        name = io.read_artifact(tmp_path / "worker-1/tuning.json", TuningReport).study
        assert name == io.read_artifact(tmp_path / "worker-2/tuning.json", TuningReport).study
        storage = optuna.storages.RDBStorage(url)
        study = optuna.load_study(study_name=name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        best_params, best_value = study.best_trial.params, study.best_value
        storage.engine.dispose()  # before the server stops
        # Each stops when the study holds 16 trials; each may finish a trial it had already begun.
        assert 16 <= len(trials) <= 18
        processes = {t.user_attrs["worker"].rsplit(":", 1)[0] for t in trials}
        assert len(processes) == 2, "both workers must have run trials of the one study"
        assert {w.pid for w in workers} == {int(p.rsplit(":", 1)[1]) for p in processes}
        # Apart from model.params (enqueued as the first trial, by both if they start together),
        # the workers' samplers are seeded apart and propose different points.
        sampled = [t for t in trials if "fixed_params" not in t.system_attrs]
        assert len({json.dumps(t.params) for t in sampled}) == len(sampled), "workers proposed the same point"

        # A later run runs nothing and derives its result from the stored trials, the same each time.
        replay = [run(ROOT, *_tune_command(params_file, tmp_path / f"replay-{n}")).stdout for n in (1, 2)]
        assert all(f"{len(trials)} trials (0 run here" in out for out in replay)
        first, second = tmp_path / "replay-1", tmp_path / "replay-2"
        for name_ in ("tuned_params.json", "tuning.json"):
            assert (first / name_).read_bytes() == (second / name_).read_bytes()
        tuned = io.read_artifact(first / "tuned_params.json", TunedParams)
        assert tuned.params == dict(params.model.params) | best_params
        assert tuned.best_value == best_value
        report = io.read_artifact(first / "tuning.json", TuningReport)
        assert [t.number for t in report.trials] == [t.number for t in trials]


@pytest.mark.slow
def test_make_sweep_runs_three_experiments(reproduced_repo: Path, tmp_path: Path) -> None:
    repo = clone_of(reproduced_repo, tmp_path / "repo")
    result = make(repo, "sweep", "ARGS=-S model.params.C=0.01,0.1,1")
    table = [line for line in result.stdout.splitlines() if line.startswith("|")]
    experiments = [line for line in table if "[" in line]  # "├── 1a2b3c4 [name]" rows
    assert len(experiments) == 3, result.stdout
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    c_column, f1_column = header.index("model.params.C"), header.index("f1_macro")
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in experiments]
    assert sorted(float(row[c_column]) for row in rows) == [0.01, 0.1, 1.0]
    scores = {float(row[c_column]): float(row[f1_column]) for row in rows}
    # Each point ran: the heavily regularised model scores below the default one.
    assert scores[0.01] < scores[1.0]
    assert "Success" in run(repo, "dvc", "queue", "status").stdout
