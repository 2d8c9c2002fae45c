"""The report's plots draw what evaluate measured: no smoothing, counts in the confusion cells, no errors.

Known data goes the report's way: the ``plots`` section of the project's ``dvc.yaml`` and its
templates in ``.dvc/plots``, DVC's rendering to Vega-Lite (in process here, ``dvc plots show/diff``
in the slow tests), the report's specs, drawn by vl-convert. The checks read vl-convert's scene
graph: where each line and label is drawn, in pixels, which is what the PNG shows.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import vl_convert as vlc
import yaml
from conftest import ROOT, clone_of, commit_all, run
from helpers_model import REGRESSION, edit_params

from conveyor import io, report
from conveyor.stages.evaluate import CLASSIFICATION_PLOTS, REGRESSION_PLOTS

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
# Three a's (one taken for b) and two b's: the cells hold 2, 1, 0 and 2. evaluate writes a count
# per cell; the (b, a) cell is left out here to show the template fills an absent cell with 0.
CONFUSION: Points = [
    {"actual": "a", "predicted": "a", "count": 2},
    {"actual": "a", "predicted": "b", "count": 1},
    {"actual": "b", "predicted": "b", "count": 2},
]
# The same matrix as dvclive wrote it before the counts (a baseline revision may still hold it).
CONFUSION_ROWS: Points = [
    *[{"actual": "a", "predicted": "a"}] * 2,
    {"actual": "a", "predicted": "b"},
    *[{"actual": "b", "predicted": "b"}] * 2,
]


# What evaluate writes for a classification model (the regression folders hold its placeholder).
CLASSIFICATION_RUN: dict[str, Points] = {
    **CURVES,
    "sklearn/confusion_matrix/test.json": CONFUSION,
    "custom/importance.json": [{"feature": "bill_length_mm", "importance": 0.3}],
}


def plot_repo(root: Path, declared: Mapping[str, dict[str, Any]] = DECLARED) -> Path:
    """A DVC repository (no git) with the project's templates and `.dvcignore`, ``declared`` plots,
    :data:`CLASSIFICATION_RUN` and evaluate's placeholder in each regression folder."""
    from dvc.repo import Repo

    Repo.init(str(root), no_scm=True).close()
    shutil.copytree(ROOT / ".dvc" / "plots", root / ".dvc" / "plots")
    shutil.copy2(ROOT / ".dvcignore", root / ".dvcignore")
    plots = [{path: props} for path, props in declared.items()]
    (root / "dvc.yaml").write_text(yaml.safe_dump({"plots": plots}), encoding="utf-8")
    for name, points in CLASSIFICATION_RUN.items():
        path = root / PLOTS / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(points), encoding="utf-8")
    for folder in REGRESSION_PLOTS:
        io.write_plot_placeholder(root / PLOTS / folder, "No plot: the model is a classification model.")
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


def test_a_confusion_matrix_of_one_row_per_record_still_shows_its_counts(tmp_path: Path) -> None:
    root = plot_repo(tmp_path)
    (root / PLOTS / "sklearn" / "confusion_matrix" / "test.json").write_text(json.dumps(CONFUSION_ROWS))
    plots, errors = shown(root)
    assert errors == []
    spec = figures(plots)[f"{PLOTS}/sklearn/confusion_matrix/test.json"]
    texts = sorted(item["text"] for _, _, items in marks(spec, "text") for item in items)
    assert texts == ["0", "1", "2", "2"]


def test_the_placeholders_give_no_plot_at_all(tmp_path: Path) -> None:
    """DVC sees nothing in a placeholder's folder: no figure, no empty plot in its HTML, no error."""
    plots, errors = shown(plot_repo(tmp_path))
    assert errors == []
    assert set(plots["data"]) == {f"{PLOTS}/{name}" for name in CLASSIFICATION_RUN}
    assert set(figures(plots)) == set(plots["data"])


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
def test_dvc_plots_show_and_diff_report_no_error_for_either_task(regression_branch: Path, tmp_path: Path) -> None:
    regression = {f"{PLOTS}/{folder}/test.json" for folder in REGRESSION_PLOTS}
    show = io.parse_json(run(regression_branch, "dvc", "plots", "show", "--json").stdout)
    assert show.get("errors") is None
    assert set(figures(show)) == regression | {f"{PLOTS}/custom/importance.json"}
    # The classification folders and the tuning plots (tuning is off) hold placeholders: DVC lists none.
    assert set(show["data"]) == set(figures(show)), "an empty plot"

    # main holds a classification run, the branch a regression run: each has the other's placeholders.
    diff = io.parse_json(run(regression_branch, "dvc", "plots", "diff", "main", "--json").stdout)
    assert diff.get("errors") is None
    drawn = figures(diff)
    assert set(diff["data"]) == set(drawn), "an empty plot"
    assert regression <= set(drawn)
    assert f"{PLOTS}/custom/roc/Adelie.json" in drawn
    assert drawn[f"{PLOTS}/custom/roc/Adelie.json"]["encoding"]["color"]["scale"]["domain"] == ["main"]

    for command in (["show"], ["diff", "main"]):
        result = run(regression_branch, "dvc", "plots", *command, "--out", "html")
        assert "failed" not in result.stderr.lower(), result.stderr

    # The report draws the regression scatter plots as GitHub renders them: binned, in Mermaid.
    shown_natively = {
        f.title: "\n".join(f.native)
        for f in report.render_plots(
            diff, tmp_path, link_base=".", declared=report.declared_plots(regression_branch), baseline="main"
        )
    }
    for title in ("Predicted vs actual", "Residuals"):
        assert "```mermaid\nxychart-beta\n" in shown_natively[title]
        assert "A binned scatter plot of" in shown_natively[title]
        assert "`main` has no such plot." in shown_natively[title]
    assert "The candidate has no such plot." in shown_natively["ROC, Adelie against the rest"]
