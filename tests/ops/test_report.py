"""`conveyor report`: the verdict first, DVC's diffs against the baseline, validation, real PNGs.

The pure section builders are tested on small inputs; the end-to-end tests run the command in a
clone of the reproduced repository, on a branch whose params change, against ``main``.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import vl_convert as vlc

from conveyor import io
from conveyor.artifacts import Champion, Check, GateVerdict, Trial, TuningReport, ValidationReport
from conveyor.cli import main
from conveyor.ops import report
from tests.conftest import clone_of, commit_all, run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ARGS = ["--gate", "reports/gate.json", "--champion", "reports/champion.json", "--validation", "reports/validation.json"]


def check(metric: str, value: float, bound: float, *, direction: str, baseline: float | None, passed: bool) -> Check:
    kind = "threshold" if baseline is None else "champion"
    return Check.model_validate(
        {
            "kind": kind,
            "metric": metric,
            "value": value,
            "bound": bound,
            "direction": direction,
            "baseline": baseline,
            "passed": passed,
        }
    )


REJECTED = GateVerdict(
    accepted=False,
    model_sha256="a" * 64,
    checks=[
        check("accuracy", 0.95, 0.9, direction=">=", baseline=None, passed=True),
        check("log_loss", 0.41, 0.3, direction="<=", baseline=None, passed=False),
    ],
)
CHAMPION = Champion(
    rev="main",
    status="scored",
    model_sha256="c" * 64,
    metrics={"f1_macro": 1.0},
    reason="model at main scored on the current test split",
    checks=[check("f1_macro", 0.86, 0.99, direction=">=", baseline=1.0, passed=False)],
    challenger_sha256="a" * 64,
)


def images(markdown: str) -> list[str]:
    return re.findall(r"!\[[^]]*\]\(([^)]+)\)", markdown)


def test_verdict_lists_failed_checks_first_with_value_bound_and_baseline() -> None:
    lines = report.verdict_section(REJECTED, CHAMPION, stale=[])
    text = "\n".join(lines)
    assert lines[0] == "## Gate: ❌ rejected"
    assert text.index("Failed checks:") < text.index("| Check |")
    assert "- threshold log_loss: 0.4100, needs <= 0.3000" in text
    assert "- champion f1_macro: 0.8600, needs >= 0.9900 (champion 1.0000)" in text
    assert "- threshold accuracy" not in text
    assert "| champion | f1_macro | 0.8600 | >= 0.9900 | 1.0000 | ❌ failed |" in text
    assert "| threshold | accuracy | 0.9500 | >= 0.9000 | — | ✅ passed |" in text
    assert "Champion `main` (scored): model at main scored on the current test split." in text


def test_verdict_accepted_and_missing_and_not_reached() -> None:
    accepted = REJECTED.model_copy(update={"accepted": True, "checks": REJECTED.checks[:1]})
    assert report.verdict_section(accepted, None, stale=[])[0] == "## Gate: ✅ accepted"
    assert "Failed checks:" not in report.verdict_section(accepted, None, stale=[])
    assert report.verdict_section(None, None, stale=[])[0] == "## Gate: ⚠️ no verdict"
    stopped = "\n".join(report.verdict_section(REJECTED, CHAMPION, stale=["validate"]))
    assert stopped.startswith("## Gate: ⚠️ not reached")
    assert "`validate`" in stopped
    assert "rejected" not in stopped, "a stale verdict is not shown as this change's"


def test_tuning_section_shows_trials_best_value_params_against_the_baseline_and_history() -> None:
    study = TuningReport(
        enabled=True,
        study="conveyor-abc",
        estimator="logistic_regression",
        metric="f1_macro",
        direction="maximize",
        cv_folds=5,
        base_params={"C": 1.0, "max_iter": 1000},
        best_params={"C": 4.5706, "max_iter": 1000},
        best_value=0.9917,
        best_std=0.0104,
        best_trial=2,
        trials=[
            Trial(number=0, state="complete", params={"C": 0.07}, value=0.97, fold_values=[0.97] * 5),
            Trial(number=1, state="pruned", params={"C": 0.001}, value=None, fold_values=[]),
            Trial(number=2, state="complete", params={"C": 4.5706}, value=0.9917, fold_values=[0.9917] * 5),
        ],
    )
    main_side = report.Baseline("main", "main", "0123456789ab", None)
    history = report.Figure("Tuning, score per trial", "report-images/reports-tuning-plots-custom-history.png")
    lines = report.tuning_section(study, baseline=main_side, champion={"C": 1.0, "max_iter": 1000}, history=history)
    text = "\n".join(lines)
    assert "3 trials (2 complete, 1 pruned)" in text
    assert "Best f1_macro: **0.9917 ± 0.0104** (5-fold cross-validation on the train split, trial 2)" in text
    assert "| Param | candidate | `main` |" in text
    assert "| C | 4.571 | 1 |" in text
    assert "| max_iter | `1000` | `1000` |" in text
    assert images(text) == [history.link]
    off = report.tuning_section(
        TuningReport(enabled=False, estimator="ridge", base_params={}, best_params={}),
        baseline=main_side,
        champion=None,
        history=None,
    )
    assert "Off (`tune.enabled: false`)" in "\n".join(off)
    assert "is missing" in "\n".join(report.tuning_section(None, baseline=main_side, champion=None, history=None))


def test_stale_stages_ignore_the_gate_itself() -> None:
    status: dict[str, list[Any]] = {
        "gate": [{"changed outs": {}}],
        "train": [{"changed deps": {}}],
        "dvc.yaml:split": [],
    }
    assert report.stale_stages(status) == ["dvc.yaml:split", "train"]
    assert report.stale_stages({"gate": []}) == []


def test_the_always_changed_source_stage_is_not_stale() -> None:
    # `dvc status` lists the source stage on every run; only a changed dependency makes it stale.
    assert report.stale_stages({"source": ["always changed"]}) == []
    assert report.stale_stages({"source": ["always changed", {"changed deps": {}}]}) == ["source"]


def test_validation_section_counts_and_lists_findings() -> None:
    validation = {
        "passed": True,
        "rows": 344,
        "columns": 8,
        "errors": [],
        "warnings": [
            {"level": "warning", "check": "rare_classes", "column": "species", "message": "classes under 5% of rows"}
        ],
    }
    text = "\n".join(report.validation_section(ValidationReport.model_validate(validation)))
    assert "✅ passed: 344 rows, 8 columns, 0 error(s), 1 warning(s)." in text
    assert "- warning: [rare_classes] `species`: classes under 5% of rows" in text
    assert "missing" in "\n".join(report.validation_section(None))


def test_dvc_json_with_infinity_parses_to_none() -> None:
    parsed = io.parse_json('{"data": {"roc": [{"threshold": Infinity, "fpr": 0.0}, {"threshold": NaN}]}}')
    assert parsed == {"data": {"roc": [{"threshold": None, "fpr": 0.0}, {"threshold": None}]}}
    assert not any(isinstance(v, float) and not math.isfinite(v) for v in parsed["data"]["roc"][0].values())


def roc_spec(title: str, candidate: list[dict[str, float]], main: list[dict[str, float]]) -> dict[str, Any]:
    """A ROC figure as DVC gives it for two revisions (the project's `unit_curve` template, cut down)."""
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": {"text": title, "anchor": "middle"},
        "data": {"values": [*({**p, "rev": "workspace"} for p in candidate), *({**p, "rev": "main"} for p in main)]},
        "mark": "line",
        "encoding": {
            "x": {"field": "fpr", "type": "quantitative"},
            "y": {"field": "tpr", "type": "quantitative"},
            "color": {"field": "rev", "scale": {"domain": ["workspace", "main"], "range": ["#945dd6", "#13adc7"]}},
        },
    }


