"""`conveyor report`: the verdict first, DVC's diffs against the baseline, validation, real PNGs.

The pure section builders are tested on small inputs; the end-to-end tests run the command in a
clone of the reproduced repository, on a branch whose params change, against ``main``.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import vl_convert as vlc
import yaml

from conveyor import io
from conveyor.artifacts import Champion, Check, GateVerdict, Trial, TuningReport, ValidationReport
from conveyor.cli import main
from conveyor.ops import report
from conveyor.stages.evaluate import CLASSIFICATION_PLOTS, PLACEHOLDER, REGRESSION_PLOTS
from tests.conftest import REGRESSION, ROOT, clone_of, commit_all, edit_params, run

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


PLOTS = "reports/plots"
# The plots evaluate writes (the tune stage's own plots live under reports/tuning/).
DECLARED: dict[str, dict[str, Any]] = {
    path: props
    for entry in yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["plots"]
    for path, props in entry.items()
    if path.startswith(f"{PLOTS}/")
}
Points = list[dict[str, Any]]

# A perfect classifier's ROC: up the left edge, then along the top (DVC's `linear` template drew
# a loess line from (0, 0.53) to (1, 1) through it).
PERFECT_ROC: Points = [
    {"fpr": 0.0, "tpr": 0.0, "threshold": 1.0},
    {"fpr": 0.0, "tpr": 1.0, "threshold": 0.9},
    {"fpr": 1.0, "tpr": 1.0, "threshold": 0.1},
]
# As dvclive writes it (recall falling), with two points at each of two recalls: a line sorted
# by recall instead of drawn in data order takes the wrong way up and down those steps.
PRECISION_RECALL: Points = [
    {"recall": 1.0, "precision": 0.5, "threshold": 0.1},
    {"recall": 1.0, "precision": 0.6, "threshold": 0.2},
    {"recall": 0.5, "precision": 0.5, "threshold": 0.3},
    {"recall": 0.5, "precision": 1.0, "threshold": 0.4},
    {"recall": 0.0, "precision": 1.0, "threshold": 0.9},
]
CALIBRATION: Points = [
    {"prob_pred": 0.1, "prob_true": 0.0},
    {"prob_pred": 0.5, "prob_true": 0.6},
    {"prob_pred": 0.9, "prob_true": 1.0},
]
CURVES = {
    "custom/roc/perfect.json": PERFECT_ROC,
    "sklearn/precision_recall/steps.json": PRECISION_RECALL,
    "sklearn/calibration/bins.json": CALIBRATION,
}
# Three a's (one taken for b) and two b's: the cells hold 2, 1, 0 and 2.
CONFUSION: Points = [
    *[{"actual": "a", "predicted": "a"}] * 2,
    {"actual": "a", "predicted": "b"},
    *[{"actual": "b", "predicted": "b"}] * 2,
]


# What evaluate writes for a classification model (the regression folders hold its placeholder).
CLASSIFICATION_RUN: dict[str, Points] = {
    **CURVES,
    "sklearn/confusion_matrix/test.json": CONFUSION,
    "custom/importance.json": [{"feature": "bill_length_mm", "importance": 0.3}],
    **{f"{folder}/{PLACEHOLDER}": [] for folder in REGRESSION_PLOTS},
}


def plot_repo(root: Path, declared: Mapping[str, dict[str, Any]] = DECLARED) -> Path:
    """A DVC repository (no git) with the project's templates, ``declared`` plots and :data:`CLASSIFICATION_RUN`."""
    from dvc.repo import Repo

    Repo.init(str(root), no_scm=True).close()
    shutil.copytree(ROOT / ".dvc" / "plots", root / ".dvc" / "plots")
    plots = [{path: props} for path, props in declared.items()]
    (root / "dvc.yaml").write_text(yaml.safe_dump({"plots": plots}), encoding="utf-8")
    for name, points in CLASSIFICATION_RUN.items():
        path = root / PLOTS / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(points), encoding="utf-8")
    return root


def shown(root: Path) -> tuple[dict[str, Any], list[str]]:
    """What ``dvc plots show --json`` prints in ``root`` (its data, its errors), from DVC's own functions."""
    from dvc.render.convert import to_json
    from dvc.render.match import match_defs_renderers
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        data = repo.plots.show()
        renderers = match_defs_renderers(data=data, templates_dir=repo.plots.templates_dir)
    errors = [
        f"{r.renderer.name}: {error}"
        for r in renderers
        for error in [*r.definition_errors.values(), *(e for s in r.source_errors.values() for e in s.values())]
    ]
    errors += [f"{rev}: {d['definitions']['error']}" for rev, d in data.items() if "error" in d.get("definitions", {})]
    return {"data": {r.renderer.name: to_json(r.renderer) for r in renderers}}, errors


