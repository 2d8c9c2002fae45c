"""`conveyor report`: the verdict first, DVC's diffs against the baseline, validation, real PNGs.

The pure section builders are tested on small inputs; the end-to-end tests run the command in a
clone of the reproduced repository, on a branch whose params change, against ``main``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import clone_of, commit_all, run

from conveyor import io

from conveyor.ops import report
from conveyor.artifacts import Champion, Check, GateVerdict, Trial, TuningReport, ValidationReport
from conveyor.cli import main

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


def test_render_plots_writes_pngs_and_relabels_the_workspace(tmp_path: Path) -> None:
    spec = {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": {"text": "ROC"},
        "data": {"values": [{"fpr": 0, "tpr": 0, "rev": "workspace"}, {"fpr": 1, "tpr": 1, "rev": "main"}]},
        "mark": "line",
        "encoding": {
            "x": {"field": "fpr", "type": "quantitative"},
            "y": {"field": "tpr", "type": "quantitative"},
            "color": {"field": "rev", "scale": {"domain": ["workspace", "main"]}},
        },
    }
    plots = {"data": {"reports/plots/sklearn/roc/Adelie.json": [{"type": "vega", "content": spec}], "empty.json": []}}
    figures = report.render_plots(plots, tmp_path / "imgs", link_base="imgs")
    assert [(f.title, f.link) for f in figures] == [("ROC (Adelie)", "imgs/sklearn-roc-Adelie.png")]
    png = (tmp_path / "imgs" / "sklearn-roc-Adelie.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    assert len(png) > 1000
    assert report._relabel(spec)["encoding"]["color"]["scale"]["domain"] == ["candidate", "main"]


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
    assert re.search(r"\| params\.yaml \| model\.params\.C \| 1\.0 +\| 0\.001 +\|", text)
    assert re.search(r"\| reports/metrics\.json \| f1_macro +\| 1\.0 +\|", text)
    assert "344 rows" in text
    links = images(text)
    assert any("confusion" in link for link in links)
    assert any("roc" in link for link in links)
    for link in links:
        png = (weaker_branch / "out" / link).read_bytes()
        assert png.startswith(PNG_SIGNATURE), link
    assert "`candidate` and `main` together" in text


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
    assert re.search(r"\| reports/metrics\.json \| accuracy +\| - +\|", text)
    assert "`candidate` and `empty` together" in text


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
    assert "`candidate` only" in text