ROC = {
    "template": "unit_curve",
    "x": "fpr",
    "y": "tpr",
    "x_label": "False positive rate",
    "y_label": "True positive rate",
}
DECLARED = {"reports/plots/custom/roc": ROC}
PERFECT = [{"fpr": 0.0, "tpr": 0.0}, {"fpr": 0.0, "tpr": 1.0}, {"fpr": 1.0, "tpr": 1.0}]
DIAGONAL = [{"fpr": 0.0, "tpr": 0.0}, {"fpr": 1.0, "tpr": 1.0}]


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every spec :func:`report.render_plots` hands vl-convert, which still draws each."""

    specs: list[dict[str, Any]] = []
    draw = vlc.vegalite_to_png

    def record(spec: dict[str, Any], **kwargs: Any) -> bytes:
        specs.append(spec)
        return draw(spec, **kwargs)

    monkeypatch.setattr(vlc, "vegalite_to_png", record)
    return specs


def test_render_plots_writes_pngs_and_relabels_the_workspace(tmp_path: Path, drawn: list[dict[str, Any]]) -> None:
    spec = roc_spec("ROC", PERFECT, DIAGONAL)
    plots = {"data": {"reports/plots/custom/roc/Adelie.json": [{"type": "vega", "content": spec}], "empty.json": []}}
    figures = report.render_plots(plots, tmp_path / "imgs", link_base="imgs", declared=DECLARED, baseline="main")
    assert [(f.title, f.link) for f in figures] == [("ROC: Adelie", "imgs/custom-roc-Adelie.png")]
    png = (tmp_path / "imgs" / "custom-roc-Adelie.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    assert len(png) > 1000
    assert report._relabel(spec)["encoding"]["color"]["scale"]["domain"] == ["candidate", "main"]
    (png_spec,) = drawn
    assert {p["rev"] for p in png_spec["data"]["values"]} == {"candidate", "main"}


def test_each_per_class_plot_is_titled_with_its_class(tmp_path: Path, drawn: list[dict[str, Any]]) -> None:
    title = "ROC, one class against the rest"
    plots = {
        "data": {
            f"reports/plots/custom/roc/{label}.json": [{"type": "vega", "content": roc_spec(title, PERFECT, DIAGONAL)}]
            for label in ("Adelie", "Chinstrap", "Gentoo")
        }
    }
    figures = report.render_plots(plots, tmp_path, link_base=".", declared=DECLARED, baseline="main")
    expected = [f"ROC, {label} against the rest" for label in ("Adelie", "Chinstrap", "Gentoo")]
    assert [f.title for f in figures] == expected
    assert [spec["title"]["text"] for spec in drawn] == expected, "the PNG's own title"
    for figure, heading in zip(figures, expected, strict=True):
        assert figure.native[0] == f"### {heading}"
        assert f'    title "{heading}"' in figure.native
    assert report.figure_title(
        "reports/plots/sklearn/confusion_matrix/test.json", {"title": {"text": "Confusion"}}
    ) == ("Confusion")


def test_a_candidate_equal_to_the_baseline_is_drawn_once_and_said_so(
    tmp_path: Path, drawn: list[dict[str, Any]]
) -> None:
    plots = {
        "data": {
            "reports/plots/custom/roc/Adelie.json": [{"type": "vega", "content": roc_spec("ROC", PERFECT, PERFECT)}]
        }
    }
    (figure,) = report.render_plots(plots, tmp_path, link_base=".", declared=DECLARED, baseline="main")
    assert figure.same_as_baseline
    chart = "\n".join(figure.native)
    assert "    line [" in chart
    assert "    bar [" not in chart, "no second series hidden under the first"
    assert "The candidate's plot is the same as `main`'s: drawn once." in chart
    (png_spec,) = drawn
    assert {p["rev"] for p in png_spec["data"]["values"]} == {"candidate"}
    assert png_spec["encoding"]["color"]["scale"] == {"domain": ["candidate"], "range": ["#945dd6"]}
    section = "\n".join(report.plots_section([figure], report.Baseline("main", "main", "0" * 40, None)))
    assert "The candidate's plots are the same as `main`'s: each figure shows them once." in section


def test_a_different_candidate_is_the_line_and_the_baseline_the_bars(tmp_path: Path) -> None:
    plots = {
        "data": {
            "reports/plots/custom/roc/Adelie.json": [{"type": "vega", "content": roc_spec("ROC", PERFECT, DIAGONAL)}]
        }
    }
    (figure,) = report.render_plots(plots, tmp_path, link_base=".", declared=DECLARED, baseline="main")
    assert not figure.same_as_baseline
    values = {
        line.split()[0]: line.split("[")[1].rstrip("]").split(", ")
        for line in figure.native
        if line.startswith(("    line", "    bar"))
    }
    assert values["line"] == ["1.0000"] * report.GRID
    assert values["bar"] == [f"{i / (report.GRID - 1):.4f}" for i in range(report.GRID)]
    assert "Line: candidate; bars: `main`." in figure.native[-1]
    section = "\n".join(report.plots_section([figure], report.Baseline("main", "main", "0" * 40, None)))
    assert "Each figure shows the candidate and `main` together." in section
    assert f"![{figure.title}]({figure.link})" in section, "the PNG stays in the report"


@pytest.mark.slow
def test_resolve_baseline_in_a_shallow_clone_says_so(reproduced_repo: Path, tmp_path: Path) -> None:
    shallow = tmp_path / "shallow"
    run(tmp_path, "git", "clone", "--quiet", "--depth=1", f"file://{reproduced_repo}", shallow)
    # As a pull request's default checkout: one commit, detached, and no main anywhere.
    run(shallow, "git", "checkout", "--quiet", "--detach")
    run(shallow, "git", "branch", "--quiet", "-D", "main")
    run(shallow, "git", "remote", "remove", "origin")
    baseline = report.resolve_baseline("main", root=shallow)
    assert baseline.rev is None
    assert baseline.problem is not None
    assert "shallow clone" in baseline.problem
    assert "fetch-depth: 0" in baseline.problem


@pytest.mark.slow
def test_resolve_baseline_falls_back_to_the_remote_branch(reproduced_repo: Path, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    run(tmp_path, "git", "clone", "--quiet", str(reproduced_repo), clone)
    run(clone, "git", "checkout", "--quiet", "-b", "feature")
    run(clone, "git", "branch", "--quiet", "-D", "main")
    baseline = report.resolve_baseline("main", root=clone)
    assert baseline.rev == "origin/main"
    assert baseline.problem is None
    missing = report.resolve_baseline("no-such-branch", root=clone)
    assert missing.problem is not None
    assert "no git revision 'no-such-branch'" in missing.problem


@pytest.fixture(scope="module")
def weaker_branch(reproduced_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A branch of the reproduced repo with much stronger regularisation: the gate rejects it."""
    repo = clone_of(reproduced_repo, tmp_path_factory.mktemp("report") / "repo")
    run(repo, "git", "checkout", "--quiet", "-b", "weaker")
    params = repo / "params.yaml"
    params.write_text(re.sub(r"(?m)^(\s+C:) 1\.0", r"\1 0.001", params.read_text()))
    run(repo, "dvc", "repro", check=False, timeout=600)
    commit_all(repo, "stronger regularisation")
    return repo


