"""params.yaml: broken variants each stop with a message naming the dotted key; real files load."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from conveyor import cli, io
from conveyor.config import Config, load_config, parse_config
from conveyor.contract import Contract
from conveyor.errors import ConfigError
from conveyor.model.features import resolve_features
from tests.conftest import ROOT

PARAMS = ROOT / "params.yaml"
NOT_PROJECT = {
    ".venv",
    ".tools",
    ".git",
    ".dvc",
    "build",
    "node_modules",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
}

Edit = Callable[[dict[str, Any]], object]


def real_params() -> dict[str, Any]:
    """The repository's params.yaml as plain data, a fresh copy each call."""
    return copy.deepcopy(yaml.safe_load(PARAMS.read_text(encoding="utf-8")))


def broken(edit: Edit) -> dict[str, Any]:
    """The real params with ``edit`` applied."""
    raw = real_params()
    edit(raw)
    return raw


def as_regression(raw: dict[str, Any], *, compare: tuple[str, ...] | list[str] = ("rmse",)) -> dict[str, Any]:
    """Turn the real params into a regression setup (valid with the default ``compare``)."""
    raw["task"] = "regression"
    raw["model"] = {"estimator": "ridge", "params": {"alpha": 1.0}}
    raw["gate"] = {"thresholds": {"rmse": {"max": 5.0}}, "compare": list(compare)}
    return raw


