"""Corrupted variants of the default data are each stopped, by ingest or validate, with a useful message.

These go through the stages' own entry points (``ingest.run``, ``validate.run``) on files in a
temporary folder: the same code ``dvc repro`` runs, without the subprocesses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from conveyor import cli, io
from conveyor.config import Config, parse_config
from conveyor.contract import Contract, parse_contract
from conveyor.errors import DataError
from conveyor.stages import ingest, validate
from conveyor.stages.validate import ValidationFailed, ValidationResult
from tests.conftest import ALWAYS_RUNS, ROOT, clone_of, customers, run
from tests.stages.conftest import CORRUPTIONS, PENGUINS, Corruption, clean_frame, corruption


def params_for(source: Path) -> Config:
    """The repository's params with ``data.source`` pointing at ``source``."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    raw["data"]["source"] = str(source)
    return parse_config(raw)


def run_front(source: Path, contract: Contract, out: Path) -> ValidationResult:
    """ingest then validate, as dvc runs them, with outputs under ``out``."""
    cfg = params_for(source)
    ingest.run(cfg, out=out / "raw.parquet", report=out / "ingest.json")
    return validate.run(
        cfg, contract, data=out / "raw.parquet", out=out / "validated.parquet", report=out / "validation.json"
    )


def test_the_clean_data_passes(tmp_path: Path, contract: Contract) -> None:
    result = run_front(PENGUINS, contract, tmp_path)
    assert result.passed
    assert result.warnings == []
    assert len(io.read_table(tmp_path / "validated.parquet")) == 344


def test_there_are_at_least_a_dozen_variants() -> None:
    assert len(CORRUPTIONS) >= 12
    assert len({c.name for c in CORRUPTIONS}) == len(CORRUPTIONS)


@pytest.mark.parametrize("case", CORRUPTIONS, ids=lambda c: c.name)
def test_each_corruption_is_stopped_with_a_message(tmp_path: Path, contract: Contract, case: Corruption) -> None:
    source = case.write(tmp_path / "penguins.csv")
    with pytest.raises(DataError if case.stage == "ingest" else ValidationFailed) as caught:
        run_front(source, contract, tmp_path)
    message = str(caught.value)
    for expected in case.expected:
        assert expected in message
    assert not (tmp_path / "validated.parquet").exists()
    if case.stage == "ingest":
        # Unreadable files: the message starts with the file, and nothing is written.
        assert message.startswith(f"{source}: ")
        assert not (tmp_path / "raw.parquet").exists()
    else:
        report = io.read_json(tmp_path / "validation.json")
        assert report["passed"] is False
        assert report["errors"]


def test_the_report_lists_each_finding_with_column_check_and_examples(tmp_path: Path, contract: Contract) -> None:
    df = clean_frame()
    df.loc[[0, 1], "bill_length_mm"] = "999"
    df.loc[2, "island"] = "Atlantis"
    df.to_csv(tmp_path / "penguins.csv", index=False)
    with pytest.raises(ValidationFailed):
        run_front(tmp_path / "penguins.csv", contract, tmp_path)
    errors = io.read_json(tmp_path / "validation.json")["errors"]
    found = {(e["column"], e["check"]): e["examples"] for e in errors}
    assert found == {("bill_length_mm", "max"): [999.0], ("island", "categories"): ["Atlantis"]}


def test_text_in_a_number_column_is_one_finding_with_the_text(contract: Contract) -> None:
    df = io.read_source(str(PENGUINS))
    df["year"] = df["year"].astype(str).where(df.index != 4, "2007a")
    result = validate.validate(df, contract, target="species", task="classification")
    assert [(f.column, f.check, f.examples) for f in result.errors] == [("year", "type", ["2007a"])]


@pytest.mark.parametrize(
    ("renamed", "hint"), [("Bill Length (mm)", "'Bill Length (mm)'"), ("bill_lenght_mm", "'bill_lenght_mm'"), ("x", "")]
)
def test_a_renamed_column_is_pointed_out(penguins: pd.DataFrame, contract: Contract, renamed: str, hint: str) -> None:
    penguins = penguins.rename(columns={"bill_length_mm": renamed})
    errors = validate.validate(penguins, contract, target="species", task="classification").errors
    (message,) = [f.message for f in errors if f.column == "bill_length_mm"]
    assert message.endswith(f"; the data has {hint}" if hint else "missing from the data")


def test_examples_are_capped(contract: Contract) -> None:
    df = io.read_source(str(PENGUINS))
    df.loc[:, "bill_length_mm"] = range(100, 100 + len(df))
    # The file is sorted by species, so a column of row numbers is also (rightly) a leak: only the max finding here.
    (finding,) = [
        f for f in validate.validate(df, contract, target="species", task="classification").errors if f.check == "max"
    ]
    assert len(finding.examples) == validate.EXAMPLES