@pytest.mark.slow
def test_report_on_a_rejected_branch(
    weaker_branch: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(weaker_branch)
    assert main(["report", "--out", "out/report.md", *ARGS]) == 0
    assert "gate: rejected" in capsys.readouterr().out
    text = (weaker_branch / "out" / "report.md").read_text()

    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections[0] == "## Gate: ❌ rejected"
    assert sections[1].startswith("## Metrics against `main` (`")
    assert sections[2].startswith("## Params against `main`")
    assert sections[3:] == ["## Data validation", "## Plots"]
    assert "- threshold f1_macro:" in text
    assert "| model.params.C | 1.0 | 0.001 |" in text
    main_f1 = json.loads(run(weaker_branch, "git", "show", "main:reports/metrics.json").stdout)["f1_macro"]
    assert re.search(rf"\| f1_macro \(gate\) \| {main_f1:.4f} \| 0\.\d{{4}} \| -0\.\d{{4}} \|", text), (
        "main, the candidate, the change"
    )
    for metric in ("accuracy (gate)", "log_loss (gate)", "roc_auc", "balanced_accuracy"):
        assert f"| {metric} | " in text, "every metric, changed or not"
    assert "344 rows" in text
    links = images(text)
    assert any("confusion" in link for link in links)
    assert any("roc" in link for link in links)
    for link in links:
        png = (weaker_branch / "out" / link).read_bytes()
        assert png.startswith(PNG_SIGNATURE), link
    assert "the candidate and `main` together" in text
    # Each figure once more, as GitHub draws it: a table for the confusion matrix, Mermaid for the rest.
    titles = re.findall(r"^### (.+)$", text, flags=re.MULTILINE)
    assert len(titles) == len(links) == 11
    assert text.count("```mermaid") == 10
    assert "ROC, Gentoo against the rest" in titles
    assert "candidate is" not in text, "this branch is not main"


@pytest.mark.slow
def test_report_when_the_baseline_has_no_metrics(weaker_branch: Path, tmp_path: Path) -> None:
    repo = clone_of(weaker_branch, tmp_path / "repo")
    run(repo, "git", "checkout", "--quiet", "--orphan", "empty")
    run(repo, "git", "rm", "-r", "--quiet", "--cached", "reports", "dvc.lock")
    run(repo, "git", "commit", "--quiet", "-m", "a baseline before any model")
    run(repo, "git", "checkout", "--quiet", "--force", "weaker")
    result = run(repo, "conveyor", "report", "--out", "report.md", "--baseline", "empty", *ARGS)
    assert "gate: rejected" in result.stdout
    text = (repo / "report.md").read_text()
    assert "`empty` has no metrics yet" in text
    assert re.search(r"\| accuracy \(gate\) \| — \| \d\.\d{4} \| new \|", text)
    assert "the candidate and `empty` together" in text


@pytest.mark.slow
def test_report_on_main_itself_says_the_candidate_is_main(reproduced_repo: Path, tmp_path: Path) -> None:
    repo = clone_of(reproduced_repo, tmp_path / "repo")
    run(repo, "conveyor", "report", "--out", "out/report.md", *ARGS)
    text = (repo / "out" / "report.md").read_text()
    assert "> ⚠️ The candidate is `main` (`" in text
    assert "No param changed." in text
    assert "| Params " not in text
    assert "The candidate's plots are the same as `main`'s: each figure shows them once." in text
    assert "    bar [" not in text, "no line of main's hidden under the candidate's"
    assert re.search(r"\| accuracy \(gate\) \| (\d\.\d{4}) \| \1 \| unchanged \|", text)
    assert "-0.0000" not in text


@pytest.mark.slow
def test_report_in_a_shallow_clone_still_reports_the_verdict(weaker_branch: Path, tmp_path: Path) -> None:
    shallow = tmp_path / "shallow"
    run(tmp_path, "git", "clone", "--quiet", "--depth=1", "--branch", "weaker", f"file://{weaker_branch}", shallow)
    # The outputs DVC keeps out of git, as a CI cache would restore them.
    for name in ("data", "models", ".dvc/cache"):
        source = weaker_branch / name
        if source.is_dir():
            run(tmp_path, "cp", "-a", f"{source}/.", str(shallow / name))
    result = run(shallow, "conveyor", "report", "--out", "report.md", *ARGS)
    text = (shallow / "report.md").read_text()
    assert "gate: rejected" in result.stdout
    assert "shallow clone" in text
    assert "## Gate: ❌ rejected" in text
    assert "## Metrics\n" in text
    assert "the candidate only" in text


GRID = [0.0, 0.25, 0.5, 0.75, 1.0]


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        # A vertical step counts with its top: the perfect ROC is at 1 from fpr 0 on.
        (PERFECT, [1.0, 1.0, 1.0, 1.0, 1.0]),
        (DIAGONAL, GRID),
        # Precision-recall as dvclive writes it (recall falling), a step up at recall 0.5.
        (
            [{"fpr": 1.0, "tpr": 0.5}, {"fpr": 0.5, "tpr": 0.5}, {"fpr": 0.5, "tpr": 1.0}, {"fpr": 0.0, "tpr": 1.0}],
            [1.0, 1.0, 1.0, 0.5, 0.5],
        ),
        # Calibration bins inside (0, 1): straight between them, the nearest end's value beyond.
        ([{"fpr": 0.25, "tpr": 0.0}, {"fpr": 0.75, "tpr": 0.5}], [0.0, 0.0, 0.25, 0.5, 0.5]),
    ],
)
def test_resample_takes_the_curves_highest_point_at_each_grid_value(
    points: list[dict[str, float]], expected: list[float]
) -> None:
    assert report.resample(points, "fpr", "tpr", GRID) == pytest.approx(expected)


