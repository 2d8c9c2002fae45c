"""`conveyor monitor`'s core: each check on windows whose truth is known by construction."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from conveyor.artifacts import MonitorReport, StageTimings
from conveyor.config import Config, MonitorConfig
from conveyor.contract import Contract
from conveyor.errors import MonitorError
from conveyor.monitor.checks import Assessment, assess
from conveyor.monitor.drift import NOT_AN_INPUT, PREDICTION, SKIPPED
from conveyor.monitor.render import summary_markdown, write_outputs
from tests.conftest import ROOT, configured, customers
from tests.monitor.conftest import Population, assert_html_agrees, fitted_model

TARGET = "species"


class Judge:
    """``assess`` with the penguins model and a reference drawn from the population."""

    def __init__(self, params: Config, contract: Contract, penguins: pd.DataFrame, reference_rows: int = 258) -> None:
        self.params, self.contract = params, contract
        self.model, self.spec, _ = fitted_model(params, contract, penguins)
        self.population = Population(penguins, contract)
        self.reference = self.population.draw(reference_rows, np.random.default_rng(0))

    def __call__(
        self,
        window: pd.DataFrame,
        *,
        settings: MonitorConfig | None = None,
        labels: pd.Series | None = None,
        timings: StageTimings | None = None,
    ) -> Assessment:
        return assess(
            self.reference,
            window,
            model=self.model,
            spec=self.spec,
            contract=self.contract,
            task="classification",
            target=TARGET,
            monitor=settings or self.params.monitor,
            gate=self.params.gate,
            model_tag="conveyor-model:test",
            source="window.parquet",
            labels=labels,
            timings=timings,
        )


@pytest.fixture(scope="module")
def judge(params: Config, contract: Contract) -> Judge:
    from conveyor import io

    return Judge(params, contract, io.read_source(str(ROOT / "data" / "penguins.csv")))


def check(report: MonitorReport, name: str) -> tuple[str, float | None, list[str]]:
    (found,) = [c for c in report.checks if c.name == name]
    return found.status, found.value, found.columns


def test_a_window_from_the_training_distribution_is_ok(judge: Judge) -> None:
    report = judge(judge.population.draw(500, np.random.default_rng(1))).report
    assert report.status == "ok", [c for c in report.checks if c.status != "ok"]
    tested = [d for d in report.drift if d.method != "skipped"]
    assert [d.column for d in tested] == [*judge.spec.columns, PREDICTION]
    # Small reference: Evidently's p-value tests, sharing drift_p_value across the 7 columns.
    assert {d.method for d in tested} == {"ks", "chisquare_two_sample", "z"}
    assert [d.threshold for d in tested] == pytest.approx([0.05 / 7] * 7)
    # The window's `year` is in the contract but not a model input: checked, not drift-tested.
    assert [(d.column, d.reason) for d in report.drift if d.method == "skipped"] == [("year", NOT_AN_INPUT)]


def test_too_few_records_is_insufficient_data_never_ok(judge: Judge) -> None:
    report = judge(judge.population.draw(99, np.random.default_rng(2))).report
    assert report.status == "insufficient_data"
    assert check(report, "volume") == ("insufficient_data", 99.0, [])
    assert check(report, "data_drift")[0] == "insufficient_data"
    assert check(report, "prediction_drift")[0] == "insufficient_data"
    assert report.drift == []


def test_a_shifted_column_is_named(judge: Judge) -> None:
    window = judge.population.shifted(500, np.random.default_rng(3), "flipper_length_mm")
    report = judge(window).report
    assert report.status == "alert"
    assert check(report, "data_drift")[2] == ["flipper_length_mm"]
    assert "flipper_length_mm" in summary_markdown(report).split("**Drifted columns:**", 1)[1]


def test_drifted_share_up_to_the_threshold_is_tolerated(judge: Judge) -> None:
    window = judge.population.shifted(500, np.random.default_rng(4), "bill_depth_mm")
    tolerant = judge.params.monitor.model_copy(update={"max_drifted_share": 0.2})
    status, share, columns = check(judge(window, settings=tolerant).report, "data_drift")
    assert (status, columns) == ("ok", ["bill_depth_mm"])
    assert share == pytest.approx(1 / 6)


def test_records_outside_the_contract_are_counted_and_left_out_of_drift(judge: Judge) -> None:
    window = judge.population.draw(400, np.random.default_rng(5))
    window.loc[:9, "island"] = "Atlantis"  # a category the contract does not list
    window.loc[10:14, "body_mass_g"] = 99_999  # above the contract's max
    report = judge(window).report
    assert check(report, "new_categories") == ("alert", 10 / 400, ["island"])
    assert check(report, "invalid_records") == ("alert", 15 / 400, ["body_mass_g", "island"])
    # The 385 valid records still come from the training distribution.
    assert check(report, "data_drift")[0] == "ok"


def test_missing_values_over_the_contracts_rate_alert(judge: Judge) -> None:
    window = judge.population.draw(300, np.random.default_rng(6))
    window.loc[:59, "bill_length_mm"] = np.nan  # 20% or more against the contract's 10%
    status, rate, columns = check(judge(window).report, "missing_values")
    assert (status, columns) == ("alert", ["bill_length_mm"])
    assert rate == pytest.approx(window["bill_length_mm"].isna().mean())


def test_performance_uses_the_gate_thresholds_on_labelled_records(judge: Judge) -> None:
    window = judge.population.draw(300, np.random.default_rng(7))
    truth = window[TARGET].copy()
    assert judge(window, labels=truth).report.status == "ok"
    wrong = truth.replace({"Adelie": "Gentoo", "Gentoo": "Adelie"})  # two classes swapped
    report = judge(window, labels=wrong).report
    assert report.labelled_rows == 300
    assert check(report, "performance.accuracy")[0] == "alert"
    assert check(report, "performance.log_loss")[0] == "alert"


def test_too_few_labels_make_performance_insufficient(judge: Judge) -> None:
    window = judge.population.draw(300, np.random.default_rng(8))
    truth = window[TARGET].where(window.index < 10)
    report = judge(window, labels=truth).report
    assert report.status == "insufficient_data"
    assert check(report, "performance.accuracy") == ("insufficient_data", None, [])


def test_a_slow_pipeline_alerts_naming_its_slowest_stage(judge: Judge) -> None:
    window = judge.population.draw(300, np.random.default_rng(9))
    timings = StageTimings({"ingest": 3.0, "train": 1500.0, "package": 400.0})
    report = judge(window, timings=timings).report
    assert check(report, "pipeline_time") == ("alert", 1903.0, ["train"])
    assert "slowest stage train (1500 s)" in summary_markdown(report)
    fast = StageTimings({"ingest": 3.0, "train": 5.0})
    assert judge(window, timings=fast).report.status == "ok"


def test_a_large_reference_uses_distances(params: Config, contract: Contract, judge: Judge) -> None:
    reference = judge.population.draw(2000, np.random.default_rng(10))
    report = assess(
        reference,
        judge.population.shifted(500, np.random.default_rng(11), "body_mass_g"),
        model=judge.model,
        spec=judge.spec,
        contract=contract,
        task="classification",
        target=TARGET,
        monitor=params.monitor,
        gate=params.gate,
        model_tag="t",
        source="s",
    ).report
    tested = [d for d in report.drift if d.method != "skipped"]
    assert {d.method for d in tested} == {"wasserstein", "jensenshannon"}
    assert {d.threshold for d in tested} == {params.monitor.drift_distance}
    assert check(report, "data_drift")[2] == ["body_mass_g"]


def test_outputs_are_the_report_html_and_a_summary_verdict_first(judge: Judge, tmp_path: Path) -> None:
    window = judge.population.remixed(500, np.random.default_rng(12), "island", "Biscoe", "Torgersen")
    written = write_outputs(judge(window), tmp_path, judge.params.monitor)
    assert MonitorReport.model_validate(json.loads((tmp_path / "monitor.json").read_text())) == written
    assert written.status == "alert"
    html = (tmp_path / "report.html").read_text()
    assert "island" in html
    summary = (tmp_path / "summary.md").read_text()
    assert summary.startswith("## Model monitor: 🔴 alert")
    assert "**Drifted columns:** `island`" in summary
    assert "[Evidently report](report.html)" in summary
    assert_html_agrees(tmp_path)


def _with_invalid(window: pd.DataFrame) -> pd.DataFrame:
    window.loc[:9, "bill_length_mm"] = -1.0
    return window


def _with_missing(window: pd.DataFrame) -> pd.DataFrame:
    window.loc[: len(window) // 2, "sex"] = None
    return window


# Every kind of window these tests judge, each rendered and its HTML compared with its JSON.
WINDOWS: dict[str, Callable[[Population], pd.DataFrame]] = {
    "same distribution": lambda p: p.draw(500, np.random.default_rng(1)),
    "too few": lambda p: p.draw(99, np.random.default_rng(2)),
    "two records": lambda p: p.draw(2, np.random.default_rng(2)),
    "body_mass_g shifted": lambda p: p.shifted(500, np.random.default_rng(3), "body_mass_g"),
    "flipper_length_mm shifted": lambda p: p.shifted(500, np.random.default_rng(3), "flipper_length_mm"),
    "bill_depth_mm shifted": lambda p: p.shifted(500, np.random.default_rng(4), "bill_depth_mm"),
    "island remixed": lambda p: p.remixed(500, np.random.default_rng(12), "island", "Biscoe", "Torgersen"),
    "sex remixed": lambda p: p.remixed(500, np.random.default_rng(300), "sex", "male", "female"),
    "invalid records": lambda p: _with_invalid(p.draw(500, np.random.default_rng(5))),
    "missing values": lambda p: _with_missing(p.draw(500, np.random.default_rng(6))),
}


@pytest.mark.parametrize("name", WINDOWS)
@pytest.mark.parametrize("max_drifted_share", [0.0, 0.2])
def test_the_html_report_agrees_with_monitor_json(
    judge: Judge, tmp_path: Path, name: str, max_drifted_share: float
) -> None:
    settings = judge.params.monitor.model_copy(update={"max_drifted_share": max_drifted_share})
    write_outputs(judge(WINDOWS[name](judge.population), settings=settings), tmp_path, settings)
    assert_html_agrees(tmp_path)


def test_share_checks_of_too_few_records_are_insufficient_data(judge: Judge) -> None:
    window = judge.population.draw(2, np.random.default_rng(7))
    window.loc[0, "sex"] = None  # a 50% missing rate, of two records
    window.loc[1, "bill_length_mm"] = -1.0  # a 50% share of invalid records
    report = judge(window).report
    assert report.status == "insufficient_data", [c for c in report.checks if c.status != "insufficient_data"]
    for name in ("volume", "invalid_records", "new_categories", "missing_values", "data_drift", "prediction_drift"):
        assert check(report, name)[0] == "insufficient_data", name


def test_a_window_without_the_model_columns_is_refused(judge: Judge) -> None:
    window = judge.population.draw(200, np.random.default_rng(13)).drop(columns=["sex"])
    with pytest.raises(MonitorError, match=r"window.parquet: the window lacks the model's input column\(s\) \['sex'\]"):
        judge(window)


# --- statistical honesty -------------------------------------------------------------------
# Windows of 500 records; the reference is 258 rows, the size of the penguins training split.
NULL_WINDOWS = 50
SHIFTED_WINDOWS = 40


def alert_rate(judge: Judge, windows: list[pd.DataFrame]) -> float:
    return float(np.mean([judge(window).report.status == "alert" for window in windows]))


def test_false_alarms_over_50_windows_from_the_reference_distribution(judge: Judge) -> None:
    rng = np.random.default_rng(100)
    rate = alert_rate(judge, [judge.population.draw(500, rng) for _ in range(NULL_WINDOWS)])
    print(f"false-alarm rate over {NULL_WINDOWS} windows: {rate:.0%}")
    assert rate <= 0.05


@pytest.mark.parametrize("column", ["bill_length_mm", "body_mass_g"])
def test_a_one_sd_shift_of_one_numeric_feature_is_detected(judge: Judge, column: str) -> None:
    rng = np.random.default_rng(200)
    windows = [judge.population.shifted(500, rng, column) for _ in range(SHIFTED_WINDOWS)]
    detected = [column in judge(window).report.drifted_columns for window in windows]
    print(f"1-SD shift of {column} detected in {np.mean(detected):.0%} of {SHIFTED_WINDOWS} windows")
    assert np.mean(detected) >= 0.95


@pytest.mark.parametrize(
    ("column", "source", "destination"), [("island", "Biscoe", "Torgersen"), ("sex", "male", "female")]
)
def test_a_30_point_category_mix_change_is_detected(judge: Judge, column: str, source: str, destination: str) -> None:
    rng = np.random.default_rng(300)
    windows = [judge.population.remixed(500, rng, column, source, destination) for _ in range(SHIFTED_WINDOWS)]
    detected = [column in judge(window).report.drifted_columns for window in windows]
    print(f"30-point mix change of {column} detected in {np.mean(detected):.0%} of {SHIFTED_WINDOWS} windows")
    assert np.mean(detected) >= 0.95


# --- a table with an id, dates, bools and text -----------------------------------------------------


class Customers:
    """A model of the generated customers table, its contract and a reference, as the package stage keeps them."""

    def __init__(self, params: Config, directory: Path) -> None:
        from conveyor import io
        from conveyor.contract import conform, infer_contract
        from conveyor.model.features import resolve_features
        from conveyor.stages.train import train

        customers().to_csv(directory / "customers.csv", index=False)
        raw = io.read_source(str(directory / "customers.csv"))
        self.contract = infer_contract(raw, target="churned")
        self.cfg = configured(
            params,
            data={"target": "churned"},
            task="classification",
            features={"drop": []},
            gate={"thresholds": {"balanced_accuracy": {"min": 0.6}}, "compare": ["balanced_accuracy"]},
        )
        table = conform(raw, self.contract)
        self.model = train(table, self.cfg, self.contract)
        self.spec = resolve_features(self.cfg.features, self.contract, target="churned")
        self.reference = table[[*self.spec.columns, "churned"]]
        self.directory = directory

    def window(self, seed: int, rows: int = 400) -> pd.DataFrame:
        """Fresh rows of the same distribution, as read from an exported CSV (target included)."""
        from conveyor import io

        path = self.directory / f"window-{seed}.csv"
        customers(rows, seed=seed).assign(customer=lambda d: d["customer"] + 100_000).to_csv(path, index=False)
        return io.read_source(str(path))

    def assess(self, window: pd.DataFrame, **kwargs: Any) -> Assessment:
        """``assess`` of ``window`` against the reference."""
        return assess(
            kwargs.pop("reference", self.reference),
            window,
            model=self.model,
            spec=self.spec,
            contract=self.contract,
            task="classification",
            target="churned",
            monitor=self.cfg.monitor,
            gate=self.cfg.gate,
            model_tag="t",
            source="window.csv",
            **kwargs,
        )


@pytest.fixture(scope="module")
def typed(params: Config, tmp_path_factory: pytest.TempPathFactory) -> Customers:
    return Customers(params, tmp_path_factory.mktemp("customers"))


def test_every_type_is_checked_or_skipped_with_its_reason(typed: Customers, tmp_path: Path) -> None:
    assessment = typed.assess(typed.window(seed=1))
    report = assessment.report
    drift = {d.column: d for d in report.drift}
    # The bools are drift-tested as the categories they are; the numbers as numbers.
    assert {name: drift[name].method for name in ("autopay", "newsletter")} == {"autopay": "z", "newsletter": "z"}
    assert drift["tenure_months"].method == "ks"
    skipped = {d.column: d.reason for d in report.drift if d.method == "skipped"}
    assert skipped == {
        "customer": SKIPPED["id"],
        "signup": SKIPPED["datetime"],
        "last_seen": SKIPPED["datetime"],
        "feedback": SKIPPED["text"],
    }
    # Skipped columns are still held to the contract: a bad date or a blank key counts as invalid.
    assert check(report, "invalid_records")[:2] == ("ok", 0.0)
    assert check(report, "data_drift")[0] == "ok"
    written = write_outputs(assessment, tmp_path, typed.cfg.monitor)
    assert written.html_report == "report.html"
    assert "<html" in (tmp_path / "report.html").read_text(encoding="utf-8")[:2000].lower()
    assert "**Not tested for drift:** `customer` (a key" in (tmp_path / "summary.md").read_text(encoding="utf-8")


def test_bad_values_in_columns_the_model_does_not_take_are_invalid_records(typed: Customers) -> None:
    window = typed.window(seed=2).astype({"signup": object, "customer": object})
    window.loc[:9, "signup"] = "someday"
    window.loc[10:14, "customer"] = " "
    status, value, columns = check(typed.assess(window).report, "invalid_records")
    assert (status, value, columns) == ("alert", 15 / len(window), ["customer", "signup"])


def test_a_reference_packaged_with_bools_as_numbers_still_works(typed: Customers) -> None:
    # Bundles packaged before bools were kept as bools hold 0.0/1.0 in the reference.
    old = typed.reference.astype({"autopay": "float64", "newsletter": "float64"})
    report = typed.assess(typed.window(seed=1), reference=old).report
    assert report.drift == typed.assess(typed.window(seed=1)).report.drift


def test_labels_are_joined_on_the_id_the_client_sent(typed: Customers, tmp_path: Path) -> None:
    from conveyor.monitor.windows import attach_labels, read_labels

    window = typed.window(seed=3)
    labels = window[["customer", "churned"]].sample(frac=1.0, random_state=0)  # in another order
    labels.iloc[:50].to_csv(tmp_path / "labels.csv", index=False)
    truth = attach_labels(
        window.drop(columns=["churned"]),
        read_labels(str(tmp_path / "labels.csv"), target="churned", keys=["customer"]),
        target="churned",
    )
    assert int(truth.notna().sum()) == 50
    joined = truth.dropna().index
    assert truth[joined].astype(bool).tolist() == window.loc[joined, "churned"].tolist()
    report = typed.assess(window.drop(columns=["churned"]), labels=truth).report
    assert report.labelled_rows == 50
    status, value, _ = check(report, "performance.balanced_accuracy")
    assert status == "ok"
    assert value is not None
    assert value > 0.6