# (edit, the dotted key the message must name, words saying what was expected)
BROKEN: list[Any] = [
    pytest.param(
        lambda r: r["data"]["limits"].update(max_rows=0),
        "data.limits.max_rows",
        "greater than or equal to 1",
        id="limit-zero",
    ),
    pytest.param(
        lambda r: r["data"]["limits"].update(max_byte=10), "data.limits.max_byte", "'max_bytes'", id="unknown-limit"
    ),
    pytest.param(
        lambda r: r["data"]["limits"].update(max_columns="many"),
        "data.limits.max_columns",
        "valid integer",
        id="limit-type",
    ),
    pytest.param(
        lambda r: r["data"].update(source_env="MY URL"), "data.source_env", "should match pattern", id="source-env-name"
    ),
    pytest.param(
        lambda r: r["data"].update(source="https://ana:s3cr3t@files.example/x.csv"),
        "data.source",
        "holds user info before an '@' (https://files.example/x.csv)",
        id="password-in-source",
    ),
    pytest.param(
        lambda r: r["data"].update(source="https://files.example/x.csv?format=csv&api_key=s3cr3t"),
        "data.source",
        "holds query parameter(s) ['api_key']",
        id="token-in-source",
    ),
    pytest.param(
        lambda r: r["data"].update(source="postgresql://ana:s3cr3t@db/sales", query="SELECT 1"),
        "data.source",
        "holds a password (postgresql://ana:***@db/sales)",
        id="password-in-sql-source",
    ),
    pytest.param(lambda r: r.update(modle={}), "modle", "unknown key; expected one of", id="unknown-top-level-key"),
    pytest.param(lambda r: r["split"].update(tets_size=0.2), "split.tets_size", "'test_size'", id="unknown-nested-key"),
    pytest.param(
        lambda r: r["gate"]["thresholds"]["accuracy"].update(mn=0.5),
        "gate.thresholds.accuracy.mn",
        "['max', 'min']",
        id="unknown-key-in-bound",
    ),
    pytest.param(lambda r: r["split"].update(seed="42"), "split.seed", "valid integer, got '42'", id="wrong-type-int"),
    pytest.param(lambda r: r["split"].update(stratify="yes"), "split.stratify", "valid boolean", id="wrong-type-bool"),
    pytest.param(lambda r: r["features"].update(drop="year"), "features.drop", "expected a list", id="wrong-type-list"),
    pytest.param(lambda r: r.update(split=None), "split", "expected a mapping", id="section-not-a-mapping"),
    pytest.param(lambda r: r.pop("model"), "model", "required key is missing", id="missing-section"),
    pytest.param(lambda r: r["data"].pop("target"), "data.target", "required key is missing", id="missing-nested-key"),
    pytest.param(lambda r: r.update(task="clustering"), "task", "'classification' or 'regression'", id="bad-task"),
    pytest.param(
        lambda r: r["model"].update(estimator="svm"), "model.estimator", "logistic_regression", id="unknown-estimator"
    ),
    pytest.param(
        lambda r: r["model"].update(estimator="ridge"),
        "model.estimator",
        "not a classification estimator",
        id="estimator-of-the-other-task",
    ),
    pytest.param(
        lambda r: r["model"]["params"].update(alpha=1.0),
        "model.params.alpha",
        "not a parameter of LogisticRegression",
        id="unknown-model-param",
    ),
    pytest.param(lambda r: r["split"].update(test_size=1.5), "split.test_size", "less than 1", id="test-size-above-1"),
    pytest.param(lambda r: r["split"].update(test_size=0), "split.test_size", "greater than 0", id="test-size-zero"),
    pytest.param(
        lambda r: r["gate"]["thresholds"].update(rmse={"max": 1.0}),
        "gate.thresholds.rmse",
        "unknown metric for task classification",
        id="unknown-threshold-metric",
    ),
    pytest.param(
        lambda r: r["gate"].update(compare=["r2"]), "gate.compare.r2", "expected one of", id="unknown-compare-metric"
    ),
    pytest.param(
        lambda r: as_regression(r, compare=["accuracy"]),
        "gate.compare.accuracy",
        "unknown metric for task regression",
        id="classification-metric-on-regression",
    ),
    pytest.param(
        lambda r: r["gate"]["thresholds"].update(accuracy={}),
        "gate.thresholds.accuracy",
        "expected min, max or both",
        id="bound-without-min-or-max",
    ),
    pytest.param(
        lambda r: r["gate"].update(tolerance=-0.1),
        "gate.tolerance",
        "greater than or equal to 0",
        id="negative-tolerance",
    ),
    pytest.param(
        lambda r: r["features"].update(categorical=["island", "species"]),
        "features.categorical",
        "lists the target column 'species'",
        id="target-as-feature",
    ),
    pytest.param(
        lambda r: r["features"].update(numeric=["bill_length_mm"], categorical=["bill_length_mm"]),
        "features",
        "both numeric and categorical",
        id="feature-listed-twice",
    ),
    pytest.param(
        lambda r: r["features"].update(scaling="zscore"), "features.scaling", "'standard'", id="unknown-scaling"
    ),
    pytest.param(
        lambda r: r["feature_store"].update(max_dropped_share=1.5),
        "feature_store.max_dropped_share",
        "less than or equal to 1",
        id="feature-store-dropped-share-above-1",
    ),
    pytest.param(
        lambda r: r["feature_store"].update(feature_servce="x"),
        "feature_store.feature_servce",
        "'feature_service'",
        id="feature-store-unknown-key",
    ),
    pytest.param(
        lambda r: r["feature_store"].update(enabled="yes"),
        "feature_store.enabled",
        "valid boolean",
        id="feature-store-enabled-not-a-bool",
    ),
    pytest.param(
        lambda r: r["feature_store"].update(server_url="127.0.0.1:6566"),
        "feature_store.server_url",
        "should match pattern",
        id="feature-store-server-url-not-http",
    ),
    pytest.param(
        lambda r: r["data"].update(query="SELECT * FROM penguins"),
        "data.query",
        "only used with a SQLAlchemy URL",
        id="query-without-sql-url",
    ),
    pytest.param(
        lambda r: r["data"].update(source="sqlite:///penguins.db"),
        "data.query",
        "required when data.source is a SQLAlchemy URL",
        id="sql-url-without-query",
    ),
    pytest.param(lambda r: r["data"].update(schema=""), "data.schema", "at least 1 character", id="empty-schema-path"),
    pytest.param(
        lambda r: r["data"].update(range_column="id"),
        "data.range_column",
        "only used with a SQLAlchemy URL",
        id="range-column-without-sql-url",
    ),
    pytest.param(
        lambda r: r["data"].update(source="sqlite:///penguins.db", query="SELECT * FROM penguins", range_column=7),
        "data.range_column",
        "valid string",
        id="range-column-not-a-name",
    ),
    *(
        pytest.param(lambda r, change=change: r["data"]["csv"].update(change), f"data.csv.{key}", expected, id=name)
        for name, change, key, expected in [
            ("two-chars", {"delimiter": ";;"}, "delimiter", "is not a delimiter"),
            ("quote", {"delimiter": '"'}, "delimiter", "not a letter, a digit, a quote"),
            ("decimal-mark", {"decimal": ";"}, "decimal", "'.' or ','"),
            ("same-mark", {"decimal": ","}, "decimal", "is also data.csv.delimiter"),
            ("not-ascii-compatible", {"encoding": "utf-16"}, "encoding", "re-save the file as UTF-8"),
            ("unknown-encoding", {"encoding": "klingon"}, "encoding", "not an encoding Python knows"),
        ]
    ),
    pytest.param(
        lambda r: (r["data"]["csv"].update(delimiter=";"), r["data"].update(source="data/penguins.parquet")),
        "data.csv",
        "only used with a CSV data.source",
        id="csv-format-for-parquet",
    ),
    pytest.param(
        lambda r: r["evaluate"].update(importance_repeats=0),
        "evaluate.importance_repeats",
        "greater than or equal to 1",
        id="zero-importance-repeats",
    ),
    pytest.param(
        lambda r: r["evaluate"].update(importance_rows=0),
        "evaluate.importance_rows",
        "greater than or equal to 1",
        id="zero-importance-rows",
    ),
    pytest.param(
        lambda r: r["evaluate"].update(plot_points=1),
        "evaluate.plot_points",
        "greater than or equal to 2",
        id="one-plot-point",
    ),
    pytest.param(
        lambda r: r["serve"].update(max_connections=100, max_concurrency=256),
        "serve.max_connections",
        "100 per worker is below the requests a worker admits at once (256",
        id="connections-below-concurrency",
    ),
    pytest.param(
        lambda r: r["serve"].update(header_timeout_s=0), "serve.header_timeout_s", "greater than 0", id="no-head-time"
    ),
    pytest.param(
        lambda r: r["serve"].update(max_header_bytes=100),
        "serve.max_header_bytes",
        "greater than or equal to 1024",
        id="tiny-head-limit",
    ),
    pytest.param(lambda r: r["serve"].update(auth="basic"), "serve.auth", "'none' or 'bearer'", id="unknown-auth"),
    pytest.param(
        lambda r: r["serve"].update(metadata="none"), "serve.metadata", "'full' or 'minimal'", id="unknown-metadata"
    ),
]