def test_the_confusion_matrix_is_a_table_of_counts_for_both_revisions() -> None:
    candidate = [{"actual": "a", "predicted": "a"}] * 2 + [{"actual": "b", "predicted": "a"}]
    main = [{"actual": "a", "predicted": "a"}, {"actual": "b", "predicted": "b"}]
    props = {"template": "confusion_counts", "x": "actual", "y": "predicted"}
    lines = report.native_figure("Confusion matrix", {"candidate": candidate, "main": main}, props, baseline="main")
    assert lines[:6] == [
        "### Confusion matrix",
        "",
        "| actual \\ predicted | a | b |",
        "|---|---|---|",
        "| **a** | 2 (1) | 0 (0) |",
        "| **b** | 1 (0) | 0 (1) |",
    ]
    assert lines[-1] == "Test rows per cell: candidate (`main` in brackets)."
    alone = report.confusion_table(candidate, None, "actual", "predicted")
    assert alone[2:] == ["| **a** | 2 | 0 |", "| **b** | 1 | 0 |"]


def test_a_scatter_plot_becomes_bin_means_and_tuning_trials_one_point_each() -> None:
    rows = [{"actual": float(i), "predicted": float(i) + 1.0} for i in range(120)]
    chart, how = report.binned_chart("Predicted vs actual", rows, None, "actual", "predicted")
    (line,) = [row for row in chart if row.startswith("    line")]
    assert len(line.split(", ")) == report.MAX_BINS
    assert "binned scatter plot of 120 points" in how
    means = [float(v) for v in line.removeprefix("    line [").rstrip("]").split(", ")]
    assert means == sorted(means)
    assert means[0] == pytest.approx(5.5)  # the mean of predicted over the first tenth-or-so of actual

    trials = [{"trial": t, "value": 0.9 + t / 100} for t in range(5)]
    chart, how = report.binned_chart("Tuning, score per trial", trials, trials[:3], "trial", "value")
    assert '    x-axis "trial" ["0", "1", "2"]' in chart, "a trial only one side has is left out"
    assert "    bar [0.9000, 0.9100, 0.9200]" in chart
    assert how == "Each point is the mean value at one trial."