def figures(plots: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The report's Vega-Lite spec for each plot file that has a figure."""
    return {name: spec for name, _, spec in report.figure_specs(plots)}


def marks(spec: Mapping[str, Any], marktype: str) -> Iterator[tuple[float, float, list[dict[str, Any]]]]:
    """(x, y offset, items) of every data mark of ``marktype`` that vl-convert draws for ``spec``."""

    def walk(mark: Mapping[str, Any], x: float, y: float) -> Iterator[tuple[float, float, list[dict[str, Any]]]]:
        if mark["marktype"] == marktype and mark.get("role") == "mark":
            yield x, y, mark["items"]
        if mark["marktype"] == "group":
            for group in mark["items"]:
                for child in group.get("items", []):
                    yield from walk(child, x + (group.get("x") or 0), y + (group.get("y") or 0))

    yield from walk(vlc.vegalite_to_scenegraph(dict(spec))["scenegraph"], 0.0, 0.0)


def lines_drawn(spec: Mapping[str, Any]) -> list[list[tuple[float, float]]]:
    """Each line in the figure, as the pixels its path goes through in order."""
    return [[(x + i["x"], y + i["y"]) for i in items] for x, y, items in marks(spec, "line")]


def pixels(points: Points, plot: str, spec: Mapping[str, Any]) -> list[tuple[float, float]]:
    """Where ``points`` lie on the plot area of ``spec``, drawn as ``plot`` is declared: axes from 0 to 1, y up."""
    x, y = DECLARED[plot]["x"], DECLARED[plot]["y"]
    return [(p[x] * spec["width"], (1 - p[y]) * spec["height"]) for p in points]


def test_dvc_yaml_declares_every_plot_folder_evaluate_writes() -> None:
    folders = {path.removeprefix(f"{PLOTS}/") for path in DECLARED if not path.endswith(".json")}
    assert folders == set(CLASSIFICATION_PLOTS + REGRESSION_PLOTS)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The report's figures for :data:`CLASSIFICATION_RUN`, which DVC shows without an error."""
    plots, errors = shown(plot_repo(tmp_path_factory.mktemp("plots")))
    assert errors == []
    return figures(plots)


@pytest.mark.parametrize("name", list(CURVES))
def test_each_curve_is_drawn_through_its_points_in_order(rendered: dict[str, dict[str, Any]], name: str) -> None:
    plot = f"{PLOTS}/{Path(name).parent}"
    spec = rendered[f"{PLOTS}/{name}"]
    x, y = DECLARED[plot]["x"], DECLARED[plot]["y"]
    assert [(p[x], p[y]) for p in spec["data"]["values"]] == [(p[x], p[y]) for p in CURVES[name]]
    assert not {"loess", "regression"} & set(re.findall(r'"(\w+)":', json.dumps(spec))), "a smoothing transform"
    assert lines_drawn(spec) == [pytest.approx(pixels(CURVES[name], plot, spec))]


def test_the_confusion_matrix_prints_every_count(rendered: dict[str, dict[str, Any]]) -> None:
    spec = rendered[f"{PLOTS}/sklearn/confusion_matrix/test.json"]
    texts = sorted(item["text"] for _, _, items in marks(spec, "text") for item in items)
    assert texts == ["0", "1", "2", "2"]


def test_the_placeholders_give_no_figure(rendered: dict[str, dict[str, Any]]) -> None:
    with_points = {f"{PLOTS}/{name}" for name, points in CLASSIFICATION_RUN.items() if points}
    assert set(rendered) == with_points


def test_the_check_sees_dvcs_smoothing(tmp_path: Path) -> None:
    """The ROC as DVC's default template drew it: one of its lines leaves the points."""
    roc = f"{PLOTS}/custom/roc"
    plots, errors = shown(plot_repo(tmp_path, {**DECLARED, roc: DECLARED[roc] | {"template": "linear"}}))
    assert errors == []
    spec = figures(plots)[f"{roc}/perfect.json"]
    expected = pixels(PERFECT_ROC, roc, spec)
    assert any(line != pytest.approx(expected) for line in lines_drawn(spec))


LABELLED = "data/penguins-with-mass.csv"


def to_regression(params: dict[str, Any]) -> None:
    """Retarget ``params.yaml`` to regression on :data:`LABELLED`, section by section."""
    for section, value in REGRESSION.items():
        params[section] = params[section] | value if isinstance(value, dict) else value
    params["data"]["source"] = LABELLED


@pytest.fixture(scope="module")
def regression_branch(reproduced_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A branch of the reproduced (classification) repository retargeted to regression and evaluated."""
    repo = clone_of(reproduced_repo, tmp_path_factory.mktemp("plots") / "repo")
    run(repo, "git", "checkout", "--quiet", "-b", "regression")
    penguins = io.read_source(str(repo / "data" / "penguins.csv"))
    # The regression target must have a value in every row (validate refuses missing labels).
    penguins[penguins["body_mass_g"].notna()].to_csv(repo / LABELLED, index=False)
    edit_params(repo, to_regression)
    run(repo, "dvc", "repro", "evaluate", timeout=600)
    commit_all(repo, "predict body mass")
    return repo


@pytest.mark.slow
def test_dvc_plots_show_and_diff_report_no_error_for_either_task(regression_branch: Path) -> None:
    regression = {f"{PLOTS}/{folder}/test.json" for folder in REGRESSION_PLOTS}
    show = io.parse_json(run(regression_branch, "dvc", "plots", "show", "--json").stdout)
    assert show.get("errors") is None
    assert set(figures(show)) == regression | {f"{PLOTS}/custom/importance.json"}

    # main holds a classification run, the branch a regression run: each has the other's placeholders.
    diff = io.parse_json(run(regression_branch, "dvc", "plots", "diff", "main", "--json").stdout)
    assert diff.get("errors") is None
    drawn = figures(diff)
    assert regression <= set(drawn)
    assert f"{PLOTS}/custom/roc/Adelie.json" in drawn
    assert drawn[f"{PLOTS}/custom/roc/Adelie.json"]["encoding"]["color"]["scale"]["domain"] == ["main"]

    for command in (["show"], ["diff", "main"]):
        result = run(regression_branch, "dvc", "plots", *command, "--out", "html")
        assert "failed" not in result.stderr.lower(), result.stderr