@pytest.mark.parametrize(("edit", "key", "expected"), BROKEN)
def test_broken_params_name_the_key(edit: Edit, key: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(broken(edit))
    message = str(caught.value)
    assert f"params.yaml: {key}: " in message
    assert expected in message
    assert "s3cr3t" not in message, "a refused credential is not echoed"


def test_several_errors_are_all_reported() -> None:
    raw = broken(lambda r: (r["split"].update(seed="x"), r["data"].update(target=None)))
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    lines = str(caught.value).splitlines()
    assert lines[0] == "params.yaml: 2 invalid settings:"
    assert any(line.strip().startswith("split.seed: ") for line in lines[1:])
    assert any(line.strip().startswith("data.target: ") for line in lines[1:])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("data: [unclosed\n", "not valid YAML at line 2", id="unclosed-bracket"),
        pytest.param("data:\n  source: a\n source: b\n", "not valid YAML at line 3", id="bad-indentation"),
        pytest.param("", "the file is empty", id="empty-file"),
        pytest.param("- data\n- task\n", "expected a mapping of sections at the top level, got list", id="a-list"),
    ],
)
def test_unreadable_params_file(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=f"^{path}: ") as caught:
        load_config(path)
    assert expected in str(caught.value)


def test_missing_params_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("key", "columns", "expected"),
    [
        ("numeric", ["bill_length_mm", "beak_mm"], "features.numeric: columns not in the data contract: ['beak_mm']"),
        ("categorical", ["islands"], "features.categorical: columns not in the data contract: ['islands']"),
        ("drop", ["yaer"], "features.drop: columns not in the data contract: ['yaer']"),
        ("numeric", ["island"], "features.numeric: columns are not numeric in the data contract: ['island']"),
    ],
)
def test_features_checked_against_the_contract(contract: Contract, key: str, columns: list[str], expected: str) -> None:
    # Checked when train reads the contract: train is the stage that declares `features` in dvc.yaml.
    cfg = parse_config(broken(lambda r: r["features"].update({key: columns})))
    with pytest.raises(ConfigError) as caught:
        resolve_features(cfg.features, contract, target=cfg.data.target)
    assert str(caught.value) == expected