def test_importance_is_a_horizontal_bar_chart_in_the_candidates_order() -> None:
    candidate = [{"feature": "a", "importance": 0.1}, {"feature": "b b", "importance": 0.3}]
    main = [{"feature": "a", "importance": 0.2}]
    chart, how = report.bar_chart("Permutation importance", candidate, main, value="importance", category="feature")
    assert chart[1] == "xychart-beta horizontal"
    assert '    x-axis "feature" ["b b", "a"]' in chart
    assert "    bar [0.0000, 0.2000]" in chart
    assert "    line [0.3000, 0.1000]" in chart
    assert "A missing one is drawn as 0." in how


DIFF: report.MetricsDiff = {
    "reports/metrics.json": {
        "roc_auc": {"old": 0.99, "new": 0.99, "diff": 0.0},
        "log_loss": {"old": 0.0417, "new": 0.04170000001, "diff": 1e-11},
        "accuracy": {"old": 1.0, "new": 0.98837, "diff": -0.01163},
        "f1_macro": {"old": 0.97, "new": 0.96999999, "diff": -1e-8},
        "brier": {"old": None, "new": 0.1},
    }
}


def test_the_metrics_table_shows_every_metric_gate_first_with_visible_changes_only() -> None:
    lines = report.metrics_section(
        "Metrics", DIFF, baseline="main", gated=["accuracy", "f1_macro", "log_loss", "f1_macro"]
    )
    assert lines[2:] == [
        "| Metric | `main` | candidate | Change |",
        "|---|---|---|---|",
        "| accuracy (gate) | 1.0000 | 0.9884 | -0.0116 |",
        "| f1_macro (gate) | 0.9700 | 0.9700 | unchanged |",
        "| log_loss (gate) | 0.0417 | 0.0417 | unchanged |",
        "| brier | — | 0.1000 | new |",
        "| roc_auc | 0.9900 | 0.9900 | unchanged |",
    ]
    assert "-0.0000" not in "\n".join(lines)
    assert report.metrics_section("Metrics", {}, baseline="main", gated=[])[2] == "No metrics yet."


