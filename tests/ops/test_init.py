"""``conveyor init``: the task rule, the refusals, and a params.yaml that keeps what it does not own."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_breast_cancer

from conveyor import io
from conveyor.cli import main
from conveyor.config import Config, CsvFormat, load_config
from conveyor.model.predict import predict
from conveyor.ops.init import MAX_CLASSES, InitError, infer_task, missing_markers, retarget
from conveyor.stages.ingest import ingest
from tests.conftest import (
    ROOT,
    commit_all,
    copy_repo,
    customers,
    edit_params,
    free_port,
    run,
    running,
    stages_run,
    tool_env,
)
from tests.monitor.conftest import LOG_PATH_OPTION

PARAMS = (ROOT / "params.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("values", "task"),
    [
        (["a", "b", "a"], "classification"),
        ([True, False, True], "classification"),
        ([1, 2, 3, 1], "classification"),
        ([0.0, 1.0, np.nan, 1.0], "classification"),
        (list(range(MAX_CLASSES)), "classification"),
        (list(range(MAX_CLASSES + 1)), "regression"),
        ([0.5, 1.0, 1.5], "regression"),
    ],
)
def test_the_task_follows_the_targets_values(values: list[object], task: str) -> None:
    choice = infer_task(pd.Series(values, name="y"))
    assert choice.task == task
    assert "'y'" in choice.reason


def regression_table(rows: int = 200) -> pd.DataFrame:
    """A numeric target that two awkwardly named columns explain."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 2))
    return pd.DataFrame(
        {
            "size m²": x[:, 0],
            "2nd.dim-x": x[:, 1],
            "yes": rng.choice(["a", "b"], rows),
            "price €": 30 * x[:, 0] - 10 * x[:, 1] + rng.normal(size=rows) + 100,
        }
    )


def test_penguins_retargeted_to_island_keeps_every_setting_and_comment_it_does_not_own(
    penguins: pd.DataFrame, params: Config
) -> None:
    result = retarget(penguins, PARAMS, source="data/penguins.csv", target="island")
    cfg = result.config
    assert (cfg.task, cfg.data.target, cfg.data.query) == ("classification", "island", None)
    assert (cfg.features.numeric, cfg.features.categorical, cfg.features.drop) == (None, None, ())
    assert (cfg.model.estimator, cfg.model.params) == ("logistic_regression", {"C": 1.0, "max_iter": 1000})
    # Three islands: chance is 1/3, so the threshold is 0.1 above it, rounded down.
    assert cfg.gate.thresholds["balanced_accuracy"].min == 0.43
    assert list(cfg.gate.thresholds) == ["balanced_accuracy"]
    assert cfg.gate.compare == ("balanced_accuracy", "log_loss")
    assert (cfg.serve, cfg.evaluate, cfg.split, cfg.data.schema_path) == (
        params.serve,
        params.evaluate,
        params.split,
        params.data.schema_path,
    )
    kept = set(re.findall(r"#.*", PARAMS)) - {
        "# the survey year says nothing about the species",
        "# every one must hold",
        # init sets gate.tolerance for the new data, so the penguins explanation goes with it.
        "# allowed regression, in each metric's own units: one of the 86 test rows moves accuracy or F1 by "
        "about 0.012, so 0.01 would reject a model for a single row",
    }
    assert kept <= set(re.findall(r"#.*", result.params))
    assert "\n\ngate:\n" in result.params, "the blank line between sections is kept"
    assert set(result.contract.columns) == set(penguins.columns)


def test_a_regression_table_gets_a_regressor_and_a_gate_in_its_own_units() -> None:
    data = regression_table()
    result = retarget(data, PARAMS, source="data/prices.csv", target="price €")
    cfg = result.config
    assert (cfg.task, cfg.model.estimator, cfg.model.params) == ("regression", "ridge", {"alpha": 1.0})
    assert {name: bound.min for name, bound in cfg.gate.thresholds.items()} == {"r2": 0.1}
    assert cfg.gate.compare == ("rmse",)
    assert cfg.gate.tolerance == pytest.approx(0.01 * data["price €"].std(), rel=0.05)
    assert cfg.data.target == "price €"