def test_regression_setup_loads() -> None:
    cfg = parse_config(broken(as_regression))
    assert (cfg.task, cfg.model.estimator, cfg.gate.thresholds["rmse"].max) == ("regression", "ridge", 5.0)


def test_config_is_frozen(params: Config) -> None:
    with pytest.raises(ValueError, match="frozen"):
        params.split.seed = 1  # type: ignore[misc]


def project_yaml(pattern: str) -> list[Path]:
    """Files matching ``pattern`` anywhere in the project, outside environments and caches."""
    return sorted(p for p in ROOT.rglob(pattern) if not NOT_PROJECT & set(p.relative_to(ROOT).parts))


@pytest.mark.parametrize("path", project_yaml("params*.yaml"), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_params_file_in_the_repo_loads(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.data.target


@pytest.mark.parametrize("path", project_yaml("contract*.yaml"), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_contract_in_the_repo_loads(path: Path) -> None:
    assert io.read_contract(path).columns


STAGE_ARGS = {
    "source": ["--out", "source.json"],
    "ingest": ["--out", "raw.parquet", "--report", "ingest.json"],
    "validate": ["--data", "raw.parquet", "--out", "v.parquet", "--report", "validation.json"],
    "split": ["--data", "v.parquet", "--train", "train.parquet", "--test", "test.parquet"],
    "tune": ["--data", "train.parquet", "--out", "tuned.json", "--report", "tuning.json", "--plots", "tuning"],
    "train": [
        "--data",
        "train.parquet",
        "--tuned-params",
        "tuned.json",
        "--model",
        "model.skops",
        "--metadata",
        "model.json",
    ],
    "evaluate": ["--model", "model.skops", "--test", "test.parquet", "--out", "reports"],
    "gate": [
        "--model",
        "m.skops",
        "--metadata",
        "m.json",
        "--test",
        "t.parquet",
        "--evaluation",
        "e.json",
        "--out",
        "g.json",
        "--champion",
        "c.json",
    ],
}


def write_bad_params(directory: Path) -> Path:
    """A params file with an unknown estimator, next to nothing else."""
    path = directory / "params.yaml"
    path.write_text(yaml.safe_dump(broken(lambda r: r["model"].update(estimator="svm"))), encoding="utf-8")
    return path


@pytest.mark.parametrize("stage", sorted(STAGE_ARGS))
def test_every_stage_reports_a_bad_config_in_one_line(
    in_tmp: Path, stage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    params = write_bad_params(in_tmp)
    assert cli.main([stage, "--params", str(params), *STAGE_ARGS[stage]]) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"conveyor {stage}: error: {params}: model.estimator: 'svm' is not a classification estimator; "
        "expected one of ['hist_gradient_boosting', 'lightgbm', 'logistic_regression', 'random_forest', 'xgboost']"
    ]
    assert not list(in_tmp.glob("*.parquet"))


@pytest.mark.slow
def test_console_script_exits_1_without_a_traceback(tmp_path: Path) -> None:
    params = write_bad_params(tmp_path)
    result = subprocess.run(
        [Path(sys.executable).parent / "conveyor", "ingest", "--params", params, *STAGE_ARGS["ingest"]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("conveyor ingest: error: ")
    assert "model.estimator" in result.stderr
    assert len(result.stderr.splitlines()) == 1