def test_regression_target_must_be_numeric(penguins: pd.DataFrame, contract: Contract) -> None:
    result = validate.validate(penguins, contract, target="species", task="regression")
    (finding,) = [f for f in result.errors if f.check == "target_numeric"]
    assert finding.column == "species"
    assert "Adelie" in finding.examples


def test_a_target_outside_the_contract_is_an_error(penguins: pd.DataFrame, contract: Contract) -> None:
    penguins["label"] = penguins["species"]
    result = validate.validate(penguins, contract, target="label", task="classification")
    assert ("label", "target_present") in {(f.column, f.check) for f in result.errors}


# --- warnings: recorded and shown, never fatal ------------------------------------------------


def relaxed(contract: Contract, **checks: Any) -> Contract:
    """The contract with some dataset checks changed."""
    raw = contract.model_dump(mode="json")
    raw["checks"] |= checks
    return parse_contract(raw)


def findings(result: ValidationResult) -> set[tuple[str, str | None]]:
    """(check, column) of every warning."""
    return {(f.check, f.column) for f in result.warnings}


def test_duplicates_under_the_allowed_fraction_warn(penguins: pd.DataFrame, contract: Contract) -> None:
    doubled = pd.concat([penguins, penguins.head(3)], ignore_index=True)
    result = validate.validate(
        doubled, relaxed(contract, max_duplicate_fraction=0.05), target="species", task="classification"
    )
    assert result.passed
    assert findings(result) == {("duplicate_rows", None)}
    assert result.warnings[0].examples == [344, 345, 346]


def test_an_unexpected_column_warns(penguins: pd.DataFrame, contract: Contract) -> None:
    penguins["comments"] = "ok"
    result = validate.validate(penguins, contract, target="species", task="classification")
    assert result.passed
    assert findings(result) == {("unexpected_columns", None)}
    assert result.warnings[0].examples == ["comments"]


def with_missing(df: pd.DataFrame, column: str, fraction: float) -> pd.DataFrame:
    """``df`` with values of ``column`` removed until ``fraction`` of it is missing."""
    present = df.index[df[column].notna()]
    extra = round(fraction * len(df)) - int(df[column].isna().sum())
    out = df.copy()
    out.loc[present[:extra], column] = None
    return out


@pytest.mark.parametrize(("fraction", "level"), [(0.04, None), (0.07, "warning"), (0.12, "error")])
def test_missing_values_warn_over_half_the_allowance(
    penguins: pd.DataFrame, contract: Contract, fraction: float, level: str | None
) -> None:
    assert contract.checks.max_missing_fraction == 0.1
    result = validate.validate(
        with_missing(penguins, "sex", fraction), contract, target="species", task="classification"
    )
    levels = [f.level for f in result.findings if (f.check, f.column) == ("max_missing_fraction", "sex")]
    assert levels == ([level] if level else [])
    assert result.passed is (level != "error")


def test_a_rare_class_warns(penguins: pd.DataFrame, contract: Contract) -> None:
    chinstrap = penguins.index[penguins["species"] == "Chinstrap"]
    result = validate.validate(penguins.drop(chinstrap[10:]), contract, target="species", task="classification")
    assert result.passed
    assert findings(result) == {("rare_classes", "species")}