def test_init_is_idempotent_and_retargets_back_and_forth(penguins: pd.DataFrame) -> None:
    to_prices = retarget(regression_table(), PARAMS, source="data/prices.csv", target="price €")
    again = retarget(regression_table(), to_prices.params, source="data/prices.csv", target="price €")
    assert again.params == to_prices.params
    back = retarget(penguins, to_prices.params, source="data/penguins.csv", target="species")
    assert back.params == retarget(penguins, PARAMS, source="data/penguins.csv", target="species").params


def test_names_yaml_would_read_as_something_else_are_quoted() -> None:
    data = regression_table().rename(columns={"yes": "label", "price €": "yes"})
    result = retarget(data, PARAMS, source="data/on", target="yes")
    raw = yaml.safe_load(result.params)
    assert (raw["data"]["target"], raw["data"]["source"]) == ("yes", "data/on")


def test_a_class_with_a_single_row_turns_stratification_off(penguins: pd.DataFrame) -> None:
    data = penguins.copy()
    data.loc[0, "island"] = "Atlantis"
    assert retarget(data, PARAMS, source="x.csv", target="island").config.split.stratify is False
    assert retarget(penguins, PARAMS, source="x.csv", target="island").config.split.stratify is True


@pytest.mark.parametrize(
    ("target", "task", "message"),
    [
        ("speceis", None, "--target 'speceis' is not a column of the data; did you mean 'species'?"),
        ("nothing like it", None, "columns are ['species', 'island'"),
        ("sex", None, "'sex': 11 row(s) have no label"),
        ("species", "regression", "'species' is not numeric (e.g. 'Adelie'); regression needs numbers"),
        ("constant", None, "'constant' has a single value (1); there is nothing to learn"),
    ],
)
def test_a_target_that_cannot_be_learned_is_refused_naming_it(
    penguins: pd.DataFrame, target: str, task: str | None, message: str
) -> None:
    data = penguins.assign(constant=1)
    with pytest.raises(InitError, match=re.escape(message)):
        retarget(data, PARAMS, source="data/penguins.csv", target=target, task=task)  # type: ignore[arg-type]


