"""The tune stage in real processes: inside ``dvc repro``, two workers sharing one PostgreSQL study,
and ``make sweep`` queueing DVC experiments."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from conftest import BIN, ROOT, clone_of, commit_all, run, tool_env
from helpers_make import make
from helpers_model import edit_params, stages_from, stages_run
from helpers_postgres import running_postgres

from conveyor import io
from conveyor.artifacts import TunedParams, TuningReport
from conveyor.config import Config
from conveyor.stages.split import split

pytestmark = pytest.mark.slow

PASSWORD = "tun3-p4ss"


def test_tuning_reruns_only_tune_and_what_follows_and_the_tuned_model_ships(
    reproduced_repo: Path, tmp_path: Path
) -> None:
    repo = clone_of(reproduced_repo, tmp_path / "repo")

    # Disabled, a tune setting reruns tune alone: its outputs do not change, so train is not rerun.
    edit_params(repo, lambda raw: raw["tune"].update({"trials": 12}))
    assert stages_run(run(repo, "dvc", "repro").stdout) == ["tune"]

    edit_params(repo, lambda raw: raw["tune"].update({"enabled": True, "trials": 12}))
    output = run(repo, "dvc", "repro", timeout=600).stdout
    assert stages_run(output) == stages_from(repo, "tune")
    assert "tune: 12 trials (12 run here" in output
    tuned = io.read_artifact(repo / "models/tuned_params.json", TunedParams)
    assert tuned.tuned
    meta = io.read_json(repo / "models/model.json")
    assert meta["tuning"] == {"tuned": True, "metric": "f1_macro", "best_value": tuned.best_value, "trials": 12}
    assert meta["params"]["model"]["params"] == tuned.params
    assert io.read_json(repo / "reports/gate.json")["accepted"] is True
    assert io.read_json(repo / "reports/package.json")["bento_tag"]
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