def test_the_metrics_table_without_a_baseline_has_the_candidate_alone() -> None:
    show = {"": {"data": {"reports/metrics.json": {"data": {"accuracy": 0.5, "per_class": {"a": 0.25}}}}}}
    lines = report.metrics_section("Metrics", report.shown_metrics(show), baseline=None, gated=["accuracy"])
    assert lines[2:] == [
        "| Metric | candidate |",
        "|---|---|",
        "| accuracy (gate) | 0.5000 |",
        "| per_class.a | 0.2500 |",
    ]


def test_the_params_section_says_no_param_changed_instead_of_an_empty_table() -> None:
    assert report.params_section("Params", {}, baseline="main") == ["## Params", "", "No param changed."]
    changed: report.MetricsDiff = {
        "params.yaml": {"model.params.C": {"old": 1.0, "new": 0.001}, "serve.batching": {"old": True, "new": "auto"}}
    }
    assert report.params_section("Params", changed, baseline="main")[2:] == [
        "| Param | `main` | candidate |",
        "|---|---|---|",
        "| model.params.C | 1.0 | 0.001 |",
        '| serve.batching | true | "auto" |',
    ]


def test_a_report_on_the_baseline_itself_says_the_candidate_is_the_baseline() -> None:
    main_side = report.Baseline("main", "main", "0123456789abcdef", None)
    args: dict[str, Any] = {
        "gate": REJECTED, "champion": None, "validation": None, "stale": [], "baseline": main_side,
        "metrics": DIFF, "params": {}, "notes": [], "figures": [],
    }  # fmt: skip
    text = report.build(**args, candidate_is_baseline=True)
    assert "> ⚠️ The candidate is `main` (`0123456789ab`) itself" in text
    assert "itself" not in report.build(**args)


def test_points_without_a_number_are_left_out() -> None:
    rows: report.Points = [{"trial": 0, "value": 0.5}, {"trial": 1, "value": None}, {"trial": 2, "value": 0.7}]
    chart, _ = report.binned_chart("Tuning, score per trial", rows, None, "trial", "value")
    assert '    x-axis "trial" ["0", "2"]' in chart
    assert report.binned_chart("Empty", [{"trial": 0, "value": None}], None, "trial", "value")[0] == [
        "*No points to draw.*"
    ]