def test_the_command_writes_params_and_contract_or_refuses_in_one_line(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (in_tmp / "params.yaml").write_text(PARAMS, encoding="utf-8")
    regression_table().to_csv(in_tmp / "prices.csv", index=False)
    assert main(["init", "--data", "prices.csv", "--target", "price"]) == 1
    error = capsys.readouterr().err
    assert error == "conveyor init: error: --target 'price' is not a column of the data; did you mean 'price €'?\n"
    assert (in_tmp / "params.yaml").read_text(encoding="utf-8") == PARAMS
    assert main(["init", "--data", str(in_tmp / "prices.csv"), "--target", "price €"]) == 0
    assert "init: regression ('price €' holds numbers" in capsys.readouterr().out
    contract = io.read_contract(in_tmp / "data" / "contract.yaml")
    assert set(contract.columns) == {"size m²", "2nd.dim-x", "yes", "price €"}
    # An absolute path inside the repository is written relative to it, so a clone finds the data.
    assert yaml.safe_load((in_tmp / "params.yaml").read_text(encoding="utf-8"))["data"]["source"] == "prices.csv"


def breast_cancer() -> pd.DataFrame:
    """569 tumours, 30 measurements named like ``mean radius``, label ``diagnosis``."""
    data: pd.DataFrame = load_breast_cancer(as_frame=True).frame
    return data.assign(diagnosis=data.pop("target").map({0: "malignant", 1: "benign"}))


def flats() -> pd.DataFrame:
    """Prices explained by awkwardly named columns, one with gaps and one categorical."""
    rng = np.random.default_rng(7)
    rows = 400
    size, rooms = rng.uniform(20, 150, rows), rng.integers(1, 6, rows)
    district = rng.choice(["centre ville", "Zürich-Nord", "Île.2"], rows)
    price = 3000 * size + 10_000 * rooms + np.where(district == "centre ville", 50_000, 0) + rng.normal(0, 5000, rows)
    floor = rng.integers(0, 10, rows).astype(float)
    floor[::17] = np.nan
    return pd.DataFrame(
        {"size m²": size, "2nd.rooms-count": rooms, "étage (floor)": floor, "quartier": district, "price €": price}
    )


DATASETS: dict[str, tuple[Callable[[], pd.DataFrame], str, str]] = {
    "breast cancer": (breast_cancer, "diagnosis", "classification"),
    "flats": (flats, "price €", "regression"),
}


def served_predictions(repo: Path, records: list[dict[str, Any]], log: Path) -> tuple[list[Any], dict[str, Any]]:
    """``bentoml serve`` at ``repo``: the predictions for ``records`` and the metadata."""
    port = free_port()
    command = ["bentoml", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with (
        running(command, cwd=repo, env=tool_env(), port=port, log=log),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
    ):
        answer = client.post("/predict", json={"records": records})
        assert answer.status_code == 200, answer.text
        metadata = client.post("/metadata", json={}).json()
    return answer.json(), metadata


@pytest.mark.slow
@pytest.mark.parametrize("name", list(DATASETS))
def test_init_retargets_to_a_model_served_on_both_inference_paths(name: str, tmp_path: Path) -> None:
    make, target, task = DATASETS[name]
    repo = copy_repo(tmp_path / "repo")
    source = f"data/{name}.csv"
    make().to_csv(repo / source, index=False)
    told = run(repo, "conveyor", "init", "--data", source, "--target", target).stdout
    assert f"init: {task}" in told
    commit_all(repo, f"retarget to {name}")
    run(repo, "dvc", "repro", timeout=900)

    test = io.read_table(repo / "data/split/test.parquet").head(5)
    model = io.load_model(repo / "models/model.skops")
    expected = predict(model, test)
    records = json.loads(test.drop(columns=[target]).to_json(orient="records"))
    assert io.read_json(repo / "reports/gate.json")["accepted"] is True

    for inference in ("onnx", "sklearn"):
        if inference == "sklearn":
            edit_params(repo, lambda raw: raw["serve"].update(inference="sklearn"))
            assert stages_run(run(repo, "dvc", "repro", timeout=900).stdout) == ["package"]
        package = io.read_json(repo / "reports/package.json")
        assert package["inference"] == inference, package["inference_reason"]
        predictions, metadata = served_predictions(repo, records, tmp_path / f"serve-{inference}.log")
        assert metadata["inference"]["inference"] == inference
        assert target not in metadata["features"]
        if task == "classification":
            assert predictions == [str(label) for label in expected]
        else:
            assert predictions == pytest.approx(expected.astype(float).tolist(), rel=1e-4)


def test_init_prints_what_each_column_became_and_why(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (in_tmp / "params.yaml").write_text(PARAMS, encoding="utf-8")
    customers().to_csv(in_tmp / "customers.csv", index=False)
    assert main(["init", "--data", "customers.csv", "--target", "churned"]) == 0
    printed = capsys.readouterr().out.splitlines()
    columns = [line for line in printed if line.startswith("  ")]
    assert [line.split(" -> ")[0].strip() for line in columns] == list(customers().columns)
    assert printed[0].startswith("  customer -> id, unique: 600 distinct whole numbers")
    proposed = [line for line in printed if line.startswith("init: features.derived: ")]
    assert "init: features.derived: date_parts of 'signup' (100% of its values are dates)" in proposed
    assert printed[len(columns) : -2] == proposed, "one line per proposal, after the columns"
    assert printed[-2] == "init: data.csv: delimiter ',', decimal '.', encoding utf-8, missing []"
    assert printed[-1].startswith("init: classification ('churned' holds text or true/false values: 2 classes)")
    contract = io.read_contract(in_tmp / "data" / "contract.yaml")
    assert contract.columns["tenure_months"].max == 108
    assert "max: 108\n" in (in_tmp / "data" / "contract.yaml").read_text(encoding="utf-8")


def test_init_detects_a_european_csv_and_writes_how_to_read_it(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `;` between fields, decimal commas, cp1252 text: what a spreadsheet saves in much of Europe.
    (in_tmp / "params.yaml").write_text(PARAMS, encoding="utf-8")
    table = customers()
    table.loc[table["plan"] == "basic", "plan"] = "básico"
    table = table.astype({"tenure_months": object})
    table.loc[table.index % 30 == 0, "tenure_months"] = "?"  # not recorded
    table.to_csv(in_tmp / "customers.csv", index=False, sep=";", decimal=",", encoding="cp1252")
    command = ["init", "--data", "customers.csv", "--target", "churned", "--bakeoff-seconds", "0"]
    assert main([*command, "--encoding", "cp1252"]) == 0
    assert "init: data.csv: delimiter ';', decimal ',', encoding cp1252, missing ['?']" in capsys.readouterr().out
    text = (in_tmp / "params.yaml").read_text(encoding="utf-8")
    assert '    delimiter: ";"' in text, "quoted, under data.csv"
    assert '    decimal: ","' in text
    assert text.count("# how a CSV source is written") == 1
    cfg = load_config(in_tmp / "params.yaml")
    assert cfg.data.csv == CsvFormat(delimiter=";", decimal=",", encoding="cp1252", missing=("?",))
    assert '    missing: ["?"]' in text
    contract = io.read_contract(in_tmp / "data" / "contract.yaml")
    assert contract.columns["monthly_fee"].type == "float"
    assert "básico" in (contract.columns["plan"].categories or ())
    assert contract.columns["tenure_months"].type == "int"
    assert contract.columns["tenure_months"].nullable
    raw = ingest(cfg.data)
    assert raw["monthly_fee"].tolist() == table["monthly_fee"].tolist()
    # Retargeted to a comma-separated table, data.csv goes back to the defaults.
    customers().to_csv(in_tmp / "plain.csv", index=False)
    assert main(["init", "--data", "plain.csv", "--target", "churned", "--bakeoff-seconds", "0"]) == 0
    assert load_config(in_tmp / "params.yaml").data.csv == CsvFormat()


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--encoding", "utf-16"], "--encoding: 'utf-16' does not write ASCII characters as single bytes"),
        (["--delimiter", "ab"], "--delimiter: 'ab' is not a delimiter"),
        (["--delimiter", ";", "--decimal", ";"], "invalid choice: ';'"),
    ],
)
def test_init_names_a_bad_csv_flag(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], flags: list[str], expected: str
) -> None:
    (in_tmp / "params.yaml").write_text(PARAMS, encoding="utf-8")
    customers().to_csv(in_tmp / "customers.csv", index=False)
    with contextlib.suppress(SystemExit):  # argparse's own refusals exit 2
        assert main(["init", "--data", "customers.csv", "--target", "churned", *flags]) == 1
    assert expected in capsys.readouterr().err
    assert (in_tmp / "params.yaml").read_text(encoding="utf-8") == PARAMS


@pytest.mark.parametrize(
    ("columns", "markers"),
    [
        ({"a": ["1", "-", "2.5", None], "b": ["x", "?", "y", "z"]}, ("-",)),  # b is text: '?' is a value there
        ({"a": ["1", "2", "?", "-"]}, ("-", "?")),
        ({"a": ["-", "-", "-", "1"]}, ()),  # mostly '-': a column of its own kind, not numbers with gaps
        ({"a": ["1", "n.a.", "2", "3"]}, ()),  # letters: pandas' own markers, or the user's --missing
        ({"a": [1.0, None, 2.0, 3.0]}, ()),
    ],
)
def test_missing_markers_are_punctuation_in_columns_of_numbers(
    columns: dict[str, list[Any]], markers: tuple[str, ...]
) -> None:
    assert missing_markers(pd.DataFrame(columns)) == markers


def serve_rows(repo: Path, rows: list[dict[str, Any]], logs: Path, log: Path) -> list[httpx.Response]:
    """``bentoml serve`` at ``repo``, logging predictions under ``logs``: ``rows`` in requests of 50,
    then a row with an unknown column and one with an impossible date; the responses."""
    port = free_port()
    env = tool_env() | {"BENTOML_CONFIG_OPTIONS": f"{LOG_PATH_OPTION}{logs}"}
    command = ["bentoml", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with (
        running(command, cwd=repo, env=env, port=port, log=log),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
    ):
        bodies = [rows[start : start + 50] for start in range(0, len(rows), 50)]
        bodies += [[rows[0] | {"colour": "red"}], [rows[0] | {"signup": "2024-02-30"}]]
        return [client.post("/predict", json={"records": body}) for body in bodies]


@pytest.mark.slow
def test_a_real_looking_table_goes_from_init_to_served_rows_and_a_monitored_window(tmp_path: Path) -> None:
    """An id not named like one, dates, date-times, bools with gaps, free text, a bool target: init ->
    dvc repro -> bentoml serve with the table's own rows -> conveyor monitor on the logged window,
    labels joined on the id."""
    repo = copy_repo(tmp_path / "repo")
    customers(800, seed=5).to_csv(repo / "data/customers.csv", index=False)
    told = run(repo, "conveyor", "init", "--data", "data/customers.csv", "--target", "churned").stdout
    assert "customer -> id, unique:" in told
    assert "signup -> datetime:" in told
    commit_all(repo, "retarget to customers")
    run(repo, "dvc", "repro", timeout=900)

    assert io.read_json(repo / "reports/gate.json")["accepted"] is True
    # The champion on main predicts the penguins' species: what the docs say after init.
    assert io.read_json(repo / "reports/champion.json")["status"] == "other_target"
    card = io.read_json(repo / "models/model.json")
    assert card["classes"] == ["false", "true"]
    # init's proposals: the dates and the free text become features inside the one Pipeline.
    assert card["features"] == {
        "numeric": ["monthly_fee", "tenure_months", "autopay", "newsletter"],
        "categorical": ["plan"],
        "date_parts_0": ["signup"],
        "date_parts_1": ["last_seen"],
        "text_2": ["feedback"],
    }
    assert sorted(p.name for p in (repo / "reports/plots/sklearn/calibration").iterdir()) == ["false.json", "true.json"]
    package = io.read_json(repo / "reports/package.json")
    # ONNX cannot parse dates: scikit-learn serves, and the report says which step is why.
    assert package["inference"] == "sklearn"
    assert "date_parts" in package["inference_reason"]

    # Rows of the user's own table as they are (all but the target).
    fresh = customers(300, seed=6).assign(customer=lambda d: d["customer"] + 10_000)
    rows = json.loads(fresh.drop(columns=["churned"]).to_json(orient="records"))
    logs = tmp_path / "logs"
    *answered, refused, dated = serve_rows(repo, rows, logs, tmp_path / "serve.log")
    assert [response.status_code for response in answered] == [200] * len(answered), answered[0].text
    answers = [answer for response in answered for answer in response.json()]
    expected = predict(io.load_model(repo / "models/model.skops"), fresh)
    assert answers == [label == "true" for label in expected]
    assert (refused.status_code, refused.json()["detail"][0]["loc"]) == (400, ["records", 0, "colour"])
    assert (dated.status_code, dated.json()["detail"][0]["type"]) == (400, "iso_datetime")
    assert "Traceback" not in (tmp_path / "serve.log").read_text(errors="replace")

    # The window the service logged, labelled later by the customer id the client sent.
    fresh[["customer", "churned"]].to_csv(tmp_path / "labels.csv", index=False)
    out = tmp_path / "monitor"
    run(repo, "conveyor", "monitor", "--logs", logs, "--labels", tmp_path / "labels.csv", "--out", out)
    report = io.read_json(out / "monitor.json")
    assert (report["rows"], report["labelled_rows"]) == (len(rows), len(rows))
    checks = {check["name"]: check for check in report["checks"]}
    assert checks["invalid_records"]["value"] == 0.0
    assert checks["performance.balanced_accuracy"]["status"] == "ok"
    methods = {d["column"]: d["method"] for d in report["drift"]}
    assert [methods[name] for name in ("customer", "signup", "last_seen", "feedback")] == ["skipped"] * 4
    assert methods["autopay"] in {"z", "chisquare_two_sample"}
    assert (out / "report.html").is_file()
    # A CSV export of the source table is a window too.
    fresh.to_csv(tmp_path / "window.csv", index=False)
    run(repo, "conveyor", "monitor", "--current", tmp_path / "window.csv", "--out", tmp_path / "monitor-csv")
    assert (tmp_path / "monitor-csv" / "report.html").is_file()


def test_a_sql_source_read_by_ranges_is_retargeted_to_a_file(penguins: pd.DataFrame) -> None:
    sql = (
        PARAMS.replace("source: data/penguins.csv ", "source: sqlite:///shop.db ")
        .replace("query: null ", "query: SELECT * FROM penguins ")
        .replace("range_column: null ", "range_column: id ")
    )
    assert "range_column: id" in sql
    cfg = retarget(penguins, sql, source="data/penguins.csv", target="island").config
    assert (cfg.data.source, cfg.data.query, cfg.data.range_column) == ("data/penguins.csv", None, None)