def test_warnings_are_written_and_printed_by_the_command(
    in_tmp: Path, contract: Contract, capsys: pytest.CaptureFixture[str]
) -> None:
    df = clean_frame()
    df["comments"] = "ok"
    df.to_csv(in_tmp / "penguins.csv", index=False)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    raw["data"] |= {"source": "penguins.csv", "schema": str(ROOT / raw["data"]["schema"])}
    (in_tmp / "params.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert cli.main(["ingest", "--out", "raw.parquet", "--report", "ingest.json"]) == 0
    code = cli.main(["validate", "--data", "raw.parquet", "--out", "ok.parquet", "--report", "validation.json"])
    captured = capsys.readouterr()
    assert code == 0
    assert (
        "validate: warning: [unexpected_columns] 1 column(s) not in the contract are ignored (e.g. ['comments'])"
        in (captured.err)
    )
    report = io.read_json(in_tmp / "validation.json")
    assert report["passed"] is True
    assert [w["check"] for w in report["warnings"]] == ["unexpected_columns"]
    assert list(io.read_table(in_tmp / "ok.parquet").columns) == list(contract.columns)


def locked_stages(repo: Path) -> dict[str, Any]:
    """The ``stages`` entries of ``dvc.lock``."""
    stages: dict[str, Any] = yaml.safe_load((repo / "dvc.lock").read_text(encoding="utf-8"))["stages"]
    return stages


@pytest.mark.slow
# One of each kind: a column check, a dataset check, an unreadable file (the fast table has them all).
@pytest.mark.parametrize("name", ["above_max", "leakage_column", "extra_field_in_row"])
def test_corrupted_source_stops_the_pipeline(reproduced_repo: Path, tmp_path: Path, name: str) -> None:
    case = corruption(name)
    repo = clone_of(reproduced_repo, tmp_path / "repo")
    model = (repo / "models" / "model.skops").read_bytes()
    before = locked_stages(repo)
    validation_before = (repo / "reports" / "validation.json").read_text(encoding="utf-8")
    case.write(repo / "data" / "penguins.csv")

    result = run(repo, "dvc", "repro", check=False)

    assert result.returncode != 0
    assert f"failed to reproduce '{case.stage}'" in result.stderr
    assert f"conveyor {case.stage}: error: " in result.stderr
    for expected in case.expected:
        assert expected in result.stderr
    after = locked_stages(repo)
    # Every stage from the failing one on (split, train, evaluate, gate, package, …) keeps its lock
    # entry; the source stage before them all has rightly fingerprinted the new file.
    stages = [stage for stage in before if stage != ALWAYS_RUNS]
    untouched = stages[stages.index(case.stage) :]
    assert {"train", "evaluate", "gate"} <= set(untouched)
    for stage in untouched:
        assert after[stage] == before[stage], stage
    assert (repo / "models" / "model.skops").read_bytes() == model
    report = (repo / "reports" / "validation.json").read_text(encoding="utf-8")
    if case.stage == "validate":
        assert yaml.safe_load(report)["passed"] is False
    else:
        assert report == validation_before


# --- the types of real tables -----------------------------------------------------------------


@pytest.fixture
def customer_table(tmp_path: Path) -> tuple[pd.DataFrame, Contract]:
    """The generated customers table as ingest reads it from CSV, and the contract inferred from it."""
    from conveyor.contract import infer_contract

    customers().to_csv(tmp_path / "customers.csv", index=False)
    df = io.read_source(str(tmp_path / "customers.csv"))
    return df, infer_contract(df, target="churned")


@pytest.mark.parametrize(
    ("column", "value", "check", "message"),
    [
        ("signup", "2023-02-30", "type", "expected ISO 8601 dates or date-times (type datetime"),
        ("last_seen", "yesterday", "type", "expected ISO 8601 dates or date-times (type datetime"),
        ("customer", 10.5, "type", "expected keys: non-blank text or whole numbers (type id)"),
        ("autopay", "yes", "type", "expected true/false values (type bool; 1/0 are read as true/false)"),
        ("newsletter", 2, "categories", "expected true/false values (type bool; 1/0 are read as true/false)"),
        ("feedback", 42, "type", "expected text values (type text)"),
    ],
)
def test_each_type_names_the_column_and_the_value_it_refuses(
    customer_table: tuple[pd.DataFrame, Contract], column: str, value: Any, check: str, message: str
) -> None:
    df, contract = customer_table
    df[column] = df[column].astype(object)
    df.loc[3, column] = value
    (finding,) = validate.validate(df, contract, target="churned", task="classification").errors
    assert (finding.column, finding.check, finding.examples) == (column, check, [value])
    assert finding.message.startswith(message)


def test_a_repeated_key_is_refused(customer_table: tuple[pd.DataFrame, Contract]) -> None:
    df, contract = customer_table
    df.loc[5, "customer"] = int(df["customer"].iloc[4])
    errors = validate.validate(df, contract, target="churned", task="classification").errors
    assert [(f.column, f.check) for f in errors] == [("customer", "unique")]


def test_the_validated_table_keeps_each_type(tmp_path: Path, customer_table: tuple[pd.DataFrame, Contract]) -> None:
    from conveyor.model.features import target_values

    df, contract = customer_table
    io.write_table(df, tmp_path / "raw.parquet")
    io.write_contract(contract, tmp_path / "contract.yaml")
    cfg = params_for(tmp_path / "customers.csv").model_copy(update={"task": "classification"})
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"target": "churned"})})
    validate.run(cfg, contract, data=tmp_path / "raw.parquet", out=tmp_path / "out.parquet", report=tmp_path / "v.json")
    out = io.read_table(tmp_path / "out.parquet")
    assert {name: str(out[name].dtype) for name in ("autopay", "churned", "signup", "customer")} == {
        "autopay": "boolean",
        "churned": "boolean",
        "signup": "datetime64[us, UTC]",
        "customer": "str",  # text, as Parquet gives it back
    }
    # The labels are the data's own true/false, never "0.0"/"1.0".
    assert set(target_values(out, "churned", task="classification")) == {"false", "true"}
